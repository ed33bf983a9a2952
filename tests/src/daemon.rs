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
