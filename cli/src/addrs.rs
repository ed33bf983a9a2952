//! Where the proxy listens and how clients are pointed at it: the default `-H` from how this
//! command reaches Docker (never reachable by more than the daemon it fronts), a running proxy's
//! addresses read back from its arguments, and the lines `weave env` and `weave config` print.
//! Pure.

use std::net::IpAddr;

use api::DockerAddr;
use api::docker_addr::is_loopback_host;

/// The proxy's unix socket, where `weave env` points clients that reach Docker over a socket.
pub const UNIX_LISTEN: &str = "unix:///var/run/weave/weave.sock";
/// The proxy's port for clients that reach Docker over TCP.
pub const TCP_PORT: u16 = 12375;

/// The proxy's `-H` when none is given, from the client's `DOCKER_HOST`: the proxy listens where
/// the daemon is reached, so that it is exposed no more than the daemon already is.
///
/// - A unix socket (or none: Docker's default one) gives the proxy's socket.
/// - A TCP address gives port 12375 on the same host: a loopback address stays loopback, a
///   specific address is kept, and so is a name (the proxy binds what it resolves to, as the
///   client's connection did).
/// - `localhost` gives `127.0.0.1`, so that `weave env` prints the address actually bound.
/// - An every-interface address (`0.0.0.0`, `[::]`, none) gives `127.0.0.1`: a client
///   connecting there reaches this host's loopback, which may be all the daemon listens on, so
///   it says nothing about what the network may reach.
pub fn default_listen(docker_host: &str) -> String {
    let docker_host = docker_host.trim();
    let addr = match DockerAddr::parse(docker_host) {
        Ok(addr @ DockerAddr::Tcp(_)) if !docker_host.is_empty() => addr,
        _ => return UNIX_LISTEN.to_owned(),
    };
    let host = addr.host().unwrap_or_default();
    // Only the name `localhost` is replaced: a loopback address is kept as written.
    let is_name = host.trim_matches(['[', ']']).parse::<IpAddr>().is_err();
    let bind = if addr.is_every_interface() || (is_name && is_loopback_host(host)) {
        "127.0.0.1"
    } else {
        host
    };
    format!("tcp://{bind}:{TCP_PORT}")
}

/// The `-H` values in a proxy's argument list, in order (`-H A`, `-HA`, `-H=A`, `--host A`,
/// `--host=A`).
pub fn listen_args(args: &[String]) -> Vec<String> {
    let mut hosts = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-H" || arg == "--host" {
            hosts.extend(iter.next().cloned());
        } else if let Some(value) = arg.strip_prefix("--host=") {
            hosts.push(value.to_owned());
        } else if let Some(value) = arg.strip_prefix("-H") {
            hosts.push(value.strip_prefix('=').unwrap_or(value).to_owned());
        }
    }
    hosts
}

