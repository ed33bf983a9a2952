//! The store's keyspace under `/weave/v1/` and the JSON records in it (MULTIHOST.md §4.1): how a
//! peer, a block, a liveness mark and a weaveDNS record are named and read back. Pure.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Every key weave writes starts with this; a store shared with other users is left alone.
pub const ROOT: &str = "/weave/v1/";

/// The network's settings, written by the first peer; a peer with other settings refuses to join.
pub fn config() -> String {
    format!("{ROOT}config")
}

/// Where every peer's record lives.
pub fn peers() -> String {
    format!("{ROOT}peers/")
}

/// One peer's record: persistent, removed only by `rmpeer` or `reset`.
pub fn peer(name: &str) -> String {
    format!("{}{name}", peers())
}

/// Where liveness marks live.
pub fn alive_prefix() -> String {
    format!("{ROOT}alive/")
}

/// One peer's liveness mark, bound to its lease.
pub fn alive(name: &str) -> String {
    format!("{}{name}", alive_prefix())
}

/// Where block owners live.
pub fn blocks() -> String {
    format!("{ROOT}ipam/blocks/")
}

/// One block's owner. The prefix length is written after a `-`, keeping the key one segment.
pub fn block(block: Ipv4Net) -> String {
    format!("{}{}-{}", blocks(), block.network(), block.prefix_len())
}

/// Where weaveDNS records live.
pub fn dns() -> String {
    format!("{ROOT}dns/")
}

/// Where one peer's weaveDNS records live: what `rmpeer` deletes and a peer re-asserts.
pub fn dns_of(peer: &str) -> String {
    format!("{}{peer}/", dns())
}

/// One weaveDNS record. Names, ids and addresses hold no `/`, so the key splits back.
pub fn dns_record(peer: &str, record: &DnsRecord) -> String {
    format!(
        "{}{}/{}/{}",
        dns_of(peer),
        record.fqdn,
        record.addr,
        record.container
    )
}

/// The name after `prefix` in `key`, when `key` is under it and the rest is one segment.
pub fn name_under<'k>(key: &'k [u8], prefix: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The block a block key names.
pub fn parse_block(key: &[u8]) -> Option<Ipv4Net> {
    let (addr, len) = name_under(key, &blocks())?.split_once('-')?;
    let block = Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
    (block == block.trunc()).then_some(block)
}

/// The peer and record a weaveDNS key names.
pub fn parse_dns(key: &[u8]) -> Option<(String, DnsRecord)> {
    let rest = std::str::from_utf8(key.strip_prefix(dns().as_bytes())?).ok()?;
    let mut parts = rest.split('/');
    let (peer, fqdn, addr, container) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [peer, fqdn, container].iter().any(|p| p.is_empty()) {
        return None;
    }
    Some((
        peer.to_owned(),
        DnsRecord {
            container: container.to_owned(),
            addr: addr.parse().ok()?,
            fqdn: fqdn.to_owned(),
        },
    ))
}

/// The network's settings (`config`). Peers must agree on all of them: a different range or
/// block length would hand out overlapping addresses, another VNI or port would not connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub range: Ipv4Net,
    pub block_len: u8,
    pub vni: u32,
    pub port: u16,
}

/// A peer's record (`peers/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The host's name for people (`weave status peers` shows it beside the peer name).
    pub nickname: String,
    /// The underlay address other peers send its VXLAN traffic to.
    pub vtep: Ipv4Addr,
    pub mtu: u32,
}

/// A block's owner (`ipam/blocks/<block>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockOwner {
    pub peer: String,
}

/// A liveness mark (`alive/<name>`): since when, in seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    pub since: u64,
}

/// One weaveDNS record, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsRecord {
    pub container: String,
    pub addr: Ipv4Addr,
    /// Lowercase, with its trailing dot.
    pub fqdn: String,
}

/// Reads a record's JSON; `None` for what another version or a person wrote badly.
pub fn read<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Option<T> {
    serde_json::from_slice(value).ok()
}

/// A record's JSON.
pub fn write<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_else(|_| unreachable!("plain records always serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_into_what_they_name() {
        let b: Ipv4Net = "10.32.1.64/26".parse().unwrap();
        assert_eq!(block(b), "/weave/v1/ipam/blocks/10.32.1.64-26");
        assert_eq!(parse_block(block(b).as_bytes()), Some(b));
        let bad: &[&str] = &[
            "/weave/v1/ipam/blocks/10.32.1.65-26",
            "/weave/v1/ipam/blocks/10.32.1.64",
            "/weave/v1/ipam/blocks/10.32.1.64-33",
            "/weave/v1/ipam/blocks/x/10.32.1.64-26",
            "/other/ipam/blocks/10.32.1.64-26",
        ];
        for key in bad {
            assert_eq!(parse_block(key.as_bytes()), None, "{key}");
        }

        let record = DnsRecord {
            container: "abc123".into(),
            addr: "10.32.0.7".parse().unwrap(),
            fqdn: "web.weave.local.".into(),
        };
        let key = dns_record("aa:bb:cc:dd:ee:ff", &record);
        assert_eq!(
            key,
            "/weave/v1/dns/aa:bb:cc:dd:ee:ff/web.weave.local./10.32.0.7/abc123"
        );
        assert_eq!(
            parse_dns(key.as_bytes()),
            Some(("aa:bb:cc:dd:ee:ff".to_owned(), record))
        );
        for key in [
            "/weave/v1/dns/p/web.weave.local./10.32.0.7",
            "/weave/v1/dns/p/web.weave.local./10.32.0.x/c",
            "/weave/v1/dns/p/web.weave.local./10.32.0.7/c/extra",
            "/weave/v1/dns//web.weave.local./10.32.0.7/c",
        ] {
            assert_eq!(parse_dns(key.as_bytes()), None, "{key}");
        }

        assert_eq!(name_under(peer("p1").as_bytes(), &peers()), Some("p1"));
        assert_eq!(name_under(b"/weave/v1/peers/", &peers()), None);
        assert_eq!(name_under(b"/weave/v1/peers/a/b", &peers()), None);
    }

    #[test]
    fn records_read_back_and_garbage_reads_as_nothing() {
        let p = PeerRecord {
            nickname: "host1".into(),
            vtep: "198.51.100.1".parse().unwrap(),
            mtu: 1376,
        };
        assert_eq!(read::<PeerRecord>(&write(&p)), Some(p));
        assert_eq!(read::<PeerRecord>(b"{not json"), None);
        assert_eq!(
            read::<BlockOwner>(br#"{"peer":"x"}"#),
            Some(BlockOwner { peer: "x".into() })
        );
    }
}
