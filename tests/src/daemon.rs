//! Which Docker daemon the suite runs against.

use std::path::PathBuf;

/// The environment variable naming the daemon under test (`unix:///path/to/docker.sock`).
pub const TARGET_ENV: &str = "WEAVE_TEST_DOCKER";

/// The daemon every test uses: `WEAVE_TEST_DOCKER`, or the machine's own socket.
pub fn target_daemon() -> String {
    std::env::var(TARGET_ENV).unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// The unix socket path of the target daemon.
pub fn target_socket() -> PathBuf {
    let target = target_daemon();
    PathBuf::from(
        target
            .strip_prefix("unix://")
            .unwrap_or_else(|| panic!("{TARGET_ENV}={target}: only unix:// daemons are supported")),
    )
}

/// The docker-compose programs to test with: Debian's v1 (`docker-compose` on PATH) and, when
/// `WEAVE_TEST_COMPOSE_V2` names it, Compose v2.
pub fn compose_programs() -> Vec<String> {
    let mut programs = vec!["docker-compose".to_owned()];
    if let Some(v2) = std::env::var("WEAVE_TEST_COMPOSE_V2")
        .ok()
        .filter(|v| !v.is_empty())
    {
        programs.push(v2);
    }
    programs
}

/// Why the target daemon cannot be put through mass container churn, if it cannot. Docker before
/// 20.10.27 can deadlock in libnetwork when one container joins or leaves a network while
/// another's endpoint is deleted (moby/moby#46661, fixed by moby/libnetwork#2679); after that
/// every call to the daemon hangs, and so would the rest of the suite. The load tests that start
/// and remove thousands of containers run against a fixed daemon only.
pub fn churn_deadlock() -> Option<String> {
    let version = crate::Docker::daemon()
        .run(&["version", "--format", "{{.Server.Version}}"])
        .ok()
        .stdout;
    let version = version.trim();
    deadlocks_under_churn(version).then(|| {
        format!(
            "not run against Docker {version}: its libnetwork deadlocks under mass container \
             churn (moby/moby#46661, fixed in 20.10.27); scripts/test.sh runs it against Docker 26"
        )
    })
}

/// Whether a daemon of this version (`20.10.24+dfsg1`, `26.1.5`) has that deadlock.
fn deadlocks_under_churn(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => (major, minor, patch) < (20, 10, 27),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::deadlocks_under_churn;

    #[test]
    fn versions_with_the_libnetwork_deadlock() {
        for (version, affected) in [
            ("20.10.24+dfsg1", true),
            ("20.10.26", true),
            ("19.03.15", true),
            ("20.10.27", false),
            ("26.1.5+dfsg1", false),
            ("28.2.2", false),
            ("", false),
            ("dev", false),
        ] {
            assert_eq!(deadlocks_under_churn(version), affected, "{version}");
        }
    }
}
