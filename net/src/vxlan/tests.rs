//! The pure decisions (what to add and remove, which dump entries are a VXLAN link's remotes,
//! when a link must be replaced), and the FDB messages checked against bytes written out by hand
//! from the kernel's `struct ndmsg` and `nlattr`, not against the crate that produces them.

use rtnetlink::packet_core::{Emitable, Parseable};

use super::*;

const INDEX: u32 = 9;
const AF_BRIDGE: u8 = 7;
const NTF_SELF: u8 = 0x02;
const NTF_MASTER: u8 = 0x04;
const NUD_REACHABLE: u16 = 0x02;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x63, 0x00, 0x02];

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    list.iter().map(|s| ip(s)).collect()
}

fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
    bytes.extend(kind.to_ne_bytes());
    bytes.extend(value);
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes
}

/// An `ndmsg` and its attributes as the kernel lays them out.
fn ndmsg(family: u8, index: u32, state: u16, flags: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = vec![family, 0, 0, 0];
    bytes.extend(index.to_ne_bytes());
    bytes.extend(state.to_ne_bytes());
    bytes.push(flags);
    bytes.push(0); // ndm_type
    for attribute in attributes {
        bytes.extend(attribute);
    }
    bytes
}

fn parse(bytes: &[u8]) -> NeighbourMessage {
    NeighbourMessage::parse(bytes).unwrap()
}

#[test]
fn flood_diff_adds_the_missing_and_removes_the_extra() {
    for (present, wanted, added, removed) in [
        (vec![], vec![], vec![], vec![]),
        (vec![], vec!["198.51.100.2"], vec!["198.51.100.2"], vec![]),
        (vec!["198.51.100.2"], vec!["198.51.100.2"], vec![], vec![]),
        (vec!["198.51.100.2"], vec![], vec![], vec!["198.51.100.2"]),
        (
            vec!["198.51.100.2", "198.51.100.3"],
            vec!["198.51.100.3", "198.51.100.4"],
            vec!["198.51.100.4"],
            vec!["198.51.100.2"],
        ),
        // Order and duplicates on either side make no difference; the result is ascending.
        (
            vec!["198.51.100.9", "198.51.100.2", "198.51.100.9"],
            vec![
                "198.51.100.5",
                "198.51.100.3",
                "198.51.100.5",
                "198.51.100.9",
            ],
            vec!["198.51.100.3", "198.51.100.5"],
            vec!["198.51.100.2"],
        ),
    ] {
        let change = flood_diff(&ips(&present), &ips(&wanted));
        assert_eq!(
            change,
            FloodChange {
                added: ips(&added),
                removed: ips(&removed)
            },
            "{present:?} -> {wanted:?}"
        );
    }
}

#[test]
fn applying_the_diff_reaches_the_wanted_set_and_a_second_diff_is_empty() {
    let present = ips(&["198.51.100.2", "198.51.100.3", "198.51.100.7"]);
    let wanted = ips(&["198.51.100.3", "198.51.100.4", "198.51.100.4"]);
    let change = flood_diff(&present, &wanted);
    let after: BTreeSet<Ipv4Addr> = present
        .iter()
        .filter(|vtep| !change.removed.contains(vtep))
        .chain(&change.added)
        .copied()
        .collect();
    assert_eq!(after, wanted.iter().copied().collect());
    let after: Vec<Ipv4Addr> = after.into_iter().collect();
    assert!(flood_diff(&after, &wanted).is_empty());
}

#[test]
fn remotes_in_a_bridge_fdb_dump() {
    let dst = nla(NDA_DST, &[198, 51, 100, 2]);
    let lladdr = nla(NDA_LLADDR, &MAC);
    let zeros = nla(NDA_LLADDR, &FLOOD_MAC);
    let remote = |mac, dst: &str, learned| {
        Some(Remote {
            mac,
            dst: ip(dst),
            learned,
        })
    };
    for (what, bytes, want) in [
        (
            "a flood entry as `bridge fdb append` makes it",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_PERMANENT | NUD_NOARP,
                NTF_SELF,
                &[zeros.clone(), dst.clone()],
            ),
            remote(FLOOD_MAC, "198.51.100.2", false),
        ),
        (
            "a learned MAC",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_REACHABLE,
                NTF_SELF,
                &[lladdr.clone(), dst.clone()],
            ),
            remote(MAC, "198.51.100.2", true),
        ),
        (
            "a static MAC",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_PERMANENT,
                NTF_SELF,
                &[lladdr.clone(), dst.clone()],
            ),
            remote(MAC, "198.51.100.2", false),
        ),
        (
            "another link's entry",
            ndmsg(
                AF_BRIDGE,
                INDEX + 1,
                NUD_REACHABLE,
                NTF_SELF,
                &[lladdr.clone(), dst.clone()],
            ),
            None,
        ),
        (
            "the bridge's entry about its port",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_REACHABLE,
                NTF_MASTER,
                std::slice::from_ref(&lladdr),
            ),
            None,
        ),
        (
            "the link's own multicast address",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_PERMANENT,
                NTF_SELF,
                &[nla(NDA_LLADDR, &[0x33, 0x33, 0, 0, 0, 1])],
            ),
            None,
        ),
        (
            "an IPv6 VTEP",
            ndmsg(
                AF_BRIDGE,
                INDEX,
                NUD_REACHABLE,
                NTF_SELF,
                &[
                    lladdr.clone(),
                    nla(
                        NDA_DST,
                        &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    ),
                ],
            ),
            None,
        ),
        (
            "an ARP entry (AF_INET)",
            ndmsg(2, INDEX, NUD_REACHABLE, 0, &[dst.clone(), lladdr.clone()]),
            None,
        ),
    ] {
        assert_eq!(remote_of(&parse(&bytes), INDEX), want, "{what}");
    }
}

