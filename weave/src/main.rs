//! The `weave` binary: parse the command line, run it, print the error and exit with its status.
//!
//! It is also the image's only program binary: called as `weaver` or `weaveproxy` (the image links
//! those names to it) it is the router or the proxy, which share most of their code with it, so
//! one binary is far smaller than three.

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use weavecli::args::Cli;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let called = args.next().unwrap_or_default();
    match Path::new(&called).file_name().and_then(OsStr::to_str) {
        Some("weaver") => return router::cmd::main(),
        Some("weaveproxy") => return weaveproxy::cmd::main(),
        _ => {}
    }
    // The router re-executes its own binary to run the host's iptables chrooted.
    if args.next().as_deref() == Some(OsStr::new(router::iptables::HOST_EXEC)) {
        return router::cmd::main();
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(weavecli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
