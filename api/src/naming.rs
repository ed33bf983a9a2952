//! A container's names as weave writes them: what they are in Docker's inspect answer, its fully
//! qualified name from Docker's hostname and domain, and the `/etc/hosts` weave gives a container
//! on the weave network. Pure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use bollard::models::{ContainerConfig, ContainerInspectResponse};

/// A container's names: what weaveDNS and its `/etc/hosts` are told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// `Config.Hostname`, dotted with `Config.Domainname` when that is set.
    pub fqdn: String,
    /// `HostConfig.ExtraHosts` (`--add-host`), as Docker keeps them.
    pub extra_hosts: Vec<String>,
    /// `HostsPath`: where Docker keeps the file it mounts at `/etc/hosts`.
    pub hosts_path: Option<PathBuf>,
    /// Further fully qualified names weaveDNS is told for the same addresses (a Compose
    /// service's name); not read from Docker's answer, so empty from [`Names::from_inspect`].
    pub aliases: Vec<String>,
}

impl Names {
    /// Reads them from Docker's inspect answer; missing fields are empty.
    pub fn from_inspect(container: &ContainerInspectResponse) -> Self {
        let config = container.config.as_ref();
        let text = |field: fn(&ContainerConfig) -> Option<&String>| {
            config.and_then(field).map_or("", String::as_str)
        };
        Self {
            fqdn: fqdn(
                text(|c| c.hostname.as_ref()),
                text(|c| c.domainname.as_ref()),
            ),
            extra_hosts: container
                .host_config
                .as_ref()
                .and_then(|h| h.extra_hosts.clone())
                .unwrap_or_default(),
            hosts_path: container
                .hosts_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            aliases: Vec::new(),
        }
    }
}

/// A container's fully qualified name from its inspect's `Config.Hostname` and
/// `Config.Domainname`: what weaveDNS and `/etc/hosts` are told. Empty when it has no hostname.
pub fn fqdn(hostname: &str, domainname: &str) -> String {
    if hostname.is_empty() || domainname.is_empty() {
        hostname.to_owned()
    } else {
        format!("{hostname}.{domainname}")
    }
}

