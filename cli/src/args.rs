//! The `weave` command line: subcommands and flags, parsed by clap; no I/O happens here.
// The doc comments here are clap's help texts, where `[ip:]CIDR` and `ip[:port]` are command
// line syntax rather than links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weave: runs the weave router and Docker API proxy as containers, points Docker clients at the
/// proxy, and attaches containers to the weave network without it.
#[derive(Debug, Parser)]
#[command(name = "weave", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch the router (with weaveDNS) and the proxy: launch-router, then launch-proxy.
    Launch(LaunchArgs),
    /// Launch the router container `weave` (IPAM, weaveDNS, the weave bridge).
    LaunchRouter(LaunchRouterArgs),
    /// Launch the proxy container `weaveproxy` in front of the Docker daemon.
    LaunchProxy(LaunchProxyArgs),
    /// Stop the proxy and the router (their containers stay, for `weave launch` to replace).
    Stop,
    /// Stop the router container `weave`.
    StopRouter,
    /// Stop the proxy container `weaveproxy`.
    StopProxy,
    /// Print the shell commands that point Docker clients at the proxy: eval "$(weave env)".
    Env(EnvArgs),
    /// Print the docker flag that reaches the proxy: docker $(weave config) ps.
    Config,
    /// Report on the router, IPAM, weaveDNS and the proxy.
    Status(StatusArgs),
    /// Take over the address blocks of a peer that is gone for good, and remove its names:
    /// weave rmpeer NAME-OR-NICKNAME [--force].
    Rmpeer(RmpeerArgs),
    /// Join the network HOST is on (its store), or add HOST's store endpoints: weave connect HOST.
    Connect(PeerArg),
    /// Stop using the store endpoints on HOST: weave forget HOST.
    Forget(PeerArg),
    /// List the weave interfaces of containers: name, MAC and addresses.
    Ps(PsArgs),
    /// Print the versions of this command, of the image it launches and of the running router.
    Version,
    /// Remove everything launch created: the containers, the bridge, its rules, the saved
    /// addresses and the proxy's socket.
    Reset,
    /// docker run -d, then attach the container to the weave network (without the proxy).
    Run(RunArgs),
    /// docker start, then attach the container to the weave network (without the proxy).
    Start(StartArgs),
    /// Attach a running container to the weave network: weave attach [ADDR...] CONTAINER.
    Attach(AttachArgs),
    /// Remove a container's weave interface and release its addresses.
    Detach(DetachArgs),
    /// Register a name in weaveDNS: weave dns-add [IP...] CONTAINER [-h FQDN] | IP... -h FQDN.
    #[command(disable_help_flag = true)]
    DnsAdd(DnsArgs),
    /// Remove a name from weaveDNS (the same arguments as dns-add).
    #[command(disable_help_flag = true)]
    DnsRemove(DnsArgs),
    /// Print the docker run flags that make a container use weaveDNS: docker run $(weave dns-args).
    DnsArgs,
    /// Ask weaveDNS for a name's addresses, one per line.
    DnsLookup {
        /// The name, such as web.weave.local.
        name: String,
    },
    /// Give the host an address on the weave network: weave expose [ADDR...] [-h FQDN].
    #[command(disable_help_flag = true)]
    Expose(ExposeArgs),
    /// Take the host's weave addresses away again: weave hide [ADDR...].
    Hide(HideArgs),
    /// Internal: ask the router's HTTP API from inside a container on the host network.
    #[command(hide = true)]
    RouterRequest(RouterRequestArgs),
    /// Internal: exit 0 once ADDR answers like the Docker API (the proxy's readiness).
    #[command(hide = true)]
    ProbeProxy { addr: String },
}

/// Flags of both launch commands.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonFlags {
    /// Do not restart the containers when they exit or the host reboots.
    #[arg(long)]
    pub no_restart: bool,
    /// Log level of the launched programs (error, warn, info, debug).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// The router's flags that `launch` and `launch-router` pass on.
