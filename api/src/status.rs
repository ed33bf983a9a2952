//! The layout of the router's `/status` text, which `weave status` extends with blocks of its
//! own: `label: value` lines with the labels right-aligned, blocks apart by a blank line.

/// One `label: value` line.
pub fn line(label: &str, value: impl std::fmt::Display) -> String {
    format!("{label:>15}: {value}\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_right_aligned_to_fifteen() {
        assert_eq!(super::line("Service", "ipam"), "        Service: ipam\n");
    }
}
