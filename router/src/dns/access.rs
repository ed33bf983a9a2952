//! Who may ask weaveDNS: the host itself and the containers on the weave and Docker networks, so
//! that it is never an open resolver that anyone who reaches the host can use (to amplify
//! attacks, or to look names up through the host's own name servers).
//!
//! The allowed sources are
//! - loopback (`127.0.0.0/8`, `::1`): the host's own processes;
//! - every address assigned to one of the host's interfaces: processes of the host that send from
//!   it, and containers with `--net=host`;
//! - the weave allocation range (`--ipalloc-range`): containers attached to weave, which ask from
//!   their `ethwe` address;
//! - the subnets of the host's Docker bridges (`docker0`, `br-<id>` for user-defined networks,
//!   and whichever bridge holds the gateway address Docker names for its default network, since
//!   `dockerd --bridge` can give that one any name): containers on Docker's networks, which ask
//!   from their Docker address when weaveDNS is reached through their default route.
//!
//! The host's part is re-read now and then, and at once (but at most ten times a second) when a
//! source is refused, since Docker networks come and go after the router starts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The host's networks are read again this often, so that removed Docker networks stop being
/// allowed even when no refused client makes us look.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A refused source makes us re-read the host's networks (a Docker network may have just been
/// created), but no more often than this, so that a flood of refused queries costs ten reads a
/// second (a `getifaddrs` each). Short, because a read made just before a network's bridge got
/// its address would otherwise refuse that network's first containers for this long: a Compose
/// project's first lookup of a service name, refused, fell through to Docker's own resolver
/// and the wrong address (seen in CI with a 1 s window).
const REFRESH_ON_MISS_AFTER: Duration = Duration::from_millis(100);

/// Whether `src` is in one of `list`. An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`, what a
/// dual-stack `[::]` socket reports for an IPv4 client) is its IPv4 address.
pub fn allowed(src: IpAddr, list: &[IpNet]) -> bool {
    let src = match src {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(src, IpAddr::V4),
        v4 => v4,
    };
    list.iter().any(|net| net.contains(&src))
}

/// One address of one of the host's interfaces, with its prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    /// The interface's name (`docker0`, `br-0123456789ab`, `eth0`, ...).
    pub interface: String,
    /// The address and its prefix length, as the interface has it.
    pub net: IpNet,
}

/// Whether the interface `name` is one of Docker's bridges: `docker0` (the default `bridge`
/// network) or `br-` followed by the first 12 hex digits of a user-defined network's id.
pub fn is_docker_bridge(name: &str) -> bool {
    name == "docker0"
        || name
            .strip_prefix("br-")
            .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The networks allowed because of the host's interfaces: each address itself (host route), the
/// whole subnet of loopback addresses and of Docker bridges' addresses. An interface is a Docker
/// bridge by its name ([`is_docker_bridge`]) or because it holds one of `docker_gateways`. Other
/// interfaces' subnets are not allowed: a LAN on `eth0` is exactly who must not use us.
pub fn host_networks(addrs: &[HostAddr], docker_gateways: &[IpAddr]) -> Vec<IpNet> {
    let bridges: Vec<&str> = addrs
        .iter()
        .filter(|addr| {
            is_docker_bridge(&addr.interface) || docker_gateways.contains(&addr.net.addr())
        })
        .map(|addr| addr.interface.as_str())
        .collect();
    let mut nets: Vec<IpNet> = Vec::new();
    let mut add = |net: IpNet| {
        if !nets.contains(&net) {
            nets.push(net);
        }
    };
    for addr in addrs {
        let ip = addr.net.addr();
        add(IpNet::from(ip));
        if ip.is_loopback() || bridges.contains(&addr.interface.as_str()) {
            add(addr.net.trunc());
        }
    }
    nets
}

/// The addresses of the host's interfaces (of the network namespace we run in: the host's, as
/// `weave launch` runs the router with `--net=host`).
///
/// # Errors
/// When the kernel cannot be asked (`getifaddrs(3)`).
pub fn read_host_addrs() -> io::Result<Vec<HostAddr>> {
    let mut found = Vec::new();
    for ifaddr in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let (Some(address), Some(netmask)) = (ifaddr.address, ifaddr.netmask) else {
            continue;
        };
        let net = if let (Some(addr), Some(mask)) =
            (address.as_sockaddr_in(), netmask.as_sockaddr_in())
        {
            let prefix = u32::from(mask.ip()).leading_ones();
            Ipv4Net::new(addr.ip(), u8::try_from(prefix).unwrap_or(32))
                .ok()
                .map(IpNet::V4)
        } else if let (Some(addr), Some(mask)) =
            (address.as_sockaddr_in6(), netmask.as_sockaddr_in6())
        {
            let prefix = u128::from(mask.ip()).leading_ones();
            Ipv6Net::new(addr.ip(), u8::try_from(prefix).unwrap_or(128))
                .ok()
                .map(IpNet::V6)
        } else {
            None
        };
        if let Some(net) = net {
            found.push(HostAddr {
                interface: ifaddr.interface_name,
                net,
            });
        }
    }
    Ok(found)
}