#[derive(Debug, Clone, Default, Args)]
pub struct RouterFlags {
    /// Hosts of the network to join, `host[:port]`: each one's router is asked (on port 6783)
    /// which store the network uses; one still alone makes it. Without any, this host is alone
    /// until another names it.
    #[arg(value_name = "PEER")]
    pub peers: Vec<String>,
    /// The range automatically allocated addresses come from [default: 10.32.0.0/12].
    #[arg(long, value_name = "CIDR")]
    pub ipalloc_range: Option<String>,
    /// Subnet for containers that name none [default: the whole range].
    #[arg(long, value_name = "CIDR")]
    pub ipalloc_default_subnet: Option<String>,
    /// Do not run weaveDNS.
    #[arg(long)]
    pub no_dns: bool,
    /// The domain weaveDNS answers for [default: weave.local.].
    #[arg(long, value_name = "DOMAIN")]
    pub dns_domain: Option<String>,
    /// Where weaveDNS listens, ip[:port] [default: the Docker bridge's address, port 53].
    #[arg(long, value_name = "ADDR")]
    pub dns_listen_address: Option<String>,
    /// TTL of weaveDNS's answers, in seconds [default: 1].
    #[arg(long, value_name = "SECONDS")]
    pub dns_ttl: Option<u32>,
    /// MTU of the weave bridge [default: 65535 alone, 1376 on a network of several hosts].
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// Join the network of every host that names this etcd v3 store: `host:port,...`.
    #[arg(long, value_name = "ENDPOINTS", help_heading = "Several hosts")]
    pub store_endpoints: Option<String>,
    /// This peer's name [default: a MAC address made at the first launch, then kept].
    #[arg(long, value_name = "NAME", help_heading = "Several hosts")]
    pub name: Option<String>,
    /// This host's name for people [default: its host name].
    #[arg(long, value_name = "NICKNAME", help_heading = "Several hosts")]
    pub nickname: Option<String>,
    /// This host's address on the network between hosts [default: the one that reaches the
    /// store].
    #[arg(long, value_name = "IP", help_heading = "Several hosts")]
    pub advertise_addr: Option<String>,
    /// UDP port of the VXLAN data plane, the same on every host [default: 6789].
    #[arg(long, value_name = "PORT", help_heading = "Several hosts")]
    pub vxlan_port: Option<u16>,
    /// Do not serve Docker's network plugin, and create no `weave` network.
    #[arg(long)]
    pub no_plugin: bool,
}

/// The proxy's flags that `launch` and `launch-proxy` pass on.
#[derive(Debug, Clone, Default, Args)]
pub struct ProxyFlags {
    /// Where the proxy listens (repeatable) [default: unix:///var/run/weave/weave.sock when
    /// Docker is reached over a unix socket; over TCP, port 12375 on the daemon's host, or
    /// 127.0.0.1 when that is a loopback or every-interface address].
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Serve TLS on tcp:// addresses [default: as the Docker daemon does]. A tcp:// address
    /// other than a loopback one needs TLS, or --tls=false to serve it plain anyway.
    #[arg(long, help_heading = "TLS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: Option<bool>,
    /// Serve TLS and require client certificates signed by --tlscacert.
    #[arg(long = "tlsverify", alias = "tls-verify", help_heading = "TLS")]
    pub tlsverify: bool,
    /// CA certificate that client certificates must be signed by (a host path).
    #[arg(
        long = "tlscacert",
        alias = "tls-cacert",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub tlscacert: Option<PathBuf>,
    /// The proxy's certificate (a host path).
    #[arg(
        long = "tlscert",
        alias = "tls-cert",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub tlscert: Option<PathBuf>,
    /// The proxy's private key (a host path).
    #[arg(
        long = "tlskey",
        alias = "tls-key",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub tlskey: Option<PathBuf>,
    /// Do not copy the Docker daemon's TLS settings when no TLS flag is given.
    #[arg(long, help_heading = "TLS")]
    pub no_detect_tls: bool,
    /// Containers without WEAVE_CIDR are not attached.
    #[arg(long)]
    pub no_default_ipalloc: bool,
    /// Do not use weaveDNS for containers.
    #[arg(long)]
    pub without_dns: bool,
    /// Leave containers' /etc/hosts as Docker writes it.
    #[arg(long)]
    pub no_rewrite_hosts: bool,
    /// `docker inspect` shows the weave address in NetworkSettings.
    #[arg(long)]
    pub rewrite_inspect: bool,
    /// Take containers' hostnames from this label.
    #[arg(long, value_name = "KEY")]
    pub hostname_from_label: Option<String>,
    /// Regular expression the name (or label) is matched against.
    #[arg(long, value_name = "REGEX")]
    pub hostname_match: Option<String>,
    /// Replacement for --hostname-match ($1, ${name}).
    #[arg(long, value_name = "TEMPLATE")]
    pub hostname_replacement: Option<String>,
    /// No 224.0.0.0/4 route in containers.
    #[arg(long)]
    pub no_multicast_route: bool,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten, next_help_heading = "Router")]
    pub router: RouterFlags,
    #[command(flatten, next_help_heading = "Proxy")]
    pub proxy: ProxyFlags,
}

