//! The `weaver` program (the `weaver` binary, and the `weave` binary called as weaver): its flags,
//! and the dispatch to start-up (`run`) or to the `reset` and internal host-exec subcommands
//! (`reset`).

mod dns;
mod mesh;
mod reset;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::iptables;
use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;

/// The range used when `--ipalloc-range` is not given.
const DEFAULT_RANGE: &str = "10.32.0.0/12";

/// Exit status for bad flags (sysexits' EX_USAGE), as the proxy's.
const EX_USAGE: u8 = 64;

/// Weave Net's router: the HTTP API with IPAM, weaveDNS, the weave bridge, the release of
/// addresses of removed containers, and with --store-endpoints one network across hosts.
#[derive(Debug, Parser)]
#[command(name = "weaver", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remove what weaver set up: its iptables rules, the bridge (and its container ports) and
    /// the saved allocations. Safe to repeat.
    Reset(ResetArgs),
    /// Internal: chroot into ROOT and exec PROGRAM (runs the host's iptables from a container).
    #[command(name = iptables::HOST_EXEC, hide = true)]
    HostExec {
        root: PathBuf,
        program: OsString,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the HTTP API: `host:port`, or a path starting with `/` for a unix socket.
    #[arg(long, env = "WEAVE_HTTP_ADDR", default_value = "127.0.0.1:6784")]
    http_addr: String,
    /// The Docker daemon: `unix:///path`, `/path` or `tcp://host:port`.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_api: String,
    #[command(flatten)]
    bridge: BridgeArg,
    /// MTU of the bridge (container interfaces take the bridge's) [default: 65535 alone, 1376
    /// on a network of several hosts, which leaves room for VXLAN on a 1500-byte underlay].
    #[arg(long, env = "WEAVE_MTU")]
    mtu: Option<u32>,
    /// The range every automatically allocated address comes from [default: 10.32.0.0/12].
    #[arg(long)]
    ipalloc_range: Option<Ipv4Net>,
    /// Subnet for allocations that name none (`POST /ip/{id}`); defaults to the whole range.
    #[arg(long)]
    ipalloc_default_subnet: Option<Ipv4Net>,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    host: HostRootArg,
    /// Log filter, e.g. `info` or `router=debug`.
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(flatten)]
    dns: DnsArgs,
    #[command(flatten)]
    plugin: PluginArgs,
    /// Seconds a dead container keeps its addresses before they are freed (tests shorten it).
    #[arg(long, default_value_t = 30, hide = true)]
    dead_timeout: u64,
    #[command(flatten)]
    mesh: MeshArgs,
}

/// Joining a network of several hosts.
#[derive(Debug, Args)]
struct MeshArgs {
    /// The store (etcd v3) the peers share, `host:port,...`: with it this host joins the
    /// network of every host that names the same store; without it, it is alone.
    #[arg(long, env = "WEAVE_STORE_ENDPOINTS", value_delimiter = ',')]
    store_endpoints: Vec<String>,
    /// This peer's name, unique in the network [default: a MAC address made at the first
    /// start and kept in the data directory].
    #[arg(long)]
    name: Option<String>,
    /// This host's name for people [default: the host name].
    #[arg(long)]
    nickname: Option<String>,
    /// This host's address on the network between the hosts, where the others send its VXLAN
    /// traffic [default: the address this host reaches the store from].
    #[arg(long)]
    advertise_addr: Option<std::net::Ipv4Addr>,
    /// A host to join (`weave launch HOST...`), `host[:port]`, repeatable: its router says which
    /// store its network uses, and one still alone makes it. Asked in turn, again and again,
    /// until one answers; the store found is kept in the data directory (`store.json`).
    #[arg(long = "peer", value_name = "HOST")]
    peers: Vec<String>,
    /// Where to serve the peer port, `ip:port`, on which other hosts ask this router which store
    /// to join (`weave launch` serves it on 0.0.0.0:6783) [default: not served].
    #[arg(long)]
    peer_addr: Option<std::net::SocketAddr>,
    /// The image of the `weavestore` container, which runs etcd on this host when a peer asks
    /// to join and this router is still alone [default: none; such a peer is refused].
    #[arg(long)]
    store_image: Option<String>,
    /// UDP port of the VXLAN data plane, the same on every host (never Weave Net's 6783/6784).
    #[arg(long, default_value_t = weavenet::DEFAULT_VXLAN_PORT)]
    vxlan_port: u16,
    /// Prefix length of the blocks of the range each host claims for its containers.
    #[arg(long, default_value_t = 26, value_parser = clap::value_parser!(u8).range(8..=30))]
    ipalloc_block_len: u8,
    /// Seconds after its last keepalive that a peer is shown unreachable (tests shorten it).
    #[arg(long, default_value_t = 15, hide = true, value_parser = clap::value_parser!(u64).range(2..))]
    peer_ttl: u64,
}

