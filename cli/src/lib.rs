//! `weave`: the user command of the weave router and Docker API proxy.
//!
//! # Layout
//! - [`args`]: the command line (clap).
//! - [`addrs`]: where the proxy listens and what `env`/`config` print (pure).
//! - [`spec`]: the router and proxy containers as Docker create requests (pure).
//! - [`tlsdetect`]: the Docker daemon's TLS settings, copied for the proxy.
//! - [`launch`]: launching, stopping and resetting the containers.
//! - [`status`]: `status`, `env`, `config`, `version`.
//! - [`attach`]: weave without the proxy: `run`, `start`, `attach`, `detach`, `dns-*`, `ps`.
//! - [`docker`], [`relay`]: the two APIs this command talks to (Docker's, and the router's
//!   through the `api` crate's client, relayed when it cannot be reached directly).
//! - [`error`]: every failure and its exit status.

pub mod addrs;
pub mod args;
pub mod attach;
pub mod dns;
pub mod docker;
pub mod error;
pub mod launch;
pub mod mesh;
pub mod relay;
pub mod spec;
pub mod status;
pub mod tlsdetect;

use std::time::Duration;

use http::Method;

use crate::args::{Cli, Command, EnvArgs, RouterRequestArgs};
use crate::error::Error;
use crate::launch::Context;
use crate::spec::{ROUTER, WEAVE_BIN};
use api::Call;

