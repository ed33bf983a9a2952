//! What `weave status` shows of the network of several hosts, in Weave Net's shapes: the
//! router block of `/status`, `/status/peers` and `/status/ipam`. Pure: made from a [`View`].

use std::collections::BTreeMap;

use api::status::line;
use ipnet::Ipv4Net;

use std::net::SocketAddrV4;

use super::View;
use super::probe::{PROBE_TIMEOUT, Probe};

/// `name(nickname)` of `name` in `view`, or the bare name of a peer without a record.
pub fn describe(view: &View, name: &str) -> String {
    match view.peers.get(name) {
        Some(peer) => format!("{name}({})", peer.nickname),
        None => name.to_owned(),
    }
}

/// The lines of `/status`'s router block: who this peer is, the peers, the store.
pub fn router_lines(view: &View, me: &str, endpoints: usize) -> String {
    let others = view.peers.keys().filter(|n| n.as_str() != me).count();
    let reachable = view
        .peers
        .keys()
        .filter(|n| n.as_str() != me && view.alive.contains(*n))
        .count();
    let store = match (&view.store_health, &view.store_error) {
        (Some(health), _) => format!("{health} ({endpoints} endpoint(s) given)"),
        (None, None) => format!("{endpoints} endpoint(s), not asked yet"),
        (None, Some(err)) => format!("{endpoints} endpoint(s), UNREACHABLE: {err}"),
    };
    [
        line("Name", describe(view, me)),
        line(
            "Peers",
            format!("{} (with {reachable} of {others} others alive)", others + 1),
        ),
        line("Store", store),
    ]
    .concat()
}

/// `weave status peers`: this peer, then every other with its VXLAN endpoint and whether its
/// lease is alive.
pub fn peers_text(view: &View, me: &str) -> String {
    let mut out = format!("{}\n", describe(view, me));
    for (name, peer) in view.peers.iter().filter(|(n, _)| n.as_str() != me) {
        let state = if view.alive.contains(name) {
            "established"
        } else {
            "unreachable"
        };
        out.push_str(&format!(
            "   -> {:<21} {:<32} {state}\n",
            format!("{}:vxlan", peer.vtep),
            describe(view, name)
        ));
    }
    out
}

/// `weave status connections`: per other peer, what the probe of its VXLAN endpoint found.
pub fn connections_text(view: &View, found: &[(String, SocketAddrV4, Probe)], mtu: u32) -> String {
    found
        .iter()
        .map(|(name, vtep, probe)| {
            let (state, detail) = match probe {
                Probe::Reachable {
                    rtt,
                    full_size: true,
                } => (
                    "established",
                    format!("vxlan mtu={mtu} rtt={:.1}ms", rtt.as_secs_f64() * 1000.0),
                ),
                Probe::Reachable { .. } => (
                    "established",
                    format!(
                        "vxlan mtu={mtu} TOO LARGE: the path drops full-size frames; lower --mtu"
                    ),
                ),
                Probe::Unreachable => (
                    "failed",
                    format!(
                        "no answer on UDP {} within {:?}",
                        vtep.port(),
                        PROBE_TIMEOUT
                    ),
                ),
            };
            format!(
                "-> {:<21} {state:<11} {} {detail}\n",
                vtep.to_string(),
                describe(view, name)
            )
        })
        .collect()
}

/// `weave status ipam`: per peer, how many addresses its blocks hold and what share of the
/// range that is; this peer's count of addresses in use, and `- unreachable!` for peers whose
/// lease is gone. `active` is this peer's used addresses.
pub fn ipam_text(view: &View, me: &str, universe: Ipv4Net, active: usize) -> String {
    let mut per_peer: BTreeMap<&str, u64> = BTreeMap::new();
    for (block, owner) in &view.blocks {
        *per_peer.entry(owner.as_str()).or_default() += block_size(*block);
    }
    let total = block_size(universe);
    let rows: Vec<(String, String)> = per_peer
        .iter()
        .map(|(&peer, &ips)| {
            #[allow(clippy::cast_precision_loss)] // a share, shown to one decimal
            let share = ips as f64 * 100.0 / total as f64;
            let tail = if peer == me {
                format!(" ({active} active)")
            } else if !view.alive.contains(peer) {
                " - unreachable!".to_owned()
            } else {
                String::new()
            };
            (
                describe(view, peer),
                format!("{ips:>8} IPs ({share:04.1}% of total){tail}"),
            )
        })
        .collect();
    let width = rows.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(p, rest)| format!("{p:<width$} {rest}\n"))
        .collect()
}

