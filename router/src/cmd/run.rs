//! Start-up and serving: the bridge, the firewall rules, the saved allocations reconciled with
//! what runs, weaveDNS, the HTTP API, Docker's network plugin, the Docker events watcher, and
//! shutdown on a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http_api::{self, ApiState};
use api::DockerAddr;

use crate::docker::{self, DockerLiveness};
use crate::ipam::Allocator;
use crate::iptables::{self, HostIptables};
use crate::mesh::discovery;
use crate::mesh::local_store;
use crate::metrics::Metrics;
use crate::names;
use crate::plugin;
use crate::store::Store;
use crate::{events, reclaim};
use anyhow::{Context as _, Result, bail};
use ipnet::Ipv4Net;
use tokio::signal::unix::{SignalKind, signal};

use super::{DEFAULT_RANGE, RunArgs};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Running,
    /// A signal stopped it.
    Stopped,
    /// It has a store to join now (`store.json` changed): the caller starts it again, which
    /// keeps the kernel's state and re-lists everything, as any restart does.
    Rejoin,
}

pub(crate) async fn run(args: RunArgs) -> Result<Outcome> {
    daemon::init_logging(&log_directives(&args.log_level))
        .with_context(|| format!("bad --log-level {:?}", args.log_level))?;

    let user_range = args.ipalloc_range.is_some();
    let range = args.ipalloc_range.unwrap_or_else(|| {
        DEFAULT_RANGE
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid constant"))
    });
    let default_subnet = args.ipalloc_default_subnet.unwrap_or(range);
    let fresh = Allocator::new(range, default_subnet)?;
    let bridge = args.bridge.weave_bridge.as_str();
    let grace = Duration::from_secs(args.dead_timeout);

    let docker_addr = DockerAddr::parse(&args.docker_api)?;
    let docker = docker::connect(&docker_addr).await?;
    let state = ApiState::new(
        fresh.universe(),
        fresh.default_subnet(),
        Arc::new(DockerLiveness::new(docker.clone())),
    );
    let metrics = Metrics::new();
    let dns = if args.dns.no_dns {
        None
    } else {
        Some(
            super::dns::start(
                &args.dns,
                &args.host.host_root,
                &docker,
                &state,
                range,
                &metrics,
            )
            .await?,
        )
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Outcome::Running);
    let stop_tx = Arc::new(stop_tx);
    let rejoin = Arc::new(tokio::sync::Notify::new());
    watch_for_stop(stop_tx.clone(), rejoin.clone())?;
    // `--store-endpoints` first; else the store found earlier (`weave launch HOST`, `weave
    // connect`), kept in the data directory; else alone.
    let endpoints = if args.mesh.store_endpoints.is_empty() {
        discovery::load(&args.data.data_dir)?
            .map(|saved| saved.endpoints)
            .unwrap_or_default()
    } else {
        args.mesh.store_endpoints.clone()
    };
    let mut app =
        http_api::router(state.clone()).merge(discovery::control_router(discovery::Control {
            data_dir: args.data.data_dir.clone(),
            fixed: !args.mesh.store_endpoints.is_empty(),
            rejoin: rejoin.clone(),
        }));
    let mesh_slot = crate::mesh::http::MeshSlot::default();
    if !endpoints.is_empty() {
        app = app.merge(crate::mesh::http::router(mesh_slot.clone(), state.clone()));
    }
    if let Some(dns) = &dns {
        app = app.merge(names::router(dns.clone()));
    }
    // Listen before anything slow, so clients see 503 ("not ready") rather than a refused connection.
    let app = app
        .route(
            api::route::METRICS,
            axum::routing::get(crate::metrics::serve).with_state((metrics.clone(), state.clone())),
        )
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            crate::metrics::track,
        ));
    let server = listen(&args.http_addr, app, stopped(&stop_rx)).await?;

    check_range(range, user_range, bridge).await?;
    let mtu = args.mtu.unwrap_or(if endpoints.is_empty() {
        weavenet::DEFAULT_MTU
    } else {
        weavenet::OVERLAY_MTU
    });
    let (found, created) = weavenet::ensure_bridge(bridge, mtu)
        .await
        .with_context(|| format!("setting up bridge {bridge}"))?;
    tracing::info!(bridge, mtu = found.mtu, created, "bridge ready");

    let helper = std::env::current_exe().context("finding weaver's own binary")?;
    let docker_bridge = match &args.bridge.docker_bridge {
        Some(name) => name.clone(),
        None => crate::docker::bridge_name(&docker).await,
    };
    let firewall =
        HostIptables::new(&args.host.host_root, &helper).with_docker_bridge(&docker_bridge);
    match firewall.ensure(bridge).await {
        Ok(added) => {
            for rule in added {
                tracing::info!(%rule, "added iptables rule");
            }
        }
        Err(err) if err.is_missing_binary() => tracing::warn!(
            error = %err,
            "no iptables on the host; containers on the bridge can talk only if nothing filters bridged traffic"
        ),
        Err(err) => return Err(err).context("adding the iptables rules for the bridge"),
    }
    if let Some(addr) = args.mesh.peer_addr {
        let specs = iptables::input_rules(
            bridge,
            &docker_bridge,
            iptables::HostPorts {
                peer: addr.port(),
                store: (local_store::CLIENT_PORT, local_store::MEMBER_PORT),
                vxlan: args.mesh.vxlan_port,
            },
        );
        match firewall.ensure_input(&specs).await {
            Ok(added) => {
                for rule in added {
                    tracing::info!(%rule, "added iptables rule");
                }
            }
            Err(err) if err.is_missing_binary() => tracing::warn!(
                "no iptables on the host: containers can reach the peer, store and VXLAN ports"
            ),
            Err(err) => return Err(err).context("adding the iptables rules for the peer port"),
        }
    }

    if !endpoints.is_empty() && found.mtu > mtu {
        if args.mtu.is_none() {
            // A host that was alone joins: its bridge and containers came up with the MTU of
            // one host, larger than VXLAN carries.
            let lowered = weavenet::lower_mtu(bridge, mtu)
                .await
                .with_context(|| format!("lowering the MTU of {bridge} for VXLAN"))?;
            tracing::info!(
                bridge,
                mtu,
                links = lowered,
                "lowered the MTU to what VXLAN carries"
            );
        } else {
            tracing::warn!(
                bridge,
                bridge_mtu = found.mtu,
                overlay_mtu = mtu,
                "the bridge was made before with a larger MTU than VXLAN carries: large frames \
                 to other hosts will be dropped until `weave reset` and a new launch"
            );
        }
    }
    let mesh = super::mesh::join(
        &args.mesh,
        &endpoints,
        &args.data.data_dir,
        bridge,
        mtu,
        range,
    )
    .await?;
    super::mesh::discover(
        &args.mesh,
        mesh.as_ref(),
        &docker,
        &args.data.data_dir,
        &rejoin,
        stopped(&stop_rx),
    )
    .await?;

    let store = Store::new(&args.data.data_dir);
    let loaded = store.load(fresh)?;
    let survey = reclaim::survey(&docker, bridge).await?;
    let mut alloc = loaded.clone();
    if let Some(mesh) = &mesh {
        alloc.use_blocks(mesh.config().net.block_len);
    }
    let report = alloc.reclaim(&survey.running, &survey.attached);
    for released in &report.pruned {
        let addrs: Vec<String> = released.cidrs.iter().map(ToString::to_string).collect();
        tracing::info!(container = %released.id, addrs = %addrs.join(" "), "released addresses: container no longer runs");
    }
    for (id, cidr, err) in &report.conflicts {
        tracing::warn!(container = %id, %cidr, error = %err, "address on a running container is held by another");
    }
    if !args.plugin.no_plugin {
        free_plugin_leftovers(&docker, &mut alloc, &args.plugin.plugin_name).await;
    }
    if !alloc.same_allocations(&loaded) {
        store.save(&alloc)?;
    }
    if let Some(dns) = &dns {
        super::dns::restore_names(&dns.registry, &survey);
    }
    tracing::info!(
        bridge,
        range = %alloc.universe(),
        default_subnet = %alloc.default_subnet(),
        data_dir = %args.data.data_dir.display(),
        docker = %docker_addr,
        reclaimed = report.claimed,
        pruned = report.pruned.len(),
        owners = alloc.owners().count(),
        "weaver ready"
    );
    // Bound before the router reports ready, so that a client that saw `/status` 200 (as
    // `weave launch`, which then creates the `weave` network) finds the plugin; served only
    // after, so that Docker's first call finds the allocator in place (it waits in the
    // socket's backlog meanwhile).
    let plugin_listener = if args.plugin.no_plugin {
        None
    } else {
        let path = plugin::socket_path(&args.plugin.plugin_dir, &args.plugin.plugin_name);
        let listener = plugin::bind(&path)
            .context("serving Docker's network plugin (--no-plugin leaves it out)")?;
        tracing::info!(socket = %path.display(), name = %args.plugin.plugin_name, "network plugin listening");
        state.set_plugin_status(http_api::PluginStatus {
            name: args.plugin.plugin_name.clone(),
            socket: path.clone(),
        });
        Some((listener, path))
    };
    state.set_ready(alloc, store);
    if let Some(mesh) = &mesh {
        let _ = mesh_slot.set(mesh.clone());
        state.set_block_source(Arc::new(mesh.clone()));
        let shown = mesh.clone();
        state.set_router_lines(http_api::RouterLines(Arc::new(move || {
            let config = shown.config();
            crate::mesh::status::router_lines(&shown.view(), &config.name, config.endpoints.len())
        })));
        mesh.start(dns.as_ref().map(|dns| dns.registry.clone()), state.clone());
        // A store weave found or made grows with the hosts that join it; one the user runs
        // (`--store-endpoints`) is theirs to shape.
        if let (true, Some(image), Some(_)) = (
            args.mesh.store_endpoints.is_empty(),
            &args.mesh.store_image,
            args.mesh.peer_addr,
        ) {
            tokio::spawn(
                crate::mesh::growth::Growth {
                    store: mesh.store().clone(),
                    docker: docker.clone(),
                    image: image.clone(),
                    data_dir: args.data.data_dir.clone(),
                    me: mesh.config().name.clone(),
                    addr: mesh.config().vtep,
                    rejoin: rejoin.clone(),
                }
                .tend(),
            );
        }
        tracing::info!(
            peer = %mesh.config().name,
            nickname = %mesh.config().nickname,
            store = %mesh.config().endpoints.join(","),
            "joined the network"
        );
    }
    // After the bridge exists and the allocator is loaded: Docker may call at once.
    let plugin_socket = plugin_listener.map(|(listener, path)| {
        let names = dns.as_ref().and_then(|dns| match dns.listen.ip() {
            std::net::IpAddr::V4(server) => Some((
                plugin::names::Names::new(docker.clone(), dns.registry.clone()),
                server,
            )),
            std::net::IpAddr::V6(_) => None,
        });
        serve_plugin(listener, &args.plugin.plugin_name, &state, bridge, names);
        tokio::spawn(plugin::revive::restart_given_up(
            docker.clone(),
            args.plugin.plugin_name.clone(),
        ));
        path
    });
    tokio::spawn(events::watch(
        docker,
        state.clone(),
        dns.map(|dns| dns.registry),
    ));
    tokio::spawn(events::sweep(state, grace));

    server
        .await
        .context("HTTP server task")?
        .context("HTTP server")?;
    if let Some(path) = plugin_socket {
        // Docker then reports the plugin missing rather than waiting on a socket nobody serves.
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(socket = %path.display(), error = %err, "could not remove the plugin socket");
        }
    }
    // The bridge and the rules stay: running containers keep their network while the router is
    // down, as with the original's `weave stop`. `weaver reset` removes them.
    let outcome = *stop_rx.borrow();
    if outcome == Outcome::Rejoin {
        tracing::info!("stopped, to start again on the store");
        Ok(Outcome::Rejoin)
    } else {
        tracing::info!("stopped");
        Ok(Outcome::Stopped)
    }
}

