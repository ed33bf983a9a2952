//! Two "hosts" joined by VXLAN, against the real kernel (run as root).
//!
//! Each host is a network namespace with an underlay veth to the other (198.51.100.0/24,
//! TEST-NET-2: the machine's own eth0 is on TEST-NET-1), the `weave` bridge and the VXLAN port;
//! each has one "container", a namespace of its own with a veth on the bridge and an address in
//! 10.99.0.0/24. The library runs inside the host namespaces; the checks go through `ip` and
//! `bridge`. The machine has no `ping`, so reachability is a UDP echo between the containers,
//! which needs ARP and frames both ways just the same.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::Netns;
use weavenet::{
    FloodChange, Forgotten, NetError, VxlanSpec, delete_vxlan, ensure_bridge, ensure_vxlan,
    flood_entries, forget_vtep, set_flood_list,
};

const BRIDGE: &str = "weave";
const VXLAN: &str = "vxlan-6789";
/// The bridge's MTU, as weave sets it: 1500 on the underlay less VXLAN's 50 bytes and some room.
const MTU: u32 = 1376;
/// Long enough for an ARP resolution after one that failed (a second each), on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long to wait for an exchange that must not happen.
const CUT_OFF: Duration = Duration::from_secs(2);
/// How long a probe waits for its datagram or its echo before it sends another.
const RETRY: Duration = Duration::from_millis(100);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// One host. The container's namespace is declared first so that it goes first on drop,
/// although deleting either namespace of a veth removes both ends.
#[derive(Debug)]
struct Host {
    container: Netns,
    ns: Netns,
    underlay: Ipv4Addr,
    container_ip: Ipv4Addr,
}

impl Host {
    /// The bridge and VXLAN port (created by the library inside the host), and the container.
    fn plumb(ns: Netns, underlay: Ipv4Addr, container: Netns, container_ip: Ipv4Addr) -> Self {
        let host = Host {
            container,
            ns,
            underlay,
            container_ip,
        };
        let created = host.ns.block_on(|| async {
            ensure_bridge(BRIDGE, MTU).await?;
            ensure_vxlan(&VxlanSpec::new(BRIDGE, underlay, MTU)).await
        });
        assert!(created.unwrap(), "the VXLAN link is new");
        host.ns.ip(&[
            "link",
            "add",
            "vc0",
            "mtu",
            &MTU.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &host.container.name,
        ]);
        host.ns.ip(&["link", "set", "vc0", "master", BRIDGE, "up"]);
        host.container
            .ip(&["addr", "add", &format!("{container_ip}/24"), "dev", "eth0"]);
        host.container.ip(&["link", "set", "eth0", "up"]);
        host
    }

    fn set_flood_list(&self, vteps: &[Ipv4Addr]) -> FloodChange {
        self.ns.block_on(|| set_flood_list(VXLAN, vteps)).unwrap()
    }

    fn flood_entries(&self) -> Vec<Ipv4Addr> {
        self.ns.block_on(|| flood_entries(VXLAN)).unwrap()
    }

    fn forget(&self, vtep: Ipv4Addr) -> Forgotten {
        self.ns.block_on(|| forget_vtep(VXLAN, vtep)).unwrap()
    }

    /// `bridge fdb show` of the VXLAN port, one entry a line.
    fn fdb(&self) -> String {
        self.ns.bridge(&["fdb", "show", "dev", VXLAN])
    }

