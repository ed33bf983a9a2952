//! Command-line flags and their validation into a [`Config`]; no I/O happens here.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::address::SocketAddr;

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

    /// The Docker daemon to forward to (unix:// or tcp://).
    #[arg(long, value_name = "ADDR", env = "DOCKER_HOST", default_value = DEFAULT_DOCKER_HOST)]
    pub docker_api: String,

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

    /// Host directory for the proxy's state (the installed weavewait versions); when the proxy
    /// runs in a container, mount it at the same path.
    #[arg(long, value_name = "DIR", env = "WEAVE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to listen.
    pub listen: Vec<SocketAddr>,
    /// The daemon to forward to.
    pub docker: SocketAddr,
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
            match SocketAddr::parse(host) {
                Ok(addr) if !listen.contains(&addr) => listen.push(addr),
                Ok(_) => {}
                Err(err) => problems.push(format!("-H: {err}")),
            }
        }
        let docker = SocketAddr::parse(&cli.docker_api)
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
        match (docker, shutdown_grace) {
            (Some(docker), Some(shutdown_grace)) if problems.is_empty() => Ok(Self {
                listen,
                docker,
                log_filter: cli.rust_log.unwrap_or(cli.log_level),
                shutdown_grace,
                no_default_ipalloc: cli.no_default_ipalloc,
                no_multicast_route: cli.no_multicast_route,
                weavewait_dir: cli.weavewait_dir,
                data_dir: cli.data_dir,
            }),
            _ => Err(problems.join("\n")),
        }
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
            [SocketAddr::Unix(PathBuf::from("/var/run/weave/weave.sock"))]
        );
        assert_eq!(
            config.docker,
            SocketAddr::Unix(PathBuf::from("/var/run/docker.sock"))
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
                SocketAddr::Tcp("127.0.0.1:9999".into()),
                SocketAddr::Unix(PathBuf::from("/tmp/a.sock"))
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
        ])
        .unwrap_err();
        for needle in ["udp://x:1", "rel.sock", "ftp://x", "--shutdown-grace"] {
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
}