#[derive(Debug, Args)]
pub struct LaunchRouterArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    pub router: RouterFlags,
}

#[derive(Debug, Args)]
pub struct LaunchProxyArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    pub proxy: ProxyFlags,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Print the commands that point Docker clients back where they were.
    #[arg(long)]
    pub restore: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only one section: router, ipam, dns or proxy; on a network of several hosts also
    /// peers (each peer and whether it is alive), connections (whether each peer's VXLAN
    /// endpoint answers, full-size frames included) and ipam (the address blocks per peer).
    pub section: Option<String>,
}

#[derive(Debug, Args)]
pub struct PeerArg {
    /// The host, `host[:port]`, as given to `weave launch`.
    pub peer: String,
}

#[derive(Debug, Args)]
pub struct RmpeerArgs {
    /// The peer's name or nickname, as `weave status peers` shows it.
    pub peer: String,
    /// Remove it even though it is alive (its containers keep their addresses, which this
    /// peer may then give out again).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Containers to list [default: every running container, and the host's weave:expose].
    pub containers: Vec<String>,
}

/// Attach flags shared by run, start and attach.
#[derive(Debug, Clone, Default, Args)]
pub struct AttachFlags {
    /// Do not register the container's name in weaveDNS.
    #[arg(long)]
    pub without_dns: bool,
    /// Do not put the weave addresses into the container's /etc/hosts.
    #[arg(long, conflicts_with = "rewrite_hosts")]
    pub no_rewrite_hosts: bool,
    /// Weave Net's `attach` rewrote /etc/hosts only when asked; here it is the default, and the
    /// flag is accepted so that its command lines still work.
    #[arg(long, hide = true)]
    pub rewrite_hosts: bool,
    /// No 224.0.0.0/4 route in the container.
    #[arg(long)]
    pub no_multicast_route: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: AttachFlags,
    /// Addresses ([ip:]CIDR, net:CIDR, net:default), then `docker run` arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub flags: AttachFlags,
    /// Addresses ([ip:]CIDR, net:CIDR, net:default), then the container.
    #[arg(required = true, value_name = "ADDR... CONTAINER")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub flags: AttachFlags,
    /// Addresses ([ip:]CIDR, net:CIDR, net:default), then the container.
    #[arg(required = true, value_name = "ADDR... CONTAINER")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Addresses to remove (default: all), then the container.
    #[arg(required = true, value_name = "ADDR... CONTAINER")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DnsArgs {
    /// The name to register [default: the container's hostname.domainname].
    #[arg(short = 'h', long = "hostname", value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// IP addresses, then (optionally) the container.
    #[arg(value_name = "IP... [CONTAINER]")]
    pub args: Vec<String>,
    #[arg(long, action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// Also register this name in weaveDNS for the host's addresses.
    #[arg(short = 'h', long = "hostname", value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// Addresses ([ip:]CIDR, net:CIDR, net:default) [default: net:default].
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<String>,
    #[arg(long, action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
pub struct HideArgs {
    /// Addresses to remove [default: all of the host's weave addresses].
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RouterRequestArgs {
    pub method: String,
    pub path: String,
    /// Form fields, key=value.
    pub form: Vec<String>,
    /// Exit 1 unless the router answers 2xx.
    #[arg(long)]
    pub expect_success: bool,
}