/// The router's default address (`WEAVE_HTTP_ADDR` overrides).
fn router_addr() -> String {
    std::env::var("WEAVE_HTTP_ADDR").unwrap_or_default()
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether this process may work in containers' network namespaces itself: on the host, or
/// inside the router's container (which sets `WEAVE_LOCAL`). Elsewhere, such commands are run
/// in the router's container.
fn local() -> bool {
    !relay::in_container() || std::env::var_os("WEAVE_LOCAL").is_some()
}

/// Runs one command, printing its output.
///
/// # Errors
/// See [`Error`]; the caller prints it and exits with [`Error::exit_code`].
pub async fn run(cli: Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Env(EnvArgs { restore: true }) => {
            let orig = std::env::var("ORIG_DOCKER_HOST").ok();
            let line = addrs::restore_line(orig.as_deref())
                .ok_or_else(|| Error::Refused(addrs::NOTHING_TO_RESTORE.to_owned()))?;
            println!("{line}");
            return Ok(());
        }
        Command::RouterRequest(args) => return router_request(args).await,
        Command::ProbeProxy { addr } => return probe_proxy(addr).await,
        _ => {}
    }
    // After `eval $(weave env)`, DOCKER_HOST is the proxy; weave manages the daemon itself (the
    // proxy may be what it is about to stop), which ORIG_DOCKER_HOST names.
    let daemon = std::env::var("ORIG_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_default();
    let docker = docker::Docker::connect(&daemon).await?;
    let ctx = Context {
        router: relay::router(&router_addr(), docker.clone()),
        docker,
        image: spec::image(
            non_empty_env("DOCKERHUB_USER").as_deref(),
            non_empty_env("WEAVE_VERSION").as_deref(),
        ),
        docker_host: non_empty_env("DOCKER_HOST"),
    };
    match cli.command {
        Command::Launch(args) => {
            println!(
                "{}",
                launch::router(&ctx, &args.common, &args.router).await?
            );
            println!("{}", launch::proxy(&ctx, &args.common, &args.proxy).await?);
        }
        Command::LaunchRouter(args) => {
            println!(
                "{}",
                launch::router(&ctx, &args.common, &args.router).await?
            );
        }
        Command::LaunchProxy(args) => {
            println!("{}", launch::proxy(&ctx, &args.common, &args.proxy).await?);
        }
        Command::Stop => {
            launch::stop_proxy(&ctx).await?;
            launch::stop_router(&ctx).await?;
        }
        Command::StopRouter => launch::stop_router(&ctx).await?,
        Command::StopProxy => launch::stop_proxy(&ctx).await?,
        Command::Env(_) => {
            if let Some(proxy) = status::proxy_client_addr(&ctx).await? {
                println!("{}", addrs::env_line(&proxy, ctx.docker_host.as_deref()));
            }
        }
        Command::Config => {
            if let Some(proxy) = status::proxy_client_addr(&ctx).await? {
                println!("{}", addrs::config_line(&proxy));
            }
        }
        Command::Status(args) => match args.section.as_deref() {
            Some("peers") => print!("{}", mesh::peers(&ctx).await?),
            Some("connections") => print!("{}", mesh::connections(&ctx).await?),
            Some("ipam") => match mesh::status(&ctx, api::route::STATUS_IPAM).await? {
                mesh::Answered::Text(text) => print!("{text}"),
                mesh::Answered::Alone => print!("{}", status::status(&ctx, Some("ipam")).await?),
            },
            section => print!("{}", status::status(&ctx, section).await?),
        },
        Command::Rmpeer(args) => println!("{}", mesh::rmpeer(&ctx, &args.peer, args.force).await?),
        Command::Connect(args) => print!(
            "{}",
            mesh::store_change(&ctx, &Call::connect(&args.peer)).await?
        ),
        Command::Forget(args) => print!(
            "{}",
            mesh::store_change(&ctx, &Call::forget(&args.peer)).await?
        ),
        Command::Version => print!("{}", status::version(&ctx).await),
        Command::Reset => launch::reset(&ctx).await?,
        Command::Ps(args) if local() => print!("{}", attach::ps(&ctx, &args.containers).await?),
        Command::Attach(args) if local() => {
            println!("{}", attach::attach(&ctx, &args.flags, &args.args).await?);
        }
        Command::Detach(args) if local() => println!("{}", attach::detach(&ctx, &args.args).await?),
        Command::Start(args) if local() => {
            println!("{}", attach::start(&ctx, &args.flags, &args.args).await?);
        }
        Command::Run(args) if local() => {
            println!("{}", attach::run(&ctx, &args.flags, &args.args).await?)
        }
        Command::Expose(args) if local() => {
            println!(
                "{}",
                attach::expose(&ctx, args.fqdn.as_deref(), &args.addrs).await?
            );
        }
        Command::Hide(args) if local() => println!("{}", attach::hide(&ctx, &args.addrs).await?),
        Command::Run(_) => {
            return Err(Error::Refused(
                "weave run runs the docker command on the Docker host: run the weave binary there \
                 (it is /home/weave/weave in the image)"
                    .to_owned(),
            ));
        }
        Command::Ps(_)
        | Command::Attach(_)
        | Command::Detach(_)
        | Command::Start(_)
        | Command::Expose(_)
        | Command::Hide(_) => {
            return in_router(&ctx).await;
        }
        Command::DnsArgs => println!("{}", dns::dns_args(&ctx).await?),
        Command::DnsLookup { name } => print!("{}", dns::lookup(&ctx, name.as_str()).await?),
        Command::DnsAdd(args) => attach::dns(&ctx, true, args.fqdn.as_deref(), &args.args).await?,
        Command::DnsRemove(args) => {
            attach::dns(&ctx, false, args.fqdn.as_deref(), &args.args).await?
        }
        Command::RouterRequest(_) | Command::ProbeProxy { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Runs this very command line in the router's container, which is on the host's network and
/// PID namespaces with the capabilities to enter containers' namespaces.
async fn in_router(ctx: &Context) -> Result<(), Error> {
    let running = ctx
        .docker
        .container(ROUTER)
        .await?
        .is_some_and(|c| docker::is_running(&c));
    if !running {
        return Err(Error::NotRunning(format!(
            "{ROUTER} container is not running: launch it with `weave launch`, or run this \
             command on the Docker host"
        )));
    }
    let mut cmd = vec![WEAVE_BIN.to_owned()];
    cmd.extend(std::env::args().skip(1));
    let out = ctx.docker.exec(ROUTER, cmd).await?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if out.code == 0 {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "(exit status {} in the {ROUTER} container)",
            out.code
        )))
    }
}

/// `weave router-request`: one request to the router, printed as status and body.
async fn router_request(args: &RouterRequestArgs) -> Result<(), Error> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| Error::Refused(format!("bad method {}", args.method)))?;
    let form: Vec<(&str, &str)> = args
        .form
        .iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    let answer = api::RouterClient::new(&router_addr())
        .call(&api::Call::new(method, args.path.clone(), &form))
        .await?;
    print!("{}", relay::relay(&answer));
    if args.expect_success && !answer.status.is_success() {
        return Err(Error::Failed(format!("router answered {}", answer.status)));
    }
    Ok(())
}

/// `weave probe-proxy ADDR`: succeeds once something accepts connections at the proxy's address
/// (the proxy binds its listeners only when it is ready to serve).
async fn probe_proxy(addr: &str) -> Result<(), Error> {
    let target = addrs::client_addr(addr, "127.0.0.1");
    let connect = async {
        match target.strip_prefix("unix://") {
            Some(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            None => tokio::net::TcpStream::connect(target.trim_start_matches("tcp://"))
                .await
                .map(drop),
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Error::Failed(format!("{target}: {err}"))),
        Err(_) => Err(Error::Failed(format!("{target}: timed out"))),
    }
}
