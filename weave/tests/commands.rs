//! The `weave` binary's command line, without Docker: every subcommand has help, bad input is
//! refused with a usage error, and `env --restore` works on the client side alone.
//!
//! (This target also makes cargo build the `weave` binary for the end-to-end suite.)

use std::process::{Command, Output};

fn weave(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weave"))
        .args(args)
        .env_remove("ORIG_DOCKER_HOST")
        .envs(env.iter().copied())
        .output()
        .expect("weave runs")
}

const SUBCOMMANDS: [&str; 20] = [
    "launch",
    "launch-router",
    "launch-proxy",
    "stop",
    "stop-router",
    "stop-proxy",
    "env",
    "config",
    "status",
    "ps",
    "version",
    "reset",
    "run",
    "start",
    "attach",
    "detach",
    "dns-add",
    "dns-remove",
    "expose",
    "hide",
];

#[test]
fn every_subcommand_has_help() {
    let top = weave(&["--help"], &[]);
    assert!(top.status.success());
    let listing = String::from_utf8_lossy(&top.stdout);
    for sub in SUBCOMMANDS {
        assert!(
            listing.contains(&format!("  {sub} ")),
            "{sub} missing from:\n{listing}"
        );
        let help = weave(&[sub, "--help"], &[]);
        assert!(help.status.success(), "{sub} --help: {help:?}");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage: weave "), "{sub} --help:\n{text}");
    }
    // Internal subcommands stay out of the listing.
    assert!(!listing.contains("router-request") && !listing.contains("probe-proxy"));
}

#[test]
fn bad_input_is_a_usage_error() {
    for args in [
        &["no-such-command"][..],
        &["launch-proxy", "--no-such-flag"],
        &["attach"],
    ] {
        let out = weave(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage:"),
            "{args:?}: {out:?}"
        );
    }
}

#[test]
fn env_restore_needs_a_preceding_env() {
    let nothing = weave(&["env", "--restore"], &[]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nothing.stderr).starts_with("Nothing to restore."));
    let back = weave(
        &["env", "--restore"],
        &[("ORIG_DOCKER_HOST", "tcp://10.0.0.1:2375")],
    );
    assert!(back.status.success());
    assert_eq!(
        String::from_utf8_lossy(&back.stdout),
        "export DOCKER_HOST=tcp://10.0.0.1:2375; unset ORIG_DOCKER_HOST\n"
    );
    let default = weave(&["env", "--restore"], &[("ORIG_DOCKER_HOST", "")]);
    assert_eq!(
        String::from_utf8_lossy(&default.stdout),
        "unset DOCKER_HOST ORIG_DOCKER_HOST\n"
    );
}
