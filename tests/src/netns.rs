//! A container's network as seen from the host: its process, its `ethwe` (link, addresses, MTU,
//! routes) and the host end of its veth, read with `nsenter` and the host's `ip`.
//!
//! Reading from the host, not with `docker exec`, works for any image and does not itself wait
//! for the network as an exec through the proxy would.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::Docker;

/// A container's `ethwe` interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ethwe {
    /// IPv4 addresses as `a.b.c.d/len`, in the order the kernel lists them.
    pub addrs: Vec<String>,
    /// The link's MTU.
    pub mtu: u32,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Administratively up (`UP` among its flags).
    pub up: bool,
    /// `224.0.0.0/4 dev ethwe` is in the main routing table (the attach's last step).
    pub multicast_route: bool,
}

/// `docker inspect` straight from the daemon; `None` when there is no such container.
pub fn inspect(container: &str) -> Option<Value> {
    let out = Docker::daemon().run(&["inspect", "--type", "container", container]);
    if out.code != 0 {
        return None;
    }
    let mut list: Value = serde_json::from_str(&out.stdout).ok()?;
    Some(list[0].take()).filter(|c| !c.is_null())
}

/// The full id of a container.
pub fn full_id(container: &str) -> String {
    inspect(container)
        .and_then(|c| c["Id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no container {container}"))
}

/// The host pid of a running container's first process, or `None` if it is not running.
pub fn running_pid(container: &str) -> Option<u32> {
    let state = inspect(container)?["State"].take();
    let pid = state["Pid"].as_u64().and_then(|p| u32::try_from(p).ok())?;
    (state["Running"] == true && pid > 0).then_some(pid)
}

/// Whether the container is running.
pub fn is_running(container: &str) -> bool {
    inspect(container).is_some_and(|c| c["State"]["Running"] == true)
}

/// Runs `args` inside the network namespace of process `pid`; `None` if it fails.
fn in_netns(pid: u32, args: &[&str]) -> Option<Value> {
    let pid = pid.to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("nsenter runs");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The `ethwe` of the network namespace of process `pid`, if it has one.
pub fn ethwe_of_pid(pid: u32) -> Option<Ethwe> {
    let mut links = in_netns(pid, &["ip", "-j", "link", "show", "dev", "ethwe"])?;
    let link = links[0].take();
    if link.is_null() {
        return None;
    }
    let mtu = link["mtu"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0);
    let mac = link["address"].as_str().unwrap_or_default().to_owned();
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|flag| flag == "UP"));
    let addrs = in_netns(pid, &["ip", "-j", "-4", "addr", "show", "dev", "ethwe"])
        // `[]` when ethwe went away since the link was read (a restarting container).
        .and_then(|mut a| {
            a.get_mut(0)
                .and_then(|first| first["addr_info"].as_array_mut().map(std::mem::take))
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|info| {
            Some(format!(
                "{}/{}",
                info["local"].as_str()?,
                info["prefixlen"].as_u64()?
            ))
        })
        .collect();
    let multicast_route = in_netns(pid, &["ip", "-j", "-4", "route", "show", "dev", "ethwe"])
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .any(|route| route["dst"] == "224.0.0.0/4");
    Some(Ethwe {
        addrs,
        mtu,
        mac,
        up,
        multicast_route,
    })
}

/// The `ethwe` of a running container, if it is running and has one.
pub fn ethwe(container: &str) -> Option<Ethwe> {
    ethwe_of_pid(running_pid(container)?)
}

/// The name of the host end of the veth of the container whose first process is `pid`:
/// `vethwepl<pid>`, cut to the kernel's 15 bytes.
pub fn host_veth(pid: u32) -> String {
    let mut name = format!("vethwepl{pid}");
    name.truncate(15);
    name
}

/// A host link's details (`ip -j -d link show dev NAME`), or `None` if there is no such link.
pub fn host_link(name: &str) -> Option<Value> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", name])
        .stderr(Stdio::null())
        .output()
        .expect("ip runs");
    if !out.status.success() {
        return None;
    }
    let mut links: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(links[0].take()).filter(|l| !l.is_null())
}

/// Whether an IPv4 address (`a.b.c.d` or `a.b.c.d/len`) lies in `cidr`.
pub fn in_subnet(addr: &str, cidr: &str) -> bool {
    let ip = |s: &str| -> u32 {
        let octets: Vec<u8> = s
            .split('.')
            .map(|o| o.parse().unwrap_or_else(|_| panic!("not IPv4: {s}")))
            .collect();
        u32::from_be_bytes(
            octets
                .try_into()
                .unwrap_or_else(|_| panic!("not IPv4: {s}")),
        )
    };
    let (net, len) = cidr
        .split_once('/')
        .unwrap_or_else(|| panic!("not a CIDR: {cidr}"));
    let len: u32 = len.parse().expect("a prefix length");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let addr = addr.split('/').next().unwrap_or(addr);
    ip(addr) & mask == ip(net) & mask
}

/// How often the kernel has found its ARP table full: `table_fulls` of
/// `/proc/net/stat/arp_cache`, summed over the CPUs (0 when the file cannot be read).
///
/// The table is one for the whole machine: the entries of every network namespace count
/// against `net.ipv4.neigh.default.gc_thresh3` (1024 by default), and entries used in the last
/// five seconds are never forced out. While other tests fill it (a mesh of dozens of
/// namespaces, each with a neighbour for every other one), a packet to a neighbour not yet
/// resolved is dropped before it leaves its sender (`neighbor table overflow!` in the kernel
/// log, drop reason `NEIGH_CREATEFAIL`).
pub fn arp_table_fulls() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/net/stat/arp_cache") else {
        return 0;
    };
    // A header line, then one line per CPU; `table_fulls` is the 13th column, in hex.
    stat.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(12))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .sum()
}

/// How long [`assert_pings`] goes on trying while the machine's ARP table overflows.
const OVERFLOW_PATIENCE: Duration = Duration::from_secs(60);

/// Asserts that one ping from inside the running container `from` to `to` (an address or a
/// name) is answered within 5 s (busybox's `ping`, with Docker's default `NET_RAW`).
///
/// A ping that fails while the machine's ARP table overflowed ([`arp_table_fulls`] grew) is
/// tried again, for up to a minute: its packet was dropped by a table every test on the machine
/// shares, not by what is under test. A ping that fails without an overflow fails the test at
/// once, and one still failing after a minute of overflows fails it saying so.
#[track_caller]
pub fn assert_pings(docker: &Docker, from: &str, to: &str) {
    let deadline = Instant::now() + OVERFLOW_PATIENCE;
    loop {
        let before = arp_table_fulls();
        let out = docker.run(&["exec", from, "ping", "-c", "1", "-W", "5", to]);
        if out.code == 0 {
            return;
        }
        let overflowed = arp_table_fulls() > before;
        assert!(overflowed, "{from} does not reach {to}: {out:#?}");
        assert!(
            Instant::now() < deadline,
            "{from} does not reach {to}, and the machine's ARP table (shared by every network \
             namespace) has been overflowing for {OVERFLOW_PATIENCE:?}: another test holds over \
             gc_thresh3 neighbours: {out:#?}"
        );
        eprintln!("{from} -> {to}: no answer while the ARP table overflowed; trying again");
    }
}