/// The host clients use for a proxy listening on every interface: the host of a `tcp://`
/// `DOCKER_HOST` (the proxy runs beside that daemon), else the loopback address.
pub fn proxy_host(docker_host: Option<&str>) -> String {
    docker_host
        .filter(|h| h.starts_with("tcp://"))
        .and_then(|h| DockerAddr::parse(h).ok())
        .filter(|addr| !addr.is_every_interface())
        .and_then(|addr| addr.host().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// A listen address as a client writes it: `unix://` and `tcp://` spelled out, and an
/// every-interface host replaced by `proxy_host`. An address that does not parse is shown as
/// given (the proxy refused it at start).
pub fn client_addr(listen: &str, proxy_host: &str) -> String {
    match DockerAddr::parse(listen) {
        Ok(addr) if addr.is_every_interface() => addr.with_host(proxy_host).to_string(),
        Ok(addr) => addr.to_string(),
        Err(_) => listen.to_owned(),
    }
}

/// What `eval "$(weave env)"` runs: `DOCKER_HOST` set to the proxy, the previous value kept in
/// `ORIG_DOCKER_HOST` — unless the client already points at the proxy, so that a second `eval`
/// does not lose the original.
pub fn env_line(proxy: &str, docker_host: Option<&str>) -> String {
    let current = docker_host.unwrap_or("");
    if current == proxy {
        format!("export DOCKER_HOST={proxy}")
    } else {
        format!("export DOCKER_HOST={proxy} ORIG_DOCKER_HOST={current}")
    }
}

/// Why `weave env --restore` has nothing to print.
pub const NOTHING_TO_RESTORE: &str = "Nothing to restore. This is most likely because there was \
    no preceding invocation of 'eval $(weave env)' in this shell.";

/// What `eval "$(weave env --restore)"` runs, from `ORIG_DOCKER_HOST`; `None` when it is unset.
/// An empty original means the client used Docker's default, so `DOCKER_HOST` is unset rather
/// than left empty.
pub fn restore_line(orig: Option<&str>) -> Option<String> {
    match orig? {
        "" => Some("unset DOCKER_HOST ORIG_DOCKER_HOST".to_owned()),
        orig => Some(format!("export DOCKER_HOST={orig}; unset ORIG_DOCKER_HOST")),
    }
}

/// What `docker $(weave config) ps` splices in.
pub fn config_line(proxy: &str) -> String {
    format!("-H={proxy}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_default_listener_reaches_no_further_than_the_daemon() {
        let cases = [
            ("", UNIX_LISTEN),
            ("unix:///var/run/docker.sock", UNIX_LISTEN),
            ("/run/other.sock", UNIX_LISTEN),
            ("ssh://me@host", UNIX_LISTEN),
            // Loopback stays loopback; `localhost` becomes the address `weave env` can print.
            ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:12375"),
            ("tcp://127.0.0.1:2375/", "tcp://127.0.0.1:12375"),
            ("tcp://localhost:2376", "tcp://127.0.0.1:12375"),
            ("tcp://LOCALHOST.:2376", "tcp://127.0.0.1:12375"),
            ("tcp://[::1]:2375", "tcp://[::1]:12375"),
            ("http://127.0.0.2:2375", "tcp://127.0.0.2:12375"),
            // A specific address or name is kept.
            ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:12375"),
            ("10.0.0.5:2375", "tcp://10.0.0.5:12375"),
            ("tcp://[fd00::5]:2375", "tcp://[fd00::5]:12375"),
            ("tcp://docker.example:2375", "tcp://docker.example:12375"),
            // Every interface says nothing about the daemon's reach: loopback.
            ("tcp://0.0.0.0:2375", "tcp://127.0.0.1:12375"),
            ("tcp://[::]:2375", "tcp://127.0.0.1:12375"),
            ("tcp://:2375", "tcp://127.0.0.1:12375"),
        ];
        for (docker_host, want) in cases {
            assert_eq!(default_listen(docker_host), want, "{docker_host:?}");
        }
    }

    #[test]
    fn listen_addresses_are_read_back_in_every_spelling() {
        let args = strings(&[
            "-H",
            "unix:///var/run/weave/weave.sock",
            "--docker-api",
            "unix:///var/run/docker.sock",
            "-Htcp://0.0.0.0:12375",
            "-H=/tmp/a.sock",
            "--host",
            "tcp://127.0.0.1:9999",
            "--host=127.0.0.1:1",
            "--hostname-match",
            "x",
        ]);
        assert_eq!(
            listen_args(&args),
            strings(&[
                "unix:///var/run/weave/weave.sock",
                "tcp://0.0.0.0:12375",
                "/tmp/a.sock",
                "tcp://127.0.0.1:9999",
                "127.0.0.1:1",
            ])
        );
        assert!(listen_args(&strings(&["-H"])).is_empty());
    }

    #[test]
    fn clients_reach_an_every_interface_proxy_through_the_daemons_host() {
        let cases = [
            (Some("tcp://1.2.3.4:2375"), "1.2.3.4"),
            (Some("tcp://docker.example:2376/"), "docker.example"),
            (Some("unix:///var/run/docker.sock"), "127.0.0.1"),
            (None, "127.0.0.1"),
        ];
        for (docker_host, want) in cases {
            assert_eq!(proxy_host(docker_host), want, "{docker_host:?}");
        }
        let addrs = [
            ("tcp://0.0.0.0:12375", "tcp://1.2.3.4:12375"),
            ("0.0.0.0:12375", "tcp://1.2.3.4:12375"),
            (":12375", "tcp://1.2.3.4:12375"),
            ("tcp://127.0.0.1:9999", "tcp://127.0.0.1:9999"),
            (
                "unix:///var/run/weave/weave.sock",
                "unix:///var/run/weave/weave.sock",
            ),
            ("/tmp/a.sock", "unix:///tmp/a.sock"),
        ];
        for (listen, want) in addrs {
            assert_eq!(client_addr(listen, "1.2.3.4"), want, "{listen}");
        }
    }

    #[test]
    fn env_keeps_the_original_daemon_once() {
        let proxy = "tcp://1.2.3.4:12375";
        assert_eq!(
            env_line(proxy, Some("tcp://1.2.3.4:2375")),
            "export DOCKER_HOST=tcp://1.2.3.4:12375 ORIG_DOCKER_HOST=tcp://1.2.3.4:2375"
        );
        assert_eq!(
            env_line(UNIX_LISTEN, None),
            "export DOCKER_HOST=unix:///var/run/weave/weave.sock ORIG_DOCKER_HOST="
        );
        // A second `eval $(weave env)` must not make the proxy its own original.
        assert_eq!(
            env_line(proxy, Some(proxy)),
            "export DOCKER_HOST=tcp://1.2.3.4:12375"
        );
    }

    #[test]
    fn restore_goes_back_to_the_original_or_to_dockers_default() {
        assert_eq!(restore_line(None), None);
        assert_eq!(
            restore_line(Some("")).as_deref(),
            Some("unset DOCKER_HOST ORIG_DOCKER_HOST")
        );
        assert_eq!(
            restore_line(Some("tcp://1.2.3.4:2375")).as_deref(),
            Some("export DOCKER_HOST=tcp://1.2.3.4:2375; unset ORIG_DOCKER_HOST")
        );
        assert_eq!(
            config_line(UNIX_LISTEN),
            "-H=unix:///var/run/weave/weave.sock"
        );
    }
}
