//! Command-line flags and their validation into a [`Config`]; no I/O happens here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

use crate::naming::HostnameRule;
use crate::tls::ServerTls;
use api::DockerAddr;
use api::docker_addr::{Reach, reach};

/// The default listening socket, where `weave env` points clients.
pub const DEFAULT_LISTEN: &str = "unix:///var/run/weave/weave.sock";
/// The Docker daemon's default socket.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Where weave keeps its state on the host.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weave";

/// `weaveproxy`: a Docker API proxy that attaches containers to the weave network.
#[derive(Debug, Parser)]
#[command(name = "weaveproxy", version, about)]
pub struct Cli {
    /// Address to listen on: unix:///abs/path, /abs/path, tcp://host:port or host:port
    /// (repeatable).
    #[arg(short = 'H', long = "host", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub hosts: Vec<String>,

    /// The Docker daemon to forward to (unix:// or tcp://). A tcp:// daemon is reached with TLS
    /// when DOCKER_TLS_VERIFY (verify the daemon's certificate against ca.pem and its host) or
    /// DOCKER_TLS (do not verify) is non-empty, using ca.pem, cert.pem and key.pem from
    /// DOCKER_CERT_PATH (default ~/.docker), as the docker CLI does; a unix socket ignores them.
    #[arg(long, value_name = "ADDR", env = "DOCKER_HOST", default_value = DEFAULT_DOCKER_HOST)]
    pub docker_api: String,

    /// Serve TLS on the tcp:// -H addresses with --tlscert and --tlskey (unix sockets stay
    /// plain); clients need no certificate. There are no default paths: DOCKER_CERT_PATH and
    /// ~/.docker hold the files for reaching the daemon, not the proxy's own. A tcp:// address
    /// other than a loopback one needs TLS, or --tls=false to serve it plain anyway.
    #[arg(long, help_heading = "TLS (tcp:// listeners)", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new())]
    pub tls: Option<bool>,