#[test]
fn flood_list_and_learned_entries_of_a_dump() {
    let entry = |mac, dst: &str, learned| Remote {
        mac,
        dst: ip(dst),
        learned,
    };
    let other = [2, 0, 0, 0, 0, 7];
    let entries = [
        entry(FLOOD_MAC, "198.51.100.3", false),
        entry(MAC, "198.51.100.2", true),
        entry(FLOOD_MAC, "198.51.100.2", false),
        entry(other, "198.51.100.2", false),
        entry(other, "198.51.100.3", true),
    ];
    assert_eq!(flood_list(&entries), ips(&["198.51.100.2", "198.51.100.3"]));
    let learned: Vec<&Remote> = learned_behind(&entries, ip("198.51.100.2")).collect();
    assert_eq!(
        learned,
        [&entries[1]],
        "static entries and other VTEPs stay"
    );
    assert_eq!(learned_behind(&entries, ip("198.51.100.9")).count(), 0);
}

#[test]
fn fdb_request_is_a_permanent_self_entry_of_the_vxlan_link() {
    let msg = fdb_message(INDEX, FLOOD_MAC, ip("198.51.100.2"));
    let mut bytes = vec![0; msg.buffer_len()];
    msg.emit(&mut bytes);
    assert_eq!(
        bytes,
        ndmsg(
            AF_BRIDGE,
            INDEX,
            NUD_PERMANENT,
            NTF_SELF,
            &[
                nla(NDA_LLADDR, &FLOOD_MAC),
                nla(NDA_DST, &[198, 51, 100, 2])
            ],
        )
    );
}

#[test]
fn a_link_is_replaced_only_for_what_cannot_change_in_place() {
    let spec = VxlanSpec::new("weave", ip("198.51.100.1"), 1376);
    assert_eq!(spec.name, "vxlan-6789");
    let same = Tunnel {
        vni: Some(1),
        port: Some(6789),
        local: Some(ip("198.51.100.1")),
        learning: Some(true),
    };
    for (what, tunnel, want) in [
        ("the same", same.clone(), vec![]),
        (
            "another VNI",
            Tunnel {
                vni: Some(2),
                ..same.clone()
            },
            vec!["vni"],
        ),
        (
            "another port",
            Tunnel {
                port: Some(4789),
                ..same.clone()
            },
            vec!["port"],
        ),
        (
            "another address",
            Tunnel {
                local: Some(ip("198.51.100.9")),
                ..same.clone()
            },
            vec!["local"],
        ),
        (
            "no local address",
            Tunnel {
                local: None,
                ..same.clone()
            },
            vec!["local"],
        ),
        (
            "learning off",
            Tunnel {
                learning: Some(false),
                ..same.clone()
            },
            vec!["learning"],
        ),
        (
            "not a VXLAN link",
            Tunnel::default(),
            vec!["vni", "port", "local", "learning"],
        ),
    ] {
        assert_eq!(tunnel.differences(&spec), want, "{what}");
    }
}

#[test]
fn tunnel_settings_are_read_from_a_link_message() {
    let msg = LinkVxlan::new("vxlan-6789", 1)
        .port(6789)
        .local(ip("198.51.100.1"))
        .learning(true)
        .mtu(1376)
        .build();
    assert_eq!(
        Tunnel::of(&msg),
        Tunnel {
            vni: Some(1),
            port: Some(6789),
            local: Some(ip("198.51.100.1")),
            learning: Some(true),
        }
    );
    assert_eq!(
        Tunnel::of(&LinkUnspec::new_with_name("eth0").build()),
        Tunnel::default()
    );
}

#[test]
fn vxlan_names_fit_the_kernel() {
    assert_eq!(vxlan_name(6789), "vxlan-6789");
    assert!(vxlan_name(u16::MAX).len() <= 15);
}
