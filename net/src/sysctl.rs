//! Best-effort per-interface `/proc/sys/net` knobs. `/proc/sys/net` shows the network namespace of
//! the thread that opens it, so called from a netns worker these touch the container's interface.
//!
//! Failures are only logged: the knobs tune behaviour but the link works without them, and
//! `/proc/sys` is read-only inside an unprivileged container or may lack IPv6 entirely.

use tracing::debug;

/// Router advertisements must not give weave interfaces addresses or routes of their own.
pub(crate) fn disable_accept_ra(ifname: &str) {
    write(&format!("/proc/sys/net/ipv6/conf/{ifname}/accept_ra"), "0");
}

/// Faster neighbour turnover than Linux's defaults (30 s reachable, 5 s probe delay, 3 unicast
/// probes), so a container that comes back with the same IP but a new MAC is relearnt quickly.
pub(crate) fn tune_arp(ifname: &str) {
    for (knob, value) in [
        ("base_reachable_time", "5"),
        ("delay_first_probe_time", "2"),
        ("ucast_solicit", "1"),
    ] {
        write(&format!("/proc/sys/net/ipv4/neigh/{ifname}/{knob}"), value);
    }
}

fn write(path: &str, value: &str) {
    if let Err(err) = std::fs::write(path, value) {
        debug!(path, value, error = %err, "sysctl not set");
    }
}