#[derive(Debug, Args)]
struct DnsArgs {
    /// Do not run weaveDNS (its API paths then answer 404, and proxies set no DNS).
    #[arg(long)]
    no_dns: bool,
    /// The domain weaveDNS answers for.
    #[arg(long, default_value = "weave.local.")]
    dns_domain: String,
    /// Where weaveDNS listens, `ip[:port]` [default: the address of Docker's bridge, port 53].
    #[arg(long)]
    dns_listen_address: Option<String>,
    /// TTL of weaveDNS's answers, in seconds.
    #[arg(long, default_value_t = 1)]
    dns_ttl: u32,
    /// Where the upstream name servers are read from [default: <host-root>/etc/resolv.conf].
    #[arg(long)]
    resolv_conf: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PluginArgs {
    /// Do not serve Docker's network plugin.
    #[arg(long)]
    no_plugin: bool,
    /// The plugin's name: the driver name of `docker network create -d NAME` (and of
    /// `--ipam-driver NAME`); its socket is `<plugin-dir>/<name>.sock`.
    #[arg(long, default_value = crate::plugin::DEFAULT_NAME)]
    plugin_name: String,
    /// Where Docker looks for plugin sockets.
    #[arg(long, default_value = crate::plugin::DEFAULT_DIR)]
    plugin_dir: PathBuf,
}

#[derive(Debug, Args)]
struct BridgeArg {
    /// Name of the bridge containers are attached to.
    #[arg(long, env = "WEAVE_BRIDGE", default_value = "weave")]
    weave_bridge: String,
    /// Name of Docker's default bridge, kept away from weave by the iptables rules. `run` asks
    /// Docker when it is not given; `reset` removes the rules about it (default docker0).
    #[arg(long)]
    docker_bridge: Option<String>,
}

#[derive(Debug, Args)]
struct DataDirArg {
    /// Directory holding the persisted allocations.
    #[arg(long, default_value = "/var/lib/weave")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct HostRootArg {
    /// Where the host's root filesystem is: `/` on the host, `/host` in a container that mounts
    /// it there; the host's own iptables is run chrooted into it.
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
}

#[derive(Debug, Args)]
struct ResetArgs {
    #[command(flatten)]
    bridge: BridgeArg,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    host: HostRootArg,
}

/// The `weaver` program: parses its command line (from the process's arguments) and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Some(Command::HostExec {
            root,
            program,
            args,
        }) => return reset::host_exec(&root, &program, &args),
        Some(Command::Reset(args)) => runtime().and_then(|rt| rt.block_on(reset::reset(&args))),
        None => match runtime().and_then(|rt| rt.block_on(run::run(cli.run))) {
            Ok(run::Outcome::Rejoin) => return start_again(),
            other => other.map(|_| ()),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("weaver: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Replaces this process by a new run of the same program with the same arguments (and the same
/// name, which the `weave` binary dispatches on): PID, container and kernel state stay.
fn start_again() -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| OsString::from("weaver"));
    let err = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).arg0(name).args(args).exec(),
        Err(err) => err,
    };
    eprintln!("weaver: starting again: {err}");
    ExitCode::FAILURE
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