/// How the host's addresses are read; a parameter so that tests can stand in for the host.
pub type HostReader = fn() -> io::Result<Vec<HostAddr>>;

/// The allow-list of one DNS server: fixed networks (the weave range) and the host's, kept
/// current. Cheap to ask from many tasks at once.
#[derive(Debug)]
pub struct AccessList {
    fixed: Vec<IpNet>,
    docker_gateways: Vec<IpAddr>,
    read_host: HostReader,
    current: RwLock<Arc<[IpNet]>>,
    /// When the host was last read; also taken by whoever reads it, so that only one does.
    last_read: Mutex<Instant>,
}

impl AccessList {
    /// `fixed` and the host's current networks (read now, so that the first query is judged
    /// right), with the bridges holding `docker_gateways` taken as Docker's.
    pub fn new(fixed: Vec<IpNet>, docker_gateways: Vec<IpAddr>, read_host: HostReader) -> Self {
        let list = Self {
            current: RwLock::new(fixed.clone().into()),
            fixed,
            docker_gateways,
            read_host,
            last_read: Mutex::new(Instant::now()),
        };
        list.refresh();
        list
    }

    /// The networks allowed right now.
    pub fn networks(&self) -> Arc<[IpNet]> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `src` may ask. A refused source makes the host be read again first (unless it
    /// was read in the last [`REFRESH_ON_MISS_AFTER`]), since a Docker network created since
    /// the last read is the likeliest reason. A read under way is waited for: its result is as
    /// good as ours, and only then can the source be judged.
    pub fn permits(&self, src: IpAddr) -> bool {
        if allowed(src, &self.networks()) {
            return true;
        }
        let mut last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() >= REFRESH_ON_MISS_AFTER {
            self.read(&mut last);
        }
        drop(last);
        allowed(src, &self.networks())
    }

    /// Reads the host's networks again, unless someone is reading them right now.
    pub fn refresh(&self) {
        if let Ok(mut last) = self.last_read.try_lock() {
            self.read(&mut last);
        }
    }

    /// Reads the host's networks, `last` held. On failure the last list stays: refusing
    /// everyone because the kernel could not be asked once would break every container's names.
    fn read(&self, last: &mut Instant) {
        *last = Instant::now();
        match (self.read_host)() {
            Ok(addrs) => {
                let mut nets = self.fixed.clone();
                for net in host_networks(&addrs, &self.docker_gateways) {
                    if !nets.contains(&net) {
                        nets.push(net);
                    }
                }
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = nets.into();
            }
            Err(error) => {
                tracing::warn!(%error, "[dns] cannot read the host's addresses; keeping the last allow-list");
            }
        }
    }

    /// Refreshes every [`REFRESH_EVERY`], forever.
    pub async fn refresh_periodically(&self) {
        let mut ticks = tokio::time::interval(REFRESH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; `new` has just read
        loop {
            ticks.tick().await;
            self.refresh();
        }
    }
}

/// The loopback networks, always the host's own (also when a test stands in for the host).
pub fn loopback() -> [IpNet; 2] {
    [
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn host(interface: &str, net_text: &str) -> HostAddr {
        HostAddr {
            interface: interface.to_owned(),
            net: net(net_text),
        }
    }

    #[test]
    fn sources_are_allowed_only_inside_the_list() {
        let list = [
            net("127.0.0.0/8"),
            net("::1/128"),
            net("10.32.0.0/12"),
            net("172.17.0.0/16"),
            net("192.168.1.5/32"),
            net("fd00::/64"),
        ];
        let cases = [
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("::1", true),
            ("10.32.0.1", true),
            ("10.47.255.254", true),
            ("10.48.0.1", false),
            ("10.31.255.255", false),
            ("172.17.0.2", true),
            ("172.18.0.2", false),
            ("192.168.1.5", true),
            ("192.168.1.6", false),
            ("8.8.8.8", false),
            ("0.0.0.0", false),
            ("fd00::5", true),
            ("fd00:0:0:1::5", false),
            ("2001:db8::1", false),
            // IPv4 clients of a dual-stack socket.
            ("::ffff:10.32.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::ffff:127.0.0.1", true),
        ];
        for (src, want) in cases {
            let src: IpAddr = src.parse().unwrap();
            assert_eq!(allowed(src, &list), want, "{src}");
        }
        assert!(!allowed("127.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn docker_bridges_are_docker0_and_br_with_a_network_id() {
        let cases = [
            ("docker0", true),
            ("br-0123456789ab", true),
            ("br-ABCDEF012345", true),
            ("br-0123456789a", false),
            ("br-0123456789abc", false),
            ("br-0123456789ag", false),
            ("br0", false),
            ("docker1", false),
            ("weave", false),
            ("eth0", false),
            ("lo", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_docker_bridge(name), want, "{name}");
        }
    }

    #[test]
    fn the_host_gives_its_addresses_and_its_bridges_and_loopback_subnets() {
        let addrs = [
            host("lo", "127.0.0.1/8"),
            host("lo", "::1/128"),
            host("eth0", "192.168.1.5/24"),
            host("eth0", "fe80::1/64"),
            host("docker0", "172.17.0.1/16"),
            host("br-0123456789ab", "172.18.0.1/16"),
            host("br-0123456789ab", "fd00:1::1/64"),
            host("weave", "10.32.0.1/12"),
            host("vethwepl123", "169.254.1.1/16"),
            // A second address on the same subnet adds only itself.
            host("docker0", "172.17.0.9/16"),
            // `dockerd --bridge wv26br0`: Docker's by its gateway, not its name.
            host("wv26br0", "172.30.99.1/24"),
            host("virbr0", "192.168.122.1/24"),
        ];
        let want = [
            "127.0.0.1/32",
            "127.0.0.0/8",
            "::1/128",
            "192.168.1.5/32",
            "fe80::1/128",
            "172.17.0.1/32",
            "172.17.0.0/16",
            "172.18.0.1/32",
            "172.18.0.0/16",
            "fd00:1::1/128",
            "fd00:1::/64",
            "10.32.0.1/32",
            "169.254.1.1/32",
            "172.17.0.9/32",
            "172.30.99.1/32",
            "172.30.99.0/24",
            "192.168.122.1/32",
        ]
        .map(net);
        let gateways = ["172.30.99.1".parse().unwrap()];
        assert_eq!(host_networks(&addrs, &gateways), want);
        assert!(host_networks(&[], &gateways).is_empty());
        // Without the gateway, that bridge is just another interface.
        let nets = host_networks(&addrs, &[]);
        assert!(nets.contains(&net("172.30.99.1/32")));
        assert!(!nets.contains(&net("172.30.99.0/24")));
    }

    #[test]
    fn the_list_is_the_fixed_networks_and_the_hosts() {
        let list = AccessList::new(vec![net("10.32.0.0/12")], Vec::new(), || {
            Ok(vec![host("docker0", "172.17.0.1/16")])
        });
        let got: Vec<IpNet> = list.networks().to_vec();
        assert_eq!(
            got,
            [
                net("10.32.0.0/12"),
                net("172.17.0.1/32"),
                net("172.17.0.0/16")
            ]
        );
        assert!(list.permits("172.17.0.3".parse().unwrap()));
        assert!(list.permits("10.40.0.3".parse().unwrap()));
        assert!(!list.permits("192.168.1.9".parse().unwrap()));
        // Loopback is allowed through the host's `lo`, and this host has none.
        assert!(!list.permits("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_host_that_cannot_be_read_keeps_the_fixed_networks() {
        let list = AccessList::new(vec![net("10.32.0.0/12")], Vec::new(), || {
            Err(io::Error::other("no netlink"))
        });
        assert_eq!(list.networks().to_vec(), [net("10.32.0.0/12")]);
    }

    #[test]
    fn this_host_has_loopback() {
        let addrs = read_host_addrs().unwrap();
        let nets = host_networks(&addrs, &[]);
        assert!(allowed("127.0.0.1".parse().unwrap(), &nets), "{addrs:?}");
    }
}
