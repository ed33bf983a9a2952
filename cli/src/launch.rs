//! `weave launch`, `launch-router`, `launch-proxy`, the stop commands and `reset`: the router and
//! proxy containers' life cycle.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use api::client::Transport;
use api::{Call, route};
use bollard::models::{ContainerCreateBody, HostConfig};
use futures_util::StreamExt;

use crate::addrs;
use crate::args::{CommonFlags, ProxyFlags, RouterFlags};
use crate::docker::{self, Docker};
use crate::error::Error;
use crate::relay::Router;
use crate::spec::{self, Host, NETWORK, PLUGIN, PROXY, ROUTER, STORE};
use crate::tlsdetect;

/// How long a launched program may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every command needs: the daemon, the router, the image, and the client's environment.
#[derive(Debug, Clone)]
pub struct Context {
    pub docker: Docker,
    pub router: Router,
    pub image: String,
    /// The client's `DOCKER_HOST`, if set.
    pub docker_host: Option<String>,
}

impl Context {
    fn host(&self) -> Host {
        Host {
            image: self.image.clone(),
            docker_socket: self.docker.socket(),
            router_addr: self.router.addr().to_owned(),
        }
    }
}

/// `weave launch-router`: the router container, once it answers; prints its id.
///
/// # Errors
/// When it already runs, the image is missing, or the router does not come up.
pub async fn router(
    ctx: &Context,
    common: &CommonFlags,
    flags: &RouterFlags,
) -> Result<String, Error> {
    make_room(
        ctx,
        ROUTER,
        "weave is already running; you can stop it with 'weave stop'.",
    )
    .await?;
    if !crate::relay::in_container()
        && ctx
            .router
            .transport()
            .direct()
            .send(&Call::get(route::STATUS))
            .await
            .is_ok()
    {
        return Err(Error::Refused(format!(
            "Weave Net is already running: a router answers at {} (not from a container called \
             {ROUTER}); stop it first",
            ctx.router.addr()
        )));
    }
    let body = spec::router(&ctx.host(), common, flags);
    let probe = vec![
        spec::WEAVE_BIN.to_owned(),
        "router-request".to_owned(),
        "GET".to_owned(),
        route::STATUS.to_owned(),
        "--expect-success".to_owned(),
    ];
    let id = start_and_wait(ctx, ROUTER, body, probe).await?;
    if !flags.no_plugin {
        ensure_network(ctx).await?;
    }
    Ok(id)
}

/// Creates the network `weave` on the router's plugin (which answers once the router does),
/// unless it is there from an earlier launch: Docker keeps a network across restarts of its
/// driver, and the containers on it with it.
async fn ensure_network(ctx: &Context) -> Result<(), Error> {
    match ctx.docker.network_driver(NETWORK).await? {
        Some(driver) if driver == PLUGIN => Ok(()),
        Some(driver) => {
            eprintln!(
                "Warning: a network called '{NETWORK}' already exists with driver '{driver}': \
                 containers run with --net={NETWORK} join it, not weave. Remove it and launch \
                 again to get weave's."
            );
            Ok(())
        }
        None => ctx
            .docker
            .create_network(NETWORK, PLUGIN)
            .await
            .map_err(|err| {
                Error::Failed(format!(
                    "weave is running, but creating the network '{NETWORK}' on its plugin failed: \
                 {err}"
                ))
            }),
    }
}

/// Removes the network `weave` that [`ensure_network`] made, while the router still runs:
/// Docker asks the network's driver to delete it. One with another driver is not ours. What
/// cannot be removed is said and left.
async fn remove_network(ctx: &Context) -> Result<(), Error> {
    if ctx.docker.network_driver(NETWORK).await?.as_deref() != Some(PLUGIN) {
        return Ok(());
    }
    let router_runs = ctx
        .docker
        .container(ROUTER)
        .await?
        .is_some_and(|c| docker::is_running(&c));
    if !router_runs {
        // Docker would look for the absent plugin for many seconds and then refuse anyway.
        eprintln!(
            "Warning: the network '{NETWORK}' stays: its driver, the router, is not running. \
             'weave launch' then 'weave reset' removes it."
        );
        return Ok(());
    }
    if let Err(err) = ctx.docker.remove_network(NETWORK).await {
        eprintln!("Warning: the network '{NETWORK}' stays: {err}");
    }
    Ok(())
}

