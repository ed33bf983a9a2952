//! The `weave` binary's command line, without Docker: every subcommand has help, bad input is
//! refused with a usage error, and `env --restore` works on the client side alone.
//!
//! (This target also makes cargo build the `weave` binary for the end-to-end suite.)

use std::process::{Command, Output};

use clap::CommandFactory as _;
use weavecli::args::Cli;

fn weave(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weave"))
        .args(args)
        .env_remove("ORIG_DOCKER_HOST")
        .envs(env.iter().copied())
        .output()
        .expect("weave runs")
}

/// The subcommands as clap knows them, listed (`true`) or internal (`false`): taken from the
/// parser itself, so a subcommand added later is covered without touching this test.
fn subcommands() -> Vec<(String, bool)> {
    Cli::command()
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
        .map(|sub| (sub.get_name().to_owned(), !sub.is_hide_set()))
        .collect()
}

#[test]
fn every_subcommand_has_help() {
    let top = weave(&["--help"], &[]);
    assert!(top.status.success());
    let listing = String::from_utf8_lossy(&top.stdout);
    let subcommands = subcommands();
    // The two a hand-written list once missed.
    for known in ["dns-args", "dns-lookup"] {
        assert!(
            subcommands
                .iter()
                .any(|(name, listed)| name == known && *listed),
            "{known} is not a listed subcommand: {subcommands:?}"
        );
    }
    for (sub, listed) in &subcommands {
        if !listed {
            // Internal subcommands stay out of the listing.
            assert!(!listing.contains(sub.as_str()), "{sub} listed:\n{listing}");
            continue;
        }
        assert!(
            listing.contains(&format!("  {sub} ")),
            "{sub} missing from:\n{listing}"
        );
        let help = weave(&[sub, "--help"], &[]);
        assert!(help.status.success(), "{sub} --help: {help:?}");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage: weave "), "{sub} --help:\n{text}");
    }
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
