//! Docker-style socket addresses, parsed once for everyone: what the proxy's `-H`, its
//! `--docker-api`, the router's `--docker-api` and `DOCKER_HOST` accept; and who can reach a
//! listener on one, from the address alone.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where the proxy listens, and where the Docker daemon is.
///
/// Docker writes both kinds as URLs (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`)
/// and also accepts the short forms `/abs/path` and `host:port`; Weave Net's proxy did too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DockerAddr {
    /// A unix socket at an absolute path.
    Unix(PathBuf),
    /// A TCP `host:port`; the host may be a name, an IPv4 address or a bracketed IPv6 address.
    Tcp(String),
}

/// Why an address could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    /// The scheme is neither `unix` nor `tcp`.
    #[error(
        "invalid address {addr:?}: unsupported protocol {scheme:?} (use unix:///path or tcp://host:port)"
    )]
    Protocol { addr: String, scheme: String },
    /// A unix socket path that is not absolute.
    #[error("invalid address {addr:?}: a unix socket path must be absolute")]
    RelativePath { addr: String },
    /// A TCP address without a usable `host:port`.
    #[error("invalid address {addr:?}: expected host:port with a port number")]
    HostPort { addr: String },
}

impl DockerAddr {
    /// Parses `unix:///abs/path`, `/abs/path`, `tcp://host:port` or `host:port`.
    ///
    /// # Errors
    /// Any other scheme, a relative unix path, or a TCP address without a numeric port.
    pub fn parse(addr: &str) -> Result<Self, AddressError> {
        let addr = addr.trim();
        if let Some((scheme, rest)) = addr.split_once("://") {
            return match scheme {
                "unix" => Self::unix(addr, rest),
                "tcp" | "http" => Self::tcp(addr, rest),
                _ => Err(AddressError::Protocol {
                    addr: addr.to_owned(),
                    scheme: scheme.to_owned(),
                }),
            };
        }
        if addr.starts_with('/') {
            return Self::unix(addr, addr);
        }
        Self::tcp(addr, addr)
    }

    fn unix(original: &str, path: &str) -> Result<Self, AddressError> {
        if !path.starts_with('/') {
            return Err(AddressError::RelativePath {
                addr: original.to_owned(),
            });
        }
        Ok(Self::Unix(PathBuf::from(path)))
    }

    fn tcp(original: &str, host_port: &str) -> Result<Self, AddressError> {
        // A trailing slash is common in DOCKER_HOST values copied from URLs.
        let host_port = host_port.trim_end_matches('/');
        let bad = || AddressError::HostPort {
            addr: original.to_owned(),
        };
        let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad());
        }
        // An empty host means all interfaces, as with Docker's `-H :2375`.
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(Self::Tcp(format!("{host}:{port}")))
    }
}

impl DockerAddr {
    /// The host of a TCP address as written (an IPv6 address in its brackets); `None` for a
    /// unix socket.
    pub fn host(&self) -> Option<&str> {
        match self {
            Self::Tcp(host_port) => host_port.rsplit_once(':').map(|(host, _)| host),
            Self::Unix(_) => None,
        }
    }

    /// Whether this is a TCP address on every interface (`0.0.0.0`, `[::]`, or no host).
    pub fn is_every_interface(&self) -> bool {
        self.host()
            .is_some_and(|host| matches!(host, "0.0.0.0" | "[::]"))
    }

    /// The same port on `host` instead, for a TCP address; a unix socket stays as it is.
    pub fn with_host(&self, host: &str) -> Self {
        match self {
            Self::Tcp(host_port) => {
                let port = host_port.rsplit_once(':').map_or("", |(_, port)| port);
                Self::Tcp(format!("{host}:{port}"))
            }
            Self::Unix(_) => self.clone(),
        }
    }
}

impl fmt::Display for DockerAddr {
    /// The canonical URL form, which is what `DOCKER_HOST` wants.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(host_port) => write!(f, "tcp://{host_port}"),
        }
    }
}

/// Who can reach a listener. Whoever reaches the Docker API controls the host (a privileged
/// container is one request away), so a plain-HTTP listener that the network can reach is
/// refused unless asked for (see the proxy's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only this host: a unix socket (its owner and mode decide who) or a loopback address.
    ThisHost,
    /// Whoever can route to this host: every other TCP address, including every-interface ones
    /// (`0.0.0.0`, `[::]`) and host names other than `localhost`.
    Network,
}