/// Marks the run stopped on the first SIGTERM or SIGINT, or to start again when `rejoin` is
/// notified.
fn watch_for_stop(
    stop: Arc<tokio::sync::watch::Sender<Outcome>>,
    rejoin: Arc<tokio::sync::Notify>,
) -> Result<()> {
    let signalled = stop_signal()?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        signalled.await;
        on_signal.send_replace(Outcome::Stopped);
    });
    tokio::spawn(async move {
        rejoin.notified().await;
        stop.send_if_modified(|outcome| {
            let first = *outcome == Outcome::Running;
            if first {
                *outcome = Outcome::Rejoin;
            }
            first
        });
    });
    Ok(())
}

/// Resolves once the run is stopped, for whatever reason.
fn stopped(
    stop: &tokio::sync::watch::Receiver<Outcome>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|outcome| *outcome != Outcome::Running).await;
    }
}

/// Frees the plugin's addresses that Docker's networks no longer use (releases sent while the
/// router was down are never replayed). Done on the allocator before it is handed to the API,
/// so that `/status` answers 200 only once they are gone, and before the plugin answers, so
/// that no address it hands out is mistaken for a left-over. When Docker cannot be asked,
/// nothing is freed: an address wrongly kept is a small loss, one wrongly freed a clash.
async fn free_plugin_leftovers(docker: &bollard::Docker, alloc: &mut Allocator, driver: &str) {
    match plugin::reconcile::in_use(docker, driver).await {
        Ok(in_use) => {
            for addr in plugin::reconcile::free_unused(alloc, &in_use) {
                tracing::info!(%addr, "[plugin] released an address no network of the plugin uses any more");
            }
        }
        Err(err) => tracing::warn!(
            error = %err,
            "[plugin] cannot ask Docker which addresses its networks use; keeping every plugin address"
        ),
    }
}