    /// Like --tls, and require client certificates signed by --tlscacert.
    #[arg(long = "tlsverify", alias = "tls-verify", help_heading = "TLS (tcp:// listeners)",
          value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", hide_default_value = true,
          value_parser = BoolishValueParser::new())]
    pub tlsverify: bool,

    /// CA certificate(s) that client certificates must be signed by (with --tlsverify).
    #[arg(
        long = "tlscacert",
        alias = "tls-cacert",
        value_name = "FILE",
        help_heading = "TLS (tcp:// listeners)"
    )]
    pub tlscacert: Option<PathBuf>,

    /// The proxy's certificate (chain), PEM.
    #[arg(
        long = "tlscert",
        alias = "tls-cert",
        value_name = "FILE",
        help_heading = "TLS (tcp:// listeners)"
    )]
    pub tlscert: Option<PathBuf>,

    /// The proxy's private key, PEM (PKCS#8, RSA or EC).
    #[arg(
        long = "tlskey",
        alias = "tls-key",
        value_name = "FILE",
        help_heading = "TLS (tcp:// listeners)"
    )]
    pub tlskey: Option<PathBuf>,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive list.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "WEAVEPROXY_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    /// Overrides --log-level when set, as in every tracing-based program.
    #[arg(long, hide = true, env = "RUST_LOG")]
    pub rust_log: Option<String>,

    /// Seconds to let in-flight requests finish after SIGTERM before cutting them.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub shutdown_grace: f64,

    /// Containers without WEAVE_CIDR are not attached (WEAVE_CIDR= still allocates).
    #[arg(long)]
    pub no_default_ipalloc: bool,

    /// Do not add the 224.0.0.0/4 route in containers, and do not wait for it.
    #[arg(long)]
    pub no_multicast_route: bool,

    /// Directory holding the weavewait builds w/w, w-nomcast/w and w-noop/w
    /// [default: ./weavewait beside this program, else / when /w/w exists]
    #[arg(long, value_name = "DIR", env = "WEAVEPROXY_WEAVEWAIT_DIR")]
    pub weavewait_dir: Option<PathBuf>,

    /// The weave router's HTTP API, `host:port` (a bare host gets port 6784).
    #[arg(long, value_name = "ADDR", env = "WEAVE_HTTP_ADDR", default_value = api::client::DEFAULT_ADDR)]
    pub router_addr: String,

    /// The bridge containers are attached to.
    #[arg(
        long,
        value_name = "NAME",
        env = "WEAVE_BRIDGE",
        default_value = "weave"
    )]
    pub weave_bridge: String,

    /// Seconds a start through the proxy may spend attaching before the container is stopped
    /// and the client told why.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub attach_timeout: f64,

    /// Host directory for the proxy's state (the installed weavewait versions); when the proxy
    /// runs in a container, mount it at the same path.
    #[arg(long, value_name = "DIR", env = "WEAVE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Do not use weaveDNS: no hostname, DNS server or search domain is set, and no name is
    /// registered.
    #[arg(long)]
    pub without_dns: bool,

    /// Leave containers' /etc/hosts as Docker writes it (by default the weave addresses come
    /// first for the container's hostname).
    #[arg(long)]
    pub no_rewrite_hosts: bool,

    /// `docker inspect` shows the weave address, prefix length and MAC in NetworkSettings.
    #[arg(long)]
    pub rewrite_inspect: bool,

    /// Take a container's hostname from this label instead of its name.
    #[arg(long, value_name = "KEY")]
    pub hostname_from_label: Option<String>,

    /// Serve Prometheus metrics at GET /metrics on this loopback address, `127.0.0.1:PORT`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Regular expression the name (or label) is matched against to form the hostname.
    #[arg(long, value_name = "REGEX", default_value = "(.*)")]
    pub hostname_match: String,

    /// Replacement for --hostname-match ($1, $name or ${name} refer to its groups).
    #[arg(long, value_name = "TEMPLATE", default_value = "$1")]
    pub hostname_replacement: String,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to listen.
    pub listen: Vec<DockerAddr>,
    /// The daemon to forward to.
    pub docker: DockerAddr,
    /// The tracing filter directive.
    pub log_filter: String,
    /// How long in-flight work may take after SIGTERM.
    pub shutdown_grace: Duration,
    /// `--no-default-ipalloc`.
    pub no_default_ipalloc: bool,
    /// `--no-multicast-route`.
    pub no_multicast_route: bool,
    /// `--weavewait-dir`, if given.
    pub weavewait_dir: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--router-addr`, normalised.
    pub router_addr: String,
    /// `--weave-bridge`.
    pub weave_bridge: String,
    /// `--attach-timeout`.
    pub attach_timeout: Duration,
    /// `--without-dns`.
    pub without_dns: bool,
    /// Not `--no-rewrite-hosts`.
    pub rewrite_hosts: bool,
    /// `--rewrite-inspect`.
    pub rewrite_inspect: bool,
    /// `--hostname-from-label`, `--hostname-match` and `--hostname-replacement`.
    pub hostname: HostnameRule,
    /// `--tls` or `--tlsverify` with their files, for the TCP listeners.
    pub tls: Option<ServerTls>,
    /// The plain-HTTP listeners the network can reach, which `--tls=false` allowed; the proxy
    /// warns about each when it starts.
    pub plain_network: Vec<DockerAddr>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
}

impl Config {
    /// Validates every flag and reports every bad one at once, one per line.
    ///
    /// # Errors
    /// The list of problems found.
    pub fn from_cli(cli: Cli) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut listen = Vec::new();
        for host in &cli.hosts {
            match DockerAddr::parse(host) {
                Ok(addr) if !listen.contains(&addr) => listen.push(addr),
                Ok(_) => {}
                Err(err) => problems.push(format!("-H: {err}")),
            }
        }
        let docker = DockerAddr::parse(&cli.docker_api)
            .map_err(|err| problems.push(format!("--docker-api: {err}")))
            .ok();
        if let Some(docker) = docker.as_ref().filter(|d| listen.contains(d)) {
            // Typically DOCKER_HOST still set by `eval $(weave env)`.
            problems.push(format!(
                "--docker-api {docker} is one of the proxy's own -H addresses; \
                 point it at the Docker daemon (unset DOCKER_HOST or run `eval $(weave env --restore)`)"
            ));
        }
        let shutdown_grace = Duration::try_from_secs_f64(cli.shutdown_grace)
            .map_err(|_| {
                problems.push(format!(
                    "--shutdown-grace {}: expected a non-negative number of seconds",
                    cli.shutdown_grace
                ));
            })
            .ok();
        let attach_timeout = Duration::try_from_secs_f64(cli.attach_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .or_else(|| {
                problems.push(format!(
                    "--attach-timeout {}: expected a positive number of seconds",
                    cli.attach_timeout
                ));
                None
            });
        if cli.weave_bridge.is_empty() || cli.weave_bridge.len() > 15 {
            problems.push(format!(
                "--weave-bridge {:?}: a Linux interface name has 1 to 15 bytes",
                cli.weave_bridge
            ));
        }
        if let Some(addr) = cli.metrics_addr
            && !crate::metrics::is_allowed(&addr)
        {
            problems.push(format!(
                "--metrics-addr {addr}: serve the metrics on a loopback address (127.0.0.1:PORT);                  they describe the containers of this host"
            ));
        }
        let hostname = HostnameRule::new(
            cli.hostname_from_label.clone(),
            &cli.hostname_match,
            &cli.hostname_replacement,
        )
        .map_err(|err| problems.push(format!("--hostname-match: {err}")))
        .ok();
        let tls = server_tls(&cli)
            .map_err(|problem| problems.push(problem))
            .ok();
        let plain_network = match &tls {
            Some(None) => plain_network(&listen, cli.tls)
                .map_err(|problem| problems.push(problem))
                .unwrap_or_default(),
            // TLS on every TCP listener, or a TLS problem already reported.
            Some(Some(_)) | None => Vec::new(),
        };
        match (docker, shutdown_grace, attach_timeout, hostname, tls) {
            (
                Some(docker),
                Some(shutdown_grace),
                Some(attach_timeout),
                Some(hostname),
                Some(tls),
            ) if problems.is_empty() => Ok(Self {
                listen,
                docker,
                log_filter: cli.rust_log.unwrap_or(cli.log_level),
                shutdown_grace,
                no_default_ipalloc: cli.no_default_ipalloc,
                no_multicast_route: cli.no_multicast_route,
                weavewait_dir: cli.weavewait_dir,
                data_dir: cli.data_dir,
                router_addr: api::client::normalise_addr(&cli.router_addr),
                weave_bridge: cli.weave_bridge,
                attach_timeout,
                without_dns: cli.without_dns,
                rewrite_hosts: !cli.no_rewrite_hosts,
                rewrite_inspect: cli.rewrite_inspect,
                hostname,
                tls,
                plain_network,
                metrics_addr: cli.metrics_addr,
            }),
            _ => Err(problems.join("\n")),
        }
    }
}

/// The listeners of a proxy without TLS that the network can reach, when `--tls=false` says
/// that is meant.
///
/// Whoever reaches the Docker API controls the host, and plain HTTP has no way to tell who that
/// is; dockerd warns about such a listener and is moving to refuse it. So the proxy refuses it
/// unless told `--tls=false` in so many words: a missing TLS flag is not consent (a typo, or
/// flags lost on the way, would otherwise open the host). Loopback addresses and unix sockets
/// stay on this host and need nothing.
fn plain_network(listen: &[DockerAddr], tls_flag: Option<bool>) -> Result<Vec<DockerAddr>, String> {
    let network: Vec<DockerAddr> = listen
        .iter()
        .filter(|addr| reach(addr) == Reach::Network)
        .cloned()
        .collect();
    if network.is_empty() || tls_flag == Some(false) {
        return Ok(network);
    }
    let addrs: Vec<String> = network.iter().map(|addr| format!("-H {addr}")).collect();
    Err(format!(
        "{} would serve the Docker API over plain HTTP to the network, and whoever reaches \
         the API controls this host: serve TLS there (--tlsverify with --tlscacert, --tlscert and \
         --tlskey), listen on a loopback address such as tcp://127.0.0.1:12375, or pass \
         --tls=false to serve it plain anyway",
        addrs.join(", ")
    ))
}

/// The listeners' TLS from `--tls`, `--tlsverify` and the file flags, as dockerd reads them:
/// `--tlsverify` implies `--tls`, and `--tlscacert` matters only with `--tlsverify`.
///
/// Unlike dockerd, certificate files without `--tls` are refused rather than ignored (a proxy
/// that was meant to be private would otherwise serve plain HTTP), and there are no default
/// file paths.
fn server_tls(cli: &Cli) -> Result<Option<ServerTls>, String> {
    let tls = cli.tls == Some(true);
    if !tls && !cli.tlsverify {
        let given: Vec<&str> = [
            ("--tlscacert", cli.tlscacert.is_some()),
            ("--tlscert", cli.tlscert.is_some()),
            ("--tlskey", cli.tlskey.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        return if given.is_empty() {
            Ok(None)
        } else {
            Err(format!(
                "{} given without --tls or --tlsverify: add one of them, or the tcp:// \
                 listeners would serve plain HTTP",
                given.join(", ")
            ))
        };
    }
    let flag = if cli.tlsverify {
        "--tlsverify"
    } else {
        "--tls"
    };
    let missing: Vec<&str> = [
        ("--tlscacert", cli.tlsverify && cli.tlscacert.is_none()),
        ("--tlscert", cli.tlscert.is_none()),
        ("--tlskey", cli.tlskey.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, absent)| absent.then_some(flag))
    .collect();
    match (&cli.tlscert, &cli.tlskey) {
        (Some(cert), Some(key)) if missing.is_empty() => Ok(Some(ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cli.tlscacert.clone().filter(|_| cli.tlsverify),
        })),
        _ => Err(format!(
            "{flag} needs {} (there are no default certificate paths)",
            missing.join(", ")
        )),
    }
}

/// Turns a bare level (`debug`) into a directive for this program only, so that `--log-level
/// debug` shows one line per request rather than every dependency's internals; a full directive
/// list (`hyper_util=trace,info`) is used as given.
pub fn log_directive(filter: &str) -> String {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = filter.trim().to_ascii_lowercase();
    if LEVELS.contains(&level.as_str()) {
        format!("warn,weaveproxy={level}")
    } else {
        filter.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("weaveproxy").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_cli(cli)
    }

    #[test]
    fn defaults_follow_weave_and_docker() {
        let config = parse(&["--docker-api", DEFAULT_DOCKER_HOST]).unwrap();
        assert_eq!(
            config.listen,
            [DockerAddr::Unix(PathBuf::from("/var/run/weave/weave.sock"))]
        );
        assert_eq!(
            config.docker,
            DockerAddr::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn repeated_hosts_keep_their_order_without_duplicates() {
        let config = parse(&[
            "--docker-api",
            DEFAULT_DOCKER_HOST,
            "-H",
            "tcp://127.0.0.1:9999",
            "-H",
            "/tmp/a.sock",
            "--host",
            "unix:///tmp/a.sock",
        ])
        .unwrap();
        assert_eq!(
            config.listen,
            [
                DockerAddr::Tcp("127.0.0.1:9999".into()),
                DockerAddr::Unix(PathBuf::from("/tmp/a.sock"))
            ]
        );
    }

    #[test]
    fn reports_every_bad_flag() {
        let err = parse(&[
            "-H",
            "udp://x:1",
            "-H",
            "rel.sock",
            "--docker-api",
            "ftp://x",
            "--shutdown-grace=-1",
            "--attach-timeout=0",
            "--weave-bridge=a-name-far-too-long",
        ])
        .unwrap_err();
        for needle in [
            "udp://x:1",
            "rel.sock",
            "ftp://x",
            "--shutdown-grace",
            "--attach-timeout",
            "--weave-bridge",
        ] {
            assert!(err.contains(needle), "{needle} missing from:\n{err}");
        }
    }

    #[test]
    fn refuses_to_forward_to_itself() {
        let err = parse(&["-H", "/tmp/w.sock", "--docker-api", "unix:///tmp/w.sock"]).unwrap_err();
        assert!(err.contains("own -H"), "{err}");
    }

    #[test]
    fn bare_levels_apply_to_the_proxy_only() {
        let cases = [
            ("debug", "warn,weaveproxy=debug"),
            ("INFO", "warn,weaveproxy=info"),
            ("hyper_util=trace,info", "hyper_util=trace,info"),
        ];
        for (input, want) in cases {
            assert_eq!(log_directive(input), want, "{input}");
        }
    }

    #[test]
    fn rust_log_overrides_log_level() {
        let config = parse(&[
            "--docker-api",
            DEFAULT_DOCKER_HOST,
            "--log-level",
            "debug",
            "--rust-log",
            "weaveproxy=trace",
        ])
        .unwrap();
        assert_eq!(config.log_filter, "weaveproxy=trace");
    }

    fn tls_of(args: &[&str]) -> Result<Option<ServerTls>, String> {
        let mut all = vec!["--docker-api", DEFAULT_DOCKER_HOST];
        all.extend_from_slice(args);
        parse(&all).map(|config| config.tls)
    }

    fn server(cert: &str, key: &str, ca: Option<&str>) -> Option<ServerTls> {
        Some(ServerTls {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            client_ca: ca.map(PathBuf::from),
        })
    }

    #[test]
    fn tls_flags_in_dockers_and_the_weave_docs_spellings() {
        let files = ["--tlscert", "/c.pem", "--tlskey", "/k.pem"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            extra.iter().copied().chain(files).collect()
        };
        let cases: Vec<(Vec<&str>, Option<ServerTls>)> = vec![
            (vec![], None),
            (with(&["--tls"]), server("/c.pem", "/k.pem", None)),
            (with(&["--tls=true"]), server("/c.pem", "/k.pem", None)),
            // --tlscacert only matters with --tlsverify, as in dockerd.
            (
                with(&["--tls", "--tlscacert", "/ca.pem"]),
                server("/c.pem", "/k.pem", None),
            ),
            (
                with(&["--tlsverify", "--tlscacert", "/ca.pem"]),
                server("/c.pem", "/k.pem", Some("/ca.pem")),
            ),
            // --tlsverify implies --tls, even when --tls=false is said.
            (
                with(&["--tls=false", "--tlsverify", "--tlscacert=/ca.pem"]),
                server("/c.pem", "/k.pem", Some("/ca.pem")),
            ),
            (
                vec![
                    "--tls-verify",
                    "--tls-cacert=/ca.pem",
                    "--tls-cert=/c.pem",
                    "--tls-key=/k.pem",
                ],
                server("/c.pem", "/k.pem", Some("/ca.pem")),
            ),
            (
                vec![
                    "--tls-verify=1",
                    "--tls-cacert",
                    "/ca.pem",
                    "--tls-cert",
                    "/c.pem",
                    "--tls-key",
                    "/k.pem",
                ],
                server("/c.pem", "/k.pem", Some("/ca.pem")),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(tls_of(&args).unwrap(), want, "{args:?}");
        }
    }

    #[test]
    fn incomplete_tls_flags_are_refused_naming_what_is_missing() {
        let cases: [(&[&str], &[&str]); 5] = [
            (&["--tls"], &["--tls needs", "--tlscert", "--tlskey"]),
            (&["--tls", "--tlscert", "/c.pem"], &["--tlskey"]),
            (
                &["--tlsverify", "--tlscert", "/c.pem", "--tlskey", "/k.pem"],
                &["--tlsverify needs --tlscacert"],
            ),
            // Files without --tls would leave the listener plain: refused, not ignored.
            (
                &["--tlscert", "/c.pem", "--tlskey", "/k.pem"],
                &["--tlscert, --tlskey given without --tls"],
            ),
            (
                &["--tlsverify=false", "--tls-cacert", "/ca.pem"],
                &["--tlscacert given without"],
            ),
        ];
        for (args, needles) in cases {
            let err = tls_of(args).unwrap_err();
            for needle in needles {
                assert!(
                    err.contains(needle),
                    "{args:?}: {needle} missing from {err}"
                );
            }
        }
    }

    #[test]
    fn plain_http_to_the_network_needs_tls_false_said() {
        /// Flags, and the listeners allowed plain on the network or the refusal's words.
        type Case = (Vec<&'static str>, Result<Vec<&'static str>, &'static str>);
        let cases: Vec<Case> = vec![
            (vec!["-H", "tcp://127.0.0.1:12375"], Ok(vec![])),
            (vec!["-H", "tcp://localhost:12375"], Ok(vec![])),
            (vec!["-H", "tcp://[::1]:12375"], Ok(vec![])),
            (vec!["-H", "/tmp/w.sock"], Ok(vec![])),
            (vec!["-H", "tcp://0.0.0.0:12375"], Err("--tls=false")),
            (vec!["-H", ":12375"], Err("-H tcp://0.0.0.0:12375")),
            (vec!["-H", "tcp://10.0.0.5:12375"], Err("plain HTTP")),
            (vec!["-H", "tcp://docker.example:12375"], Err("--tls=false")),
            // Incomplete TLS is reported as such, never taken for plain HTTP.
            (
                vec!["-H", "tcp://0.0.0.0:1", "--tls=true", "--tlscert", "/c.pem"],
                Err("--tlskey"),
            ),
            (
                vec!["-H", "tcp://0.0.0.0:1", "--tls=0"],
                Ok(vec!["0.0.0.0:1"]),
            ),
            (
                vec![
                    "-H",
                    "tcp://0.0.0.0:1",
                    "-H",
                    "tcp://127.0.0.1:2",
                    "--tls=false",
                ],
                Ok(vec!["0.0.0.0:1"]),
            ),
            // TLS served: nothing is plain.
            (
                vec!["-H", ":1", "--tls", "--tlscert=/c.pem", "--tlskey=/k.pem"],
                Ok(vec![]),
            ),
            (
                vec![
                    "-H",
                    ":1",
                    "--tls=false",
                    "--tlsverify",
                    "--tlscacert=/ca.pem",
                    "--tlscert=/c.pem",
                    "--tlskey=/k.pem",
                ],
                Ok(vec![]),
            ),
        ];
        for (args, want) in cases {
            let mut all = vec!["--docker-api", DEFAULT_DOCKER_HOST];
            all.extend_from_slice(&args);
            match (parse(&all), want) {
                (Ok(config), Ok(want)) => {
                    let want: Vec<DockerAddr> =
                        want.iter().map(|a| DockerAddr::Tcp((*a).into())).collect();
                    assert_eq!(config.plain_network, want, "{args:?}");
                }
                (Err(err), Err(needle)) => assert!(err.contains(needle), "{args:?}: {err}"),
                (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn boolean_tls_flags_take_a_value_only_after_equals() {
        // As with Go's flag package: `--tlsverify false` is not a value but a stray argument.
        let err = tls_of(&["--tlsverify", "false"]).unwrap_err();
        assert!(err.contains("false"), "{err}");
    }
}
