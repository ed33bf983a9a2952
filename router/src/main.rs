//! The `weaver` binary: flags, logging, the listener, loading IPAM state, and shutdown on a signal.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser;
use ipnet::Ipv4Net;
use router::api::{self, ApiState, AssumeAlive};
use router::ipam::Allocator;
use router::store::Store;
use tokio::signal::unix::{SignalKind, signal};

/// Weave Net's router for a single host: the HTTP API with IPAM.
#[derive(Debug, Parser)]
#[command(name = "weaver", version)]
struct Cli {
    /// Address of the HTTP API: `host:port`, or a path starting with `/` for a unix socket.
    #[arg(long, env = "WEAVE_HTTP_ADDR", default_value = "127.0.0.1:6784")]
    http_addr: String,
    /// The range every automatically allocated address comes from.
    #[arg(long, default_value = "10.32.0.0/12")]
    ipalloc_range: Ipv4Net,
    /// Subnet for allocations that name none (`POST /ip/{id}`); defaults to the whole range.
    #[arg(long)]
    ipalloc_default_subnet: Option<Ipv4Net>,
    /// Directory holding the persisted allocations.
    #[arg(long, default_value = "/var/lib/weave")]
    data_dir: PathBuf,
    /// Log filter, e.g. `info` or `router=debug`.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level)
                .with_context(|| format!("bad --log-level {:?}", cli.log_level))?,
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let default_subnet = cli.ipalloc_default_subnet.unwrap_or(cli.ipalloc_range);
    let fresh = Allocator::new(cli.ipalloc_range, default_subnet)?;
    let state = ApiState::new(
        fresh.universe(),
        fresh.default_subnet(),
        Arc::new(AssumeAlive),
    );
    let app = api::router(state.clone());

    // Listen before loading, so clients see 503 ("not ready") rather than a refused connection.
    let server = if cli.http_addr.starts_with('/') {
        let path = PathBuf::from(&cli.http_addr);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err)
                    .with_context(|| format!("removing stale socket {}", path.display()));
            }
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        tracing::info!(addr = %path.display(), "HTTP API listening");
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal()?)
                .into_future(),
        )
    } else {
        let listener = tokio::net::TcpListener::bind(&cli.http_addr)
            .await
            .with_context(|| format!("listening on {}", cli.http_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal()?)
                .into_future(),
        )
    };

    let store = Store::new(&cli.data_dir);
    let alloc = store.load(fresh)?;
    tracing::info!(
        path = %store.path().display(),
        owners = alloc.owners().count(),
        range = %alloc.universe(),
        default_subnet = %alloc.default_subnet(),
        "IPAM ready"
    );
    state.set_ready(alloc, store);

    server
        .await
        .context("HTTP server task")?
        .context("HTTP server")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
fn stop_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