/// Who can reach a listener on `addr`. Decided from the address as written, without resolving
/// names: a name's addresses may change after the check, so only `localhost` counts as loopback.
pub fn reach(addr: &DockerAddr) -> Reach {
    match addr {
        DockerAddr::Unix(_) => Reach::ThisHost,
        DockerAddr::Tcp(host_port) => {
            let host = host_port.rsplit_once(':').map_or("", |(host, _)| host);
            if is_loopback_host(host) {
                Reach::ThisHost
            } else {
                Reach::Network
            }
        }
    }
}

/// Whether `host` (an IP address, IPv6 in brackets or not, or a name) is a loopback address:
/// `127.0.0.0/8`, `::1` (also as `::ffff:127.x.y.z`) or the name `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let unix = |p: &str| Ok(DockerAddr::Unix(PathBuf::from(p)));
        let tcp = |a: &str| Ok(DockerAddr::Tcp(a.to_owned()));
        let cases = [
            (
                "unix:///var/run/weave/weave.sock",
                unix("/var/run/weave/weave.sock"),
            ),
            ("/tmp/x.sock", unix("/tmp/x.sock")),
            ("tcp://127.0.0.1:9999", tcp("127.0.0.1:9999")),
            ("tcp://0.0.0.0:12375/", tcp("0.0.0.0:12375")),
            ("127.0.0.1:2375", tcp("127.0.0.1:2375")),
            ("localhost:2375", tcp("localhost:2375")),
            (":12375", tcp("0.0.0.0:12375")),
            ("tcp://[::1]:2375", tcp("[::1]:2375")),
            (" unix:///a.sock ", unix("/a.sock")),
        ];
        for (input, want) in cases {
            assert_eq!(DockerAddr::parse(input), want, "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        let cases = [
            "udp://1.2.3.4:5",
            "unix://relative.sock",
            "tcp://host",
            "tcp://host:port",
            "tcp://host:99999",
            "::1:2375",
            "relative.sock",
        ];
        for input in cases {
            let err = DockerAddr::parse(input).expect_err(input);
            assert!(err.to_string().contains(input.trim()), "{err}");
        }
    }

    #[test]
    fn hosts_are_read_and_replaced() {
        let tcp = |a: &str| DockerAddr::parse(a).unwrap();
        assert_eq!(tcp("tcp://[::1]:2375").host(), Some("[::1]"));
        assert_eq!(tcp("/a.sock").host(), None);
        for every in [":2375", "tcp://0.0.0.0:2375", "tcp://[::]:2375"] {
            assert!(tcp(every).is_every_interface(), "{every}");
        }
        assert!(!tcp("tcp://10.0.0.1:2375").is_every_interface());
        assert_eq!(
            tcp(":12375").with_host("1.2.3.4").to_string(),
            "tcp://1.2.3.4:12375"
        );
        assert_eq!(tcp("/a.sock").with_host("h"), tcp("/a.sock"));
    }

    #[test]
    fn displays_as_docker_host_url() {
        assert_eq!(
            DockerAddr::parse("/a/b.sock").unwrap().to_string(),
            "unix:///a/b.sock"
        );
        assert_eq!(
            DockerAddr::parse("1.2.3.4:5").unwrap().to_string(),
            "tcp://1.2.3.4:5"
        );
    }

    #[test]
    fn only_unix_sockets_and_loopback_addresses_stay_on_this_host() {
        use Reach::{Network, ThisHost};
        let cases = [
            ("unix:///var/run/weave/weave.sock", ThisHost),
            ("tcp://127.0.0.1:12375", ThisHost),
            ("tcp://127.1.2.3:12375", ThisHost),
            ("tcp://localhost:12375", ThisHost),
            ("tcp://LocalHost.:12375", ThisHost),
            ("tcp://[::1]:12375", ThisHost),
            ("tcp://[::ffff:127.0.0.1]:12375", ThisHost),
            ("tcp://0.0.0.0:12375", Network),
            (":12375", Network),
            ("tcp://[::]:12375", Network),
            ("tcp://10.0.0.5:12375", Network),
            ("tcp://[fe80::1]:12375", Network),
            // A name could resolve anywhere, now or later.
            ("tcp://docker.example:12375", Network),
            ("tcp://localhost.example:12375", Network),
        ];
        for (addr, want) in cases {
            assert_eq!(reach(&DockerAddr::parse(addr).unwrap()), want, "{addr}");
        }
    }
}