/// `weave launch-proxy`: the proxy container, listening where `flags` or the client's own
/// connection says, with TLS as given or as the daemon serves it; prints its id.
///
/// # Errors
/// When it already runs, the image is missing, a flag is wrong, or the proxy does not come up.
pub async fn proxy(
    ctx: &Context,
    common: &CommonFlags,
    flags: &ProxyFlags,
) -> Result<String, Error> {
    make_room(
        ctx,
        PROXY,
        "weave proxy is already running; you can stop it with 'weave stop-proxy'.",
    )
    .await?;
    // `--tls=false` is a TLS choice too: nothing to copy from the daemon then.
    let detected = if flags.tls.is_some() || flags.tlsverify || flags.no_detect_tls {
        None
    } else {
        detect_tls(ctx)
    };
    let tls = spec::proxy_tls(flags, detected);
    let docker_host = ctx.docker.host();
    let listen = spec::proxy_listen(flags, &docker_host, tls.as_ref());
    if listen.plain_tcp == Some(spec::PlainTcp::LikeTheDaemon) {
        eprintln!(
            "Warning: the proxy serves plain HTTP on {}, as the Docker daemon does on \
             {docker_host}: whoever reaches either controls this host. Give the daemon and the \
             proxy TLS, or reach the daemon through a unix socket or a loopback address.",
            listen.addrs[0]
        );
    }
    let body = spec::proxy(&ctx.host(), common, flags, &listen, tls.as_ref())?;
    let probe = vec![
        spec::WEAVE_BIN.to_owned(),
        "probe-proxy".to_owned(),
        listen.addrs[0].clone(),
    ];
    start_and_wait(ctx, PROXY, body, probe).await
}

/// The daemon's TLS, or a warning saying how to choose.
fn detect_tls(ctx: &Context) -> Option<tlsdetect::DaemonTls> {
    let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .unwrap_or_else(|| PathBuf::from("/root/.docker"));
    let host = ctx.docker.host();
    match tlsdetect::detect("/proc".as_ref(), "/".as_ref(), &host, &cert_dir) {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!(
                "Warning: unable to detect proxy TLS configuration ({err}). To enable TLS, launch \
                 the proxy with 'weave launch-proxy' and supply TLS options. To suppress this \
                 warning, supply the '--no-detect-tls' option."
            );
            None
        }
    }
}

/// Refuses when `name` runs; removes a stopped one left from before (ours only).
async fn make_room(ctx: &Context, name: &str, running: &str) -> Result<(), Error> {
    let Some(existing) = ctx.docker.container(name).await? else {
        return Ok(());
    };
    if docker::is_running(&existing) || docker::state(&existing) == "restarting" {
        return Err(Error::Refused(running.to_owned()));
    }
    let ours = existing
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|l| l.contains_key(spec::ROLE_LABEL));
    if !ours {
        return Err(Error::Refused(format!(
            "Found another container named '{name}', but it was not created by weave launch; \
             remove or rename it"
        )));
    }
    ctx.docker.remove(name).await
}