    /// The MAC of the container's `eth0`.
    fn container_mac(&self) -> String {
        let out = self.container.ip(&["-o", "link", "show", "dev", "eth0"]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether");
        words.next().expect("eth0 has a MAC").to_owned()
    }

    /// Whether a datagram from this host's container reaches `to`'s and its echo comes back
    /// within `patience`, sending again every `RETRY` (the first may wait on ARP, or be refused
    /// at once after an ARP resolution that failed while the peer was cut off).
    ///
    /// UDP rather than TCP: when this returns, `to` has sent its last frame, whereas a TCP
    /// teardown goes on afterwards, and its frames would teach a host the MACs a test has just
    /// made it forget.
    fn reaches(&self, to: &Host, patience: Duration) -> bool {
        let server = to
            .container
            .run(|| UdpSocket::bind((to.container_ip, 0)).unwrap());
        let client = self
            .container
            .run(|| UdpSocket::bind((self.container_ip, 0)).unwrap());
        for socket in [&server, &client] {
            socket.set_read_timeout(Some(RETRY)).unwrap();
        }
        let server_addr = server.local_addr().unwrap();
        let deadline = Instant::now() + patience;
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            // A send refused for want of a neighbour is one more try.
            let _ = client.send_to(b"probe", server_addr);
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                server.send_to(&buf[..n], from).unwrap();
            }
            if client.recv(&mut buf).is_ok() {
                return true;
            }
        }
        false
    }

    /// Whether a UDP datagram that fills the container's MTU exactly (IP and UDP headers
    /// included, DF set as Linux does by default) reaches `to`'s container.
    fn full_sized_datagram_crosses(&self, to: &Host) -> bool {
        let receiver = to
            .container
            .run(|| UdpSocket::bind((to.container_ip, 0)).unwrap());
        receiver.set_read_timeout(Some(PATIENCE)).unwrap();
        let addr: SocketAddr = receiver.local_addr().unwrap();
        let payload = vec![7u8; MTU as usize - 28];
        self.container.run(|| {
            let sender = UdpSocket::bind((self.container_ip, 0)).unwrap();
            sender.send_to(&payload, addr).unwrap();
        });
        let mut buf = vec![0u8; 65536];
        matches!(receiver.recv(&mut buf), Ok(n) if n == payload.len())
    }
}

/// Two hosts, each with the other in its flood list.
fn two_hosts() -> (Host, Host) {
    // Made in an order such that a panic halfway still drops every namespace made so far.
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    a.ip(&[
        "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &b.name,
    ]);
    for (ns, addr) in [(&a, "198.51.100.1/24"), (&b, "198.51.100.2/24")] {
        ns.ip(&["addr", "add", addr, "dev", "ul0"]);
        ns.ip(&["link", "set", "ul0", "up"]);
    }
    let (ca, cb) = (Netns::new("ca"), Netns::new("cb"));
    let a = Host::plumb(a, ip("198.51.100.1"), ca, ip("10.99.0.1"));
    let b = Host::plumb(b, ip("198.51.100.2"), cb, ip("10.99.0.2"));
    assert_eq!(a.set_flood_list(&[b.underlay]).added, [b.underlay]);
    assert_eq!(b.set_flood_list(&[a.underlay]).added, [a.underlay]);
    (a, b)
}

