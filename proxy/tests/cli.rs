//! The `weaveproxy` command line: help, version and bad flags, run as the real binary.
//!
//! Being an integration test of this package also makes `cargo test --workspace` build the
//! binary that the end-to-end suite in `tests/` runs.

use std::process::Command;

fn weaveproxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weaveproxy"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("weaveproxy runs")
}

#[test]
fn missing_weavewait_binaries_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = weaveproxy(&[
        "-H",
        &format!("unix://{}/p.sock", dir.path().display()),
        "--weavewait-dir",
        dir.path().to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("w/w") && stderr.contains("--weavewait-dir"),
        "{stderr}"
    );
    assert!(!dir.path().join("p.sock").exists(), "nothing listens");
}

#[test]
fn help_lists_the_flags() {
    let out = weaveproxy(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--host", "--docker-api", "--log-level", "--shutdown-grace"] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn bad_addresses_exit_with_usage_status_and_name_each_problem() {
    let out = weaveproxy(&["-H", "udp://1.2.3.4:5", "--docker-api", "relative.sock"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("udp://1.2.3.4:5"), "{stderr}");
    assert!(stderr.contains("relative.sock"), "{stderr}");
}

#[test]
fn a_live_socket_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    // Stand-ins for the weavewait builds: installing them only copies files.
    for variant in ["w", "w-nomcast", "w-noop"] {
        std::fs::create_dir_all(dir.path().join(variant)).unwrap();
        std::fs::write(dir.path().join(variant).join("w"), variant).unwrap();
    }
    let path = dir.path().join("busy.sock");
    let _owner = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let addr = format!("unix://{}", path.display());
    let data = dir.path().join("data");
    let out = weaveproxy(&[
        "-H",
        &addr,
        "--docker-api",
        "unix:///nonexistent.sock",
        "--weavewait-dir",
        dir.path().to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    assert!(path.exists());
}
