//! The `weaveproxy` binary: flags, logging, listeners, then [`weaveproxy::server::Server::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use weaveproxy::config::{Cli, Config};
use weaveproxy::forward::Context;
use weaveproxy::intercept::Settings;
use weaveproxy::listen::Listener;
use weaveproxy::server::Server;
use weaveproxy::upstream::Upstream;
use weaveproxy::weavewait::{self, Variant};

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
    // One thread: the proxy's work is moving bytes between sockets, and handing each chunk
    // between connection tasks on different threads cost more in wake-ups than the copying
    // itself (measured with perf; see BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
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
    // Everything that can fail or take time happens before listening: a client that can
    // connect is served at once.
    let settings = weave_settings(&config)?;
    match upstream.api_version().await {
        Ok(version) => info!(docker = %upstream.addr(), api_version = %version, "upstream docker"),
        Err(err) => {
            warn!(%err, "docker daemon not answering yet; requests will get 502 until it does")
        }
    }
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
    let context = Context { upstream, settings };
    Server::new(context, config.shutdown_grace)
        .run(listeners, shutdown)
        .await;
    Ok(())
}

/// Installs weavewait where containers can bind it, and picks the variant for this proxy.
fn weave_settings(config: &Config) -> anyhow::Result<Settings> {
    let source = match &config.weavewait_dir {
        Some(dir) => dir.clone(),
        None => default_weavewait_dir(),
    };
    let installed = weavewait::install(&source, &config.data_dir)?;
    let variant = if config.no_multicast_route {
        Variant::NoMulticast
    } else {
        Variant::Multicast
    };
    let settings = Settings {
        weavewait: installed.dir(variant),
        no_default_ipalloc: config.no_default_ipalloc,
    };
    info!(weavewait = %settings.weavewait.display(), "containers will wait for the weave network");
    Ok(settings)
}

/// `weavewait/` beside this program (a host install), else `/` (the weaveexec image, which
/// holds `/w/w`, `/w-nomcast/w` and `/w-noop/w`).
fn default_weavewait_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("weavewait")))
        .filter(|dir| dir.join("w/w").is_file())
        .unwrap_or_else(|| PathBuf::from("/"))
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