/// The lines of an FDB listing for MACs other than the flood entry that point at `vtep` and
/// were learned (static ones say `permanent`).
fn learned_lines(fdb: &str, vtep: Ipv4Addr) -> Vec<String> {
    fdb.lines()
        .filter(|l| !l.starts_with("00:00:00:00:00:00"))
        .filter(|l| l.contains(&format!("dst {vtep} ")) && !l.contains("permanent"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn containers_on_two_hosts_reach_each_other_through_vxlan() {
    let (a, b) = two_hosts();

    let shown = a.ns.ip(&["-d", "-o", "link", "show", "dev", VXLAN]);
    for want in [
        "vxlan id 1 ",
        "local 198.51.100.1 ",
        "dstport 6789 ",
        "mtu 1376 ",
        "master weave ",
        ",UP",
    ] {
        assert!(shown.contains(want), "{want:?} not in {shown}");
    }
    assert!(!shown.contains("nolearning"), "{shown}");
    let fdb = a.fdb();
    assert!(
        fdb.contains("00:00:00:00:00:00 dst 198.51.100.2 self permanent"),
        "{fdb}"
    );

    assert!(a.reaches(&b, PATIENCE), "a -> b");
    assert!(b.reaches(&a, PATIENCE), "b -> a");
    assert!(
        a.full_sized_datagram_crosses(&b),
        "a 1376-byte packet a -> b"
    );
    assert!(
        b.full_sized_datagram_crosses(&a),
        "a 1376-byte packet b -> a"
    );

    let learned = learned_lines(&a.fdb(), b.underlay);
    let mac = b.container_mac();
    assert!(
        learned.iter().any(|l| l.starts_with(&mac)),
        "a learned {mac} behind b: {learned:?}"
    );
}

#[test]
fn the_flood_list_is_made_exactly_what_is_asked_and_removal_cuts_the_peer_off() {
    let (a, b) = two_hosts();
    let (c, d) = (ip("198.51.100.7"), ip("198.51.100.8"));

    let change = a.set_flood_list(&[d, b.underlay, c, d]);
    assert_eq!(
        change,
        FloodChange {
            added: vec![c, d],
            removed: vec![]
        }
    );
    assert!(a.set_flood_list(&[c, b.underlay, d]).is_empty(), "again");
    assert_eq!(a.flood_entries(), [b.underlay, c, d]);
    let fdb = a.fdb();
    assert_eq!(
        fdb.lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00 dst "))
            .count(),
        3,
        "{fdb}"
    );

    let change = a.set_flood_list(&[c]);
    assert_eq!(
        change,
        FloodChange {
            added: vec![],
            removed: vec![b.underlay, d]
        }
    );
    assert_eq!(a.flood_entries(), [c]);
    // Nothing has been learned yet, so without b in the flood list a's ARP request goes nowhere.
    assert!(
        !a.reaches(&b, CUT_OFF),
        "a -> b without b in a's flood list"
    );

    assert_eq!(a.set_flood_list(&[]).removed, [c]);
    assert_eq!(a.flood_entries(), Vec::<Ipv4Addr>::new());
    assert!(!a.fdb().contains("00:00:00:00:00:00"), "{}", a.fdb());

    assert_eq!(a.set_flood_list(&[b.underlay]).added, [b.underlay]);
    assert!(a.reaches(&b, PATIENCE), "a -> b once b is back");
}

#[test]
fn forgetting_a_vtep_flushes_what_was_learned_behind_it() {
    let (a, b) = two_hosts();
    assert!(a.reaches(&b, PATIENCE));
    let mac = b.container_mac();
    let learned = learned_lines(&a.fdb(), b.underlay);
    assert!(
        learned.iter().any(|l| l.starts_with(&mac)),
        "{mac}: {learned:?}"
    );

    // MULTIHOST.md §3.5: without b in the flood list, what a learned still carries unicast to b.
    assert_eq!(a.set_flood_list(&[]).removed, [b.underlay]);
    assert!(a.reaches(&b, PATIENCE), "a -> b on learned entries alone");

    let forgotten = a.forget(b.underlay);
    assert!(!forgotten.flood_entry, "already out of the flood list");
    assert!(forgotten.learned >= 1, "{forgotten:?}");
    let fdb = a.fdb();
    assert_eq!(
        learned_lines(&fdb, b.underlay),
        Vec::<String>::new(),
        "{fdb}"
    );
    assert!(!a.reaches(&b, CUT_OFF), "a -> b once b is forgotten");

    // b still had a in its flood list and learned a's container: both go.
    let learned = learned_lines(&b.fdb(), a.underlay).len();
    assert!(learned >= 1);
    let forgotten = b.forget(a.underlay);
    assert_eq!(
        forgotten,
        Forgotten {
            flood_entry: true,
            learned
        }
    );
    assert_eq!(b.flood_entries(), Vec::<Ipv4Addr>::new());
    assert_eq!(learned_lines(&b.fdb(), a.underlay), Vec::<String>::new());
    assert_eq!(b.forget(a.underlay), Forgotten::default(), "again");
}

#[test]
fn ensure_vxlan_keeps_a_matching_link_and_replaces_one_with_other_settings() {
    let ns = Netns::new("h");
    let spec = VxlanSpec::new(BRIDGE, ip("198.51.100.1"), MTU);

    let err = ns.block_on(|| ensure_vxlan(&spec)).unwrap_err();
    assert!(
        matches!(&err, NetError::NoBridge(b) if b == BRIDGE),
        "{err}"
    );
    ns.block_on(|| ensure_bridge(BRIDGE, MTU)).unwrap();

    assert!(ns.block_on(|| ensure_vxlan(&spec)).unwrap(), "created");
    assert!(!ns.block_on(|| ensure_vxlan(&spec)).unwrap(), "kept");
    let vtep = ip("198.51.100.2");
    ns.block_on(|| set_flood_list(VXLAN, std::slice::from_ref(&vtep)))
        .unwrap();

    // Drift that can be put right in place: the flood list survives it.
    ns.ip(&["link", "set", VXLAN, "down", "nomaster", "mtu", "1400"]);
    assert!(!ns.block_on(|| ensure_vxlan(&spec)).unwrap(), "put right");
    let shown = ns.ip(&["-o", "link", "show", "dev", VXLAN]);
    for want in ["mtu 1376 ", "master weave ", ",UP"] {
        assert!(shown.contains(want), "{want:?} not in {shown}");
    }
    assert_eq!(ns.block_on(|| flood_entries(VXLAN)).unwrap(), [vtep]);

    // A new underlay address needs a new link, which starts with an empty flood list.
    let moved = VxlanSpec {
        local: ip("198.51.100.9"),
        ..spec.clone()
    };
    assert!(ns.block_on(|| ensure_vxlan(&moved)).unwrap(), "replaced");
    let shown = ns.ip(&["-d", "-o", "link", "show", "dev", VXLAN]);
    assert!(shown.contains("local 198.51.100.9 "), "{shown}");
    assert!(shown.contains("master weave "), "{shown}");
    assert_eq!(
        ns.block_on(|| flood_entries(VXLAN)).unwrap(),
        Vec::<Ipv4Addr>::new()
    );

    let other_vni = VxlanSpec {
        vni: 2,
        ..moved.clone()
    };
    assert!(
        ns.block_on(|| ensure_vxlan(&other_vni)).unwrap(),
        "replaced"
    );
    assert!(
        ns.ip(&["-d", "-o", "link", "show", "dev", VXLAN])
            .contains("vxlan id 2 ")
    );

    // Another link on the same VNI and port is refused by the kernel, with a hint.
    let twin = VxlanSpec {
        name: "vxlan-twin".to_owned(),
        ..other_vni.clone()
    };
    let err = ns.block_on(|| ensure_vxlan(&twin)).unwrap_err();
    assert!(err.to_string().contains("another VXLAN link"), "{err}");

    assert!(ns.block_on(|| delete_vxlan(VXLAN)).unwrap());
    assert!(
        !ns.block_on(|| delete_vxlan(VXLAN)).unwrap(),
        "already gone"
    );
    let err = ns.block_on(|| flood_entries(VXLAN)).unwrap_err();
    assert!(matches!(&err, NetError::NoVxlan(n) if n == VXLAN), "{err}");
}

#[test]
fn a_link_of_another_type_is_left_alone() {
    let ns = Netns::new("h");
    ns.block_on(|| ensure_bridge(BRIDGE, MTU)).unwrap();
    ns.ip(&[
        "link", "add", VXLAN, "type", "veth", "peer", "name", "other",
    ]);
    let spec = VxlanSpec::new(BRIDGE, ip("198.51.100.1"), MTU);

    let err = ns.block_on(|| ensure_vxlan(&spec)).unwrap_err();
    assert!(matches!(&err, NetError::NotVxlan(n) if n == VXLAN), "{err}");
    for err in [
        ns.block_on(|| delete_vxlan(VXLAN)).unwrap_err(),
        ns.block_on(|| flood_entries(VXLAN)).unwrap_err(),
        ns.block_on(|| set_flood_list(VXLAN, &[])).unwrap_err(),
        ns.block_on(|| forget_vtep(VXLAN, ip("198.51.100.2")))
            .unwrap_err(),
    ] {
        assert!(matches!(err, NetError::NotVxlan(_)), "{err}");
    }
    assert!(
        ns.ip(&["-d", "-o", "link", "show", "dev", VXLAN])
            .contains("veth"),
        "still the veth"
    );
}