/// The localhost block Docker and Weave Net write.
const LOCALHOST: [(&str, &str); 6] = [
    ("127.0.0.1", "localhost"),
    ("::1", "ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// The `/etc/hosts` of a container on the weave network: its names on each weave address (in
/// `WEAVE_CIDR` order), then its `--add-host` entries, then the localhost block.
///
/// Docker's own address for the container is left out, so the hostname resolves to the weave
/// address (`hostname -i`). The layout is Weave Net's, so anything that reads it still finds
/// its markers.
///
/// The hostname, domain and `--add-host` names are the user's. One that is not a single
/// hosts(5) name (see [`is_hosts_name`]) is dropped with its records rather than written, so
/// that a line break or blank in it cannot add records of the user's choosing.
pub fn hosts_file(fqdn: &str, addrs: &[Ipv4Addr], extra_hosts: &[String]) -> String {
    let mut file = String::from("# created by Weave - BEGIN\n# container hostname\n");
    let names = host_names(fqdn);
    if !names.is_empty() {
        for addr in addrs {
            file.push_str(&hosts_line(&addr.to_string(), &names));
        }
    }
    file.push_str("\n# static names added with --add-host\n");
    for (name, ip) in extra_hosts.iter().filter_map(|entry| extra_host(entry)) {
        file.push_str(&hosts_line(&ip.to_string(), name));
    }
    file.push_str("\n# default localhost entries\n");
    for (ip, names) in LOCALHOST {
        file.push_str(&hosts_line(ip, names));
    }
    file.push_str("# created by Weave - END\n");
    file
}

fn hosts_line(ip: &str, names: &str) -> String {
    format!("{ip:<15} {names}\n")
}

/// The names a container is known by locally: its FQDN and the short name before the first
/// dot, or the bare name when there is no domain. Empty for an FQDN that is not one hosts name.
fn host_names(fqdn: &str) -> String {
    if !is_hosts_name(fqdn) {
        return String::new();
    }
    match fqdn.split_once('.') {
        None => fqdn.to_owned(),
        Some((name, "")) => name.to_owned(),
        Some((name, _)) => format!("{} {name}", fqdn.strip_suffix('.').unwrap_or(fqdn)),
    }
}

/// One `HostConfig.ExtraHosts` entry as Docker reads it: `name=ip`, or else `name:ip` split at
/// the first `:` (so `name:::1` is `::1`), with the address optionally in brackets.
///
/// Entries whose name is not one hosts name ([`is_hosts_name`]) are left out. So are entries
/// whose address is not an IP address. The one Docker accepts is
/// `host-gateway`, which the daemon replaces with its own gateway address when it writes its
/// file. The proxy does not know that address, and a line with a word where the address
/// belongs would make resolvers skip or misread it.
fn extra_host(entry: &str) -> Option<(&str, IpAddr)> {
    let (name, ip) = entry
        .split_once('=')
        .filter(|(name, _)| !name.contains(':'))
        .or_else(|| entry.split_once(':'))?;
    let ip = ip.trim();
    let ip = ip
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .unwrap_or(ip);
    let ip = ip.parse().ok()?;
    (!name.is_empty() && is_hosts_name(name)).then_some((name, ip))
}

/// Whether `name` stays one name in `/etc/hosts`: hosts(5) ends a record at a line break,
/// splits names at blanks and starts a comment at `#`, and C readers stop at a NUL. So no
/// whitespace (Unicode's line separators included), no control character and no `#`.
pub fn is_hosts_name(name: &str) -> bool {
    !name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdns_join_hostname_and_domain() {
        let cases = [
            ("c1", "weave.local", "c1.weave.local"),
            ("seetwo.weave.local", "", "seetwo.weave.local"),
            ("c1", "", "c1"),
            ("", "weave.local", ""),
            ("", "", ""),
        ];
        for (hostname, domainname, want) in cases {
            assert_eq!(
                fqdn(hostname, domainname),
                want,
                "{hostname:?} {domainname:?}"
            );
        }
    }

    #[test]
    fn host_names_list_the_fqdn_and_the_short_name() {
        let cases = [
            ("c1.weave.local", "c1.weave.local c1"),
            ("c1.weave.local.", "c1.weave.local c1"),
            ("c1.", "c1"),
            ("c1", "c1"),
            ("", ""),
            // Not one name: no records rather than a second line or name of the user's.
            ("c1\n6.6.6.6 evil", ""),
            ("c1.weave.local\r", ""),
            ("c1 evil", ""),
            ("c1\0", ""),
            ("c1#x", ""),
        ];
        for (fqdn, want) in cases {
            assert_eq!(host_names(fqdn), want, "{fqdn:?}");
        }
    }

    #[test]
    fn extra_hosts_read_as_docker_reads_them() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (
                "static.name:10.9.9.9",
                Some(("static.name", ip("10.9.9.9"))),
            ),
            (
                "static.name=10.9.9.9",
                Some(("static.name", ip("10.9.9.9"))),
            ),
            ("v6:::1", Some(("v6", ip("::1")))),
            ("v6:2001:db8::33", Some(("v6", ip("2001:db8::33")))),
            ("v6=::1", Some(("v6", ip("::1")))),
            ("v6=[::1]", Some(("v6", ip("::1")))),
            ("v6:[2001:db8::33]", Some(("v6", ip("2001:db8::33")))),
            ("v4=[10.0.0.1]", Some(("v4", ip("10.0.0.1")))),
            ("gw:host-gateway", None),
            ("gw=host-gateway", None),
            ("noseparator", None),
            (":10.0.0.1", None),
            ("=10.0.0.1", None),
            ("name:", None),
            ("name:10.0.0.999", None),
            ("v6=[::1", None),
            ("a\n6.6.6.6 evil:10.0.0.1", None),
            ("a\r=10.0.0.1", None),
            ("a b=10.0.0.1", None),
            ("a\tb:10.0.0.1", None),
            ("a\0:10.0.0.1", None),
            ("a#b:10.0.0.1", None),
            ("a\u{2028}b:10.0.0.1", None),
        ];
        for (entry, want) in cases {
            assert_eq!(extra_host(entry), want, "{entry:?}");
        }
    }

    #[test]
    fn hosts_files_have_weave_net_layout() {
        let addrs = ["10.2.1.1".parse().unwrap(), "10.32.0.7".parse().unwrap()];
        let extra = [
            "static.name:10.9.9.9".to_owned(),
            "gw:host-gateway".to_owned(),
            "broken".to_owned(),
            "v6:::1".to_owned(),
            "eq=192.168.1.1".to_owned(),
            "evil\n6.6.6.6 injected:10.9.9.8".to_owned(),
        ];
        let want = "\
# created by Weave - BEGIN
# container hostname
10.2.1.1        c1.weave.local c1
10.32.0.7       c1.weave.local c1

# static names added with --add-host
10.9.9.9        static.name
::1             v6
192.168.1.1     eq

# default localhost entries
127.0.0.1       localhost
::1             ip6-localhost ip6-loopback
fe00::0         ip6-localnet
ff00::0         ip6-mcastprefix
ff02::1         ip6-allnodes
ff02::2         ip6-allrouters
# created by Weave - END
";
        assert_eq!(hosts_file("c1.weave.local", &addrs, &extra), want);
    }

    #[test]
    fn hosts_files_without_a_domain_addresses_or_extra_hosts() {
        let addrs = ["10.2.1.1".parse().unwrap()];
        let file = hosts_file("3f4e5d6c7b8a", &addrs, &[]);
        assert!(
            file.contains("\n10.2.1.1        3f4e5d6c7b8a\n\n# static"),
            "{file}"
        );
        let file = hosts_file("c1", &[], &[]);
        assert!(
            file.contains(
                "# container hostname\n\n# static names added with --add-host\n\n# default"
            ),
            "{file}"
        );
        let file = hosts_file("", &addrs, &[]);
        assert!(!file.contains("10.2.1.1"), "{file}");
    }
}