/// Serves Docker's network plugin on `listener` as `name`.
fn serve_plugin(
    listener: tokio::net::UnixListener,
    name: &str,
    state: &ApiState,
    bridge: &str,
    names: Option<(plugin::names::Names, std::net::Ipv4Addr)>,
) {
    let mut served = plugin::Plugin::new(state.clone(), bridge);
    if let Some((names, server)) = names {
        // The registry is in memory: containers already on the plugin's networks get their
        // names back.
        let restore = names.clone();
        let driver = name.to_owned();
        tokio::spawn(async move { restore.restore(&driver).await });
        served = served.with_names(names, server);
    }
    let app = plugin::router(served);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "network plugin server");
        }
    });
}

/// A bare level applies to weaver; the DNS library logs every query at `info`, so it is kept to
/// warnings unless a directive list names it.
fn log_directives(level: &str) -> String {
    if level.contains('=') {
        level.to_owned()
    } else {
        format!("{level},hickory_server=warn,hickory_net=warn,hickory_proto=warn")
    }
}

/// Refuses a range that overlaps a host route (not through our own bridge), as `weave launch`
/// does; see [`range_verdict`].
async fn check_range(range: Ipv4Net, user_given: bool, bridge: &str) -> Result<()> {
    let routes = weavenet::overlapping_routes(range, Some(bridge))
        .await
        .context("reading the host's routes")?;
    match range_verdict(range, user_given, &routes) {
        RangeVerdict::Clear => Ok(()),
        RangeVerdict::Warn(message) => {
            tracing::warn!("{message}");
            Ok(())
        }
        RangeVerdict::Refuse(message) => bail!(message),
    }
}