fn block_size(block: Ipv4Net) -> u64 {
    1u64 << (32 - u32::from(block.prefix_len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::keys::PeerRecord;

    fn view() -> View {
        let peer = |nick: &str, vtep: &str| PeerRecord {
            nickname: nick.into(),
            vtep: vtep.parse().unwrap(),
            mtu: 1376,
        };
        let net = |t: &str| -> Ipv4Net { t.parse().unwrap() };
        View {
            peers: [
                ("aa".to_owned(), peer("host1", "198.51.100.1")),
                ("bb".to_owned(), peer("host2", "198.51.100.2")),
                ("cc".to_owned(), peer("host3", "198.51.100.3")),
            ]
            .into(),
            alive: ["aa".to_owned(), "bb".to_owned()].into(),
            blocks: [
                (net("10.32.0.0/26"), "aa".to_owned()),
                (net("10.32.0.64/26"), "bb".to_owned()),
                (net("10.32.0.128/26"), "cc".to_owned()),
                (net("10.32.0.192/26"), "aa".to_owned()),
            ]
            .into(),
            store_error: None,
            store_health: None,
        }
    }

    #[test]
    fn peers_show_each_other_peer_and_its_state() {
        assert_eq!(
            peers_text(&view(), "aa"),
            "aa(host1)\n   -> 198.51.100.2:vxlan    bb(host2)                        established\n   -> 198.51.100.3:vxlan    cc(host3)                        unreachable\n"
        );
    }

    #[test]
    fn ipam_shows_blocks_per_peer_and_the_unreachable() {
        assert_eq!(
            ipam_text(&view(), "aa", "10.32.0.0/24".parse().unwrap(), 3),
            "aa(host1)      128 IPs (50.0% of total) (3 active)\nbb(host2)       64 IPs (25.0% of total)\ncc(host3)       64 IPs (25.0% of total) - unreachable!\n"
        );
    }

    #[test]
    fn the_router_block_says_who_and_how_the_store_is() {
        let mut v = view();
        assert_eq!(
            router_lines(&v, "aa", 3),
            "           Name: aa(host1)\n          Peers: 3 (with 1 of 2 others alive)\n          Store: 3 endpoint(s), not asked yet\n"
        );
        v.store_error = Some("no etcd endpoint answered".into());
        assert!(router_lines(&v, "aa", 3).contains("UNREACHABLE: no etcd endpoint answered"));
        v.store_health = Some("3 member(s), leader m1, revision 42, quorum".into());
        assert!(
            router_lines(&v, "aa", 3).contains(
                "Store: 3 member(s), leader m1, revision 42, quorum (3 endpoint(s) given)"
            )
        );
    }

    #[test]
    fn connections_say_what_each_probe_found() {
        let v = view();
        let at = |a: &str| -> SocketAddrV4 { format!("{a}:6790").parse().unwrap() };
        let found = [
            (
                "bb".to_owned(),
                at("198.51.100.2"),
                Probe::Reachable {
                    rtt: std::time::Duration::from_micros(250),
                    full_size: true,
                },
            ),
            ("cc".to_owned(), at("198.51.100.3"), Probe::Unreachable),
            (
                "dd".to_owned(),
                at("198.51.100.4"),
                Probe::Reachable {
                    rtt: std::time::Duration::from_millis(1),
                    full_size: false,
                },
            ),
        ];
        assert_eq!(
            connections_text(&v, &found, 1376),
            "-> 198.51.100.2:6790     established bb(host2) vxlan mtu=1376 rtt=0.2ms\n\
             -> 198.51.100.3:6790     failed      cc(host3) no answer on UDP 6790 within 1s\n\
             -> 198.51.100.4:6790     established dd vxlan mtu=1376 TOO LARGE: the path drops full-size frames; lower --mtu\n"
        );
    }
}
