//! The `weaveproxy` program (the `weaveproxy` binary, and the `weave` binary called as
//! weaveproxy): flags, logging, listeners, then [`crate::server::Server::run`]. Like a binary, and
//! unlike the rest of this library, it reports failures with anyhow.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::attach::{AttachSettings, Attacher, events};
use crate::config::{Cli, Config};
use crate::dnscache::DnsCache;
use crate::docker::DockerClient;
use crate::forward::Context;
use crate::intercept::{DnsNaming, Settings};
use crate::listen::Listener;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::tls::UpstreamTls;
use crate::upstream::Upstream;
use crate::weavecontainer::owner_identity;
use crate::weavewait::{self, Variant};
use anyhow::Context as _;
use api::DockerAddr;
use api::RouterClient;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Exit status for bad flags (BSD `EX_USAGE`).
const EX_USAGE: u8 = 64;

/// The `weaveproxy` program: parses its command line (from the process's arguments) and runs it.
pub fn main() -> ExitCode {
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
    // Everything that can fail or take time happens before listening: a client that can
    // connect is served at once, and a bad certificate stops the proxy here.
    let upstream = upstream(&config)?;
    let acceptor = match &config.tls {
        Some(tls) => {
            let acceptor = tls.acceptor()?;
            let clients = match &tls.client_ca {
                Some(ca) => format!("certificates signed by {}", ca.display()),
                None => "not verified".to_owned(),
            };
            info!(cert = %tls.cert.display(), %clients, "TLS on tcp:// listeners");
            if !config
                .listen
                .iter()
                .any(|a| matches!(a, DockerAddr::Tcp(_)))
            {
                info!("TLS is set but no -H is tcp://; unix sockets stay plain");
            }
            Some(acceptor)
        }
        None => None,
    };
    // One client, so the create path and the attacher share one pool of router connections.
    let router = RouterClient::new(&config.router_addr);
    let settings = weave_settings(&config, &router)?;
    let docker = DockerClient::new(upstream.clone());
    match docker.api_version().await {
        Ok(version) => info!(docker = %upstream.addr(), api_version = %version, "upstream docker"),
        Err(err) => {
            warn!(%err, "docker daemon not answering yet; requests will get 502 until it does")
        }
    }
    let template = upstream.socket_path();
    let mut listeners = Vec::with_capacity(config.listen.len());
    for addr in &config.listen {
        let listener = Listener::bind(addr, template.as_deref())
            .await?
            .with_tls(acceptor.clone());
        info!(address = %listener.local_addr(), tls = listener.is_tls(), "listening");
        if config.plain_network.contains(addr) {
            // Allowed by --tls=false, but said at every start, as dockerd does.
            warn!(
                address = %listener.local_addr(),
                "serving the Docker API over plain HTTP to the network (--tls=false): whoever \
                 reaches this address controls this host; use TLS or a loopback address"
            );
        }
        listeners.push(listener);
    }
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    };
    let attacher = Attacher::new(
        docker.clone(),
        router,
        AttachSettings {
            bridge: config.weave_bridge.clone(),
            multicast_route: !config.no_multicast_route,
            no_default_ipalloc: config.no_default_ipalloc,
            timeout: config.attach_timeout,
            weavewait_root: weavewait::root(&config.data_dir),
            rewrite_hosts: config.rewrite_hosts,
            register_names: !config.without_dns,
            owner: owner_identity(&config.listen),
        },
    );
    let metrics = Metrics::new();
    let attacher = attacher.with_metrics(metrics.clone());
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        info!(address = %listener.local_addr()?, "metrics at GET /metrics");
        tokio::spawn(metrics.clone().serve(listener, stop_metrics.clone()));
    }
    info!(router = %attacher.router_addr(), bridge = %config.weave_bridge, "containers will be attached");
    tokio::spawn(events::watch(attacher.clone(), docker.clone()));
    let context = Context {
        upstream,
        docker,
        settings,
        attacher,
        metrics,
    };
    Server::new(context, config.shutdown_grace)
        .run(listeners, shutdown)
        .await;
    stop_metrics.cancel();
    Ok(())
}

/// The daemon, with TLS when the environment asks for it as it would of the docker CLI.
fn upstream(config: &Config) -> anyhow::Result<Upstream> {
    let tls = UpstreamTls::from_env(&config.docker, |name| std::env::var_os(name))?;
    let Some(tls) = tls else {
        if matches!(config.docker, DockerAddr::Unix(_))
            && std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty())
        {
            info!(docker = %config.docker, "DOCKER_TLS_VERIFY ignored: the daemon is on a unix socket");
        }
        return Ok(Upstream::new(config.docker.clone()));
    };
    let connector = tls.connector()?;
    info!(
        docker = %config.docker,
        verify = tls.verify,
        server_name = %tls.host,
        ca = %tls.ca.display(),
        "TLS to the daemon"
    );
    Ok(Upstream::with_tls(config.docker.clone(), Some(connector)))
}

/// Installs weavewait where containers can bind it, and picks the variant for this proxy.
fn weave_settings(config: &Config, router: &RouterClient) -> anyhow::Result<Settings> {
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
        rewrite_inspect: config.rewrite_inspect,
        owner: owner_identity(&config.listen),
        dns: (!config.without_dns).then(|| DnsNaming {
            hostname: config.hostname.clone(),
            router: DnsCache::new(router.clone()),
        }),
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
    daemon::init_logging(&crate::config::log_directive(filter))
        .with_context(|| format!("invalid --log-level / RUST_LOG {filter:?}"))
}
