//! Tests this machine cannot run: they say why, and under CI (`CI` set) they fail instead, since
//! `scripts/prereqs.sh` installs every tool there and a missing one means a broken run, not a
//! pass.
//!
//! nextest shows a passing test's output only on request, so a skip that merely printed would
//! pass unseen; a failure cannot.

use std::process::{Command, Stdio};

/// Whether the run must not skip anything: under CI.
fn strict() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Ends the test's chances to run: a failure under CI, otherwise a `SKIPPED:` line with the
/// reason on stderr. Callers return right after.
#[track_caller]
pub fn skip(reason: &str) {
    assert!(!strict(), "cannot run under CI: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// `Some(())` when `program` runs (`program version_arg` exits 0); otherwise [`skip`]s, naming
/// the Debian package to install, and gives `None`.
#[track_caller]
pub fn require_tool(program: &str, version_arg: &str, package: &str) -> Option<()> {
    let works = Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        skip(&format!(
            "`{program}` is not installed (Debian package {package})"
        ));
    }
    works.then_some(())
}