/// What to make of the host routes overlapping the allocation range.
#[derive(Debug, PartialEq, Eq)]
enum RangeVerdict {
    Clear,
    Warn(String),
    Refuse(String),
}

/// An error for the default range (the user never chose it, so it must not shadow a network the
/// host already reaches), a warning for one the user chose (perhaps deliberately).
fn range_verdict(range: Ipv4Net, user_given: bool, routes: &[Ipv4Net]) -> RangeVerdict {
    if routes.is_empty() {
        return RangeVerdict::Clear;
    }
    let routes = routes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if user_given {
        RangeVerdict::Warn(format!(
            "--ipalloc-range {range} overlaps with existing route(s) {routes} on this host; \
             unless this is deliberate, pick another --ipalloc-range"
        ))
    } else {
        RangeVerdict::Refuse(format!(
            "the default --ipalloc-range {range} overlaps with existing route(s) {routes} on this \
             host; pick another range with --ipalloc-range"
        ))
    }
}

type Server = tokio::task::JoinHandle<std::io::Result<()>>;

async fn listen(
    addr: &str,
    app: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Server> {
    Ok(if addr.starts_with('/') {
        let path = PathBuf::from(addr);
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
                .with_graceful_shutdown(stop)
                .into_future(),
        )
    } else {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future(),
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_routes_refuse_the_default_range_and_warn_for_a_chosen_one() {
        let net = |t: &str| -> Ipv4Net { t.parse().unwrap() };
        let range = net(DEFAULT_RANGE);
        let routes = [net("10.40.0.0/16"), net("10.32.5.0/24")];
        assert_eq!(range_verdict(range, false, &[]), RangeVerdict::Clear);
        assert_eq!(range_verdict(range, true, &[]), RangeVerdict::Clear);
        assert_eq!(
            range_verdict(range, false, &routes),
            RangeVerdict::Refuse(
                "the default --ipalloc-range 10.32.0.0/12 overlaps with existing route(s) \
                 10.40.0.0/16, 10.32.5.0/24 on this host; pick another range with --ipalloc-range"
                    .to_owned()
            )
        );
        assert_eq!(
            range_verdict(range, true, &routes[..1]),
            RangeVerdict::Warn(
                "--ipalloc-range 10.32.0.0/12 overlaps with existing route(s) 10.40.0.0/16 on \
                 this host; unless this is deliberate, pick another --ipalloc-range"
                    .to_owned()
            )
        );
    }
}