/// Starts `name` and waits until `probe`, run inside it, succeeds. A container that stops or
/// never answers is removed again (its restart policy would otherwise retry forever), and the
/// error carries its last log lines.
async fn start_and_wait(
    ctx: &Context,
    name: &str,
    body: ContainerCreateBody,
    probe: Vec<String>,
) -> Result<String, Error> {
    if !ctx.docker.has_image(&ctx.image).await? {
        return Err(Error::Refused(format!(
            "image {} not found: build it with scripts/build-image.sh (no registry has it)",
            ctx.image
        )));
    }
    let id = ctx.docker.create_and_start(name, body).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let container = ctx.docker.container(&id).await?;
        let running = container.as_ref().is_some_and(docker::is_running);
        if !running {
            let logs = ctx.docker.logs_tail(&id, 20).await;
            let _ = ctx.docker.remove(&id).await;
            return Err(Error::Failed(format!(
                "The {name} container has died. Its last log lines:\n{}",
                logs.trim_end()
            )));
        }
        // Bounded: an exec started just as the container exits (a flag it refuses) can go
        // unanswered for good on Docker 20.10; the next round then sees it stopped.
        let probed = tokio::time::timeout(PROBE_TIMEOUT, ctx.docker.exec(&id, probe.clone())).await;
        if probed.is_ok_and(|exec| exec.is_ok_and(|e| e.code == 0)) {
            return Ok(id);
        }
        if Instant::now() > deadline {
            let logs = ctx.docker.logs_tail(&id, 20).await;
            let _ = ctx.docker.remove(&id).await;
            return Err(Error::Failed(format!(
                "The {name} container did not answer within {}s. Its last log lines:\n{}",
                READY_TIMEOUT.as_secs(),
                logs.trim_end()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The proxy's listen addresses, read back from its container's arguments, when it runs.
///
/// # Errors
/// When Docker fails.
pub async fn proxy_addrs(ctx: &Context) -> Result<Option<Vec<String>>, Error> {
    let Some(container) = ctx.docker.container(PROXY).await? else {
        return Ok(None);
    };
    if !docker::is_running(&container) {
        return Ok(None);
    }
    let args = container.args.unwrap_or_default();
    Ok(Some(addrs::listen_args(&args)))
}

/// Warns when the client would still talk to a proxy that is going away.
async fn warn_if_pointed_at_proxy(ctx: &Context) -> Result<(), Error> {
    let (Some(current), Some(addrs)) = (ctx.docker_host.as_deref(), proxy_addrs(ctx).await?) else {
        return Ok(());
    };
    let proxy_host = addrs::proxy_host(std::env::var("ORIG_DOCKER_HOST").ok().as_deref());
    if addrs
        .iter()
        .any(|a| addrs::client_addr(a, &proxy_host) == current)
    {
        eprintln!(
            "WARNING: It appears that your environment is configured to use the Weave Docker API \
             proxy. Please run `eval $(weave env --restore)` to point your client back at the \
             Docker daemon."
        );
    }
    Ok(())
}

/// `weave stop-proxy`.
///
/// # Errors
/// When Docker fails.
pub async fn stop_proxy(ctx: &Context) -> Result<(), Error> {
    warn_if_pointed_at_proxy(ctx).await?;
    if !ctx.docker.stop(PROXY, 10).await? {
        eprintln!("Proxy is not running.");
    }
    Ok(())
}

/// `weave stop-router`.
///
/// # Errors
/// When Docker fails.
pub async fn stop_router(ctx: &Context) -> Result<(), Error> {
    if !ctx.docker.stop(ROUTER, 10).await? {
        eprintln!("Weave is not running.");
    }
    Ok(())
}

/// `weave reset`: the proxy stopped first (it removes its socket itself), the network `weave`
/// removed while its driver still runs, both containers removed, then `weaver reset` run once from the image to remove the bridge, its rules and
/// the saved addresses.
///
/// # Errors
/// When Docker fails or the clean-up reports something it could not remove.
pub async fn reset(ctx: &Context) -> Result<(), Error> {
    ctx.docker.stop(PROXY, 10).await?;
    ctx.docker.remove(PROXY).await?;
    remove_network(ctx).await?;
    ctx.docker.remove(ROUTER).await?;
    // The store this host ran for its network; `weaver reset` below removes its data, which
    // nothing uses once the container is gone.
    ctx.docker.remove(STORE).await?;
    if !ctx.docker.has_image(&ctx.image).await? {
        return Err(Error::Refused(format!(
            "image {} not found: build it with scripts/build-image.sh; the bridge and rules \
             stay until then",
            ctx.image
        )));
    }
    let mut cmd: Vec<String> = [
        "reset",
        "--host-root",
        spec::HOST_ROOT,
        "--data-dir",
        spec::DATA_DIR,
    ]
    .map(str::to_owned)
    .to_vec();
    // The router named Docker's bridge in its rules as Docker names it.
    if let Some(name) = ctx.docker.default_bridge().await? {
        cmd.extend(["--docker-bridge".to_owned(), name]);
    }
    let body = ContainerCreateBody {
        image: Some(ctx.image.clone()),
        entrypoint: Some(vec![spec::WEAVER_BIN.to_owned()]),
        cmd: Some(cmd),
        host_config: Some(HostConfig {
            network_mode: Some("host".to_owned()),
            cap_add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
            binds: Some(vec![
                format!("/:{}:ro", spec::HOST_ROOT),
                format!("{0}:{0}", spec::DATA_DIR),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!("weave-reset-{}", std::process::id());
    let id = ctx.docker.create_and_start(&name, body).await?;
    let mut wait = ctx.docker.api().wait_container(&id, None);
    let mut code = 0;
    while let Some(result) = wait.next().await {
        match result {
            Ok(status) => code = status.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
            Err(err) => return Err(err.into()),
        }
    }
    let logs = ctx.docker.logs_tail(&id, 100).await;
    ctx.docker.remove(&id).await?;
    print!("{logs}");
    let socket = addrs::UNIX_LISTEN.trim_start_matches("unix://");
    if !crate::relay::in_container() {
        let _ = std::fs::remove_file(socket);
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "reset incomplete (weaver reset exited {code})"
        )))
    }
}
