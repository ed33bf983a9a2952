//! The `weaveproxy` binary: flags, logging, listeners, then [`weaveproxy::server::Server::run`].

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use weaveproxy::config::{Cli, Config};
use weaveproxy::listen::Listener;
use weaveproxy::server::Server;
use weaveproxy::upstream::Upstream;

/// Exit status for bad flags (BSD `EX_USAGE`).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("weaveproxy: invalid configuration:\n{problems}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(err) = init_logging(&config.log_filter) {
        eprintln!("weaveproxy: {err:#}");
        return ExitCode::from(EX_USAGE);
    }
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weaveproxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let upstream = Upstream::new(config.docker.clone());
    let template = upstream.socket_path();
    let mut listeners = Vec::with_capacity(config.listen.len());
    for addr in &config.listen {
        let listener = Listener::bind(addr, template.as_deref()).await?;
        info!(address = %listener.local_addr(), "listening");
        listeners.push(listener);
    }
    match upstream.api_version().await {
        Ok(version) => info!(docker = %upstream.addr(), api_version = %version, "upstream docker"),
        Err(err) => {
            warn!(%err, "docker daemon not answering yet; requests will get 502 until it does")
        }
    }
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    };
    Server::new(upstream, config.shutdown_grace)
        .run(listeners, shutdown)
        .await;
    Ok(())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;

    let filter = tracing_subscriber::EnvFilter::try_new(weaveproxy::config::log_directive(filter))
        .with_context(|| format!("invalid --log-level / RUST_LOG {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
