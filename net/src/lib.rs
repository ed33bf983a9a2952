//! Host plumbing shared by the router, the proxy and the `weave` command: the `weave` bridge, the
//! container's `ethwe` veth, its addresses and routes, the host's routing table, the one file
//! weave writes inside a container, and the attach sequence that puts these together with the
//! router's addresses and names.
//!
//! Every function is async and speaks netlink directly (rtnetlink); nothing shells out. Work inside a
//! container's network namespace runs on a dedicated thread that has `setns`-ed into
//! `/proc/<pid>/ns/net`, because a netlink socket belongs to the namespace it was created in and
//! `setns` only moves the calling thread.
//!
//! Host-side functions open their own netlink connection and spawn it on the caller's tokio runtime,
//! so they must be called from inside one (any flavour) with its IO and time drivers enabled, as
//! `#[tokio::main]` does: `attach` waits, in milliseconds, for a new bridge port to forward.
//!
//! # Layout
//! - `bridge`: create, find and delete the bridge; list its container ports.
//! - `attach`: the container's `ethwe` (veth, move, addresses, multicast route), detach, addresses.
//! - `endpoint`: the veths of Docker's network plugin, whose container end Docker moves itself.
//! - `process`: a container's process pinned by a pidfd, so that a reused PID reaches nothing.
//! - `sequence`: the one attach sequence (router, hosts file, `ethwe`, names) and its undo.
//! - `rootfs`: files inside a container's own root filesystem (its `/etc/hosts`), confined there.
//! - `routes`: host routes that would clash with an address range.
//! - `netns`: running netlink work inside a container's network namespace.
//! - `link`: the rtnetlink connection and link queries the others share.
//! - `arp`: the gratuitous ARP a new address announces itself with.
//! - `sysctl`: best-effort per-interface `/proc/sys` knobs.
//! - `vxlan`: the VXLAN port that joins the bridges of several hosts, its flood list, and
//!   forgetting a peer.

mod arp;
mod attach;
mod bridge;
mod endpoint;
mod expose;
mod link;
mod netns;
mod process;
pub mod rootfs;
mod routes;
pub mod sequence;
mod sysctl;
mod vxlan;

pub use attach::{
    WeaveInterface, attach, container_addrs, container_interface, detach, host_addrs,
};
pub use bridge::{attached_pids, delete_bridge, ensure_bridge, find_bridge, lower_mtu};
pub use endpoint::{
    PLUGIN_HOST_VETH_PREFIX, PLUGIN_PEER_VETH_PREFIX, create_endpoint_veth, delete_endpoint_veth,
    endpoint_veth_names,
};
pub use expose::{expose, hide, host_interface};
pub use process::Process;
pub use routes::overlapping_routes;
pub use vxlan::{
    DEFAULT_VNI, DEFAULT_VXLAN_PORT, FloodChange, Forgotten, VxlanSpec, delete_vxlan, ensure_vxlan,
    flood_entries, forget_vtep, set_flood_list, vxlan_name,
};

use ipnet::Ipv4Net;

/// The interface name a weave container sees.
pub const CONTAINER_IFNAME: &str = "ethwe";
/// Prefix of the host end of a container's veth; the container's PID follows.
pub const HOST_VETH_PREFIX: &str = "vethwepl";
/// Prefix of the container end before it is moved and renamed.
pub const PEER_VETH_PREFIX: &str = "vethwepg";
/// The bridge MTU when none is given: as large as Linux allows, as the original's plain bridge.
pub const DEFAULT_MTU: u32 = 65535;
/// The bridge MTU on a network of several hosts: a 1500-byte underlay less VXLAN's 50 bytes,
/// less room for an encrypted tunnel under it (Weave Net's own default).
pub const OVERLAY_MTU: u32 = 1376;

/// What went wrong, with enough context to tell the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bridge \"{0}\" not present; did you launch weave?")]
    NoBridge(String),
    #[error("link \"{0}\" exists but is not a bridge; remove it or run `weave reset`")]
    NotABridge(String),
    #[error("VXLAN link \"{0}\" not present; did you launch weave?")]
    NoVxlan(String),
    #[error("link \"{0}\" exists but is not a VXLAN link; remove it or run `weave reset`")]
    NotVxlan(String),
    #[error("network namespace of process {pid}: {source}")]
    Namespace {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// The weave bridge as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
}

/// Host end name of the veth for the container whose PID is `pid`, cut to the kernel's 15 bytes.
pub fn host_veth_name(pid: i32) -> String {
    veth_name(HOST_VETH_PREFIX, pid)
}

/// Container end name of the veth, before it is moved into the container and renamed `ethwe`.
pub fn peer_veth_name(pid: i32) -> String {
    veth_name(PEER_VETH_PREFIX, pid)
}

/// Linux link names hold at most 15 bytes (IFNAMSIZ less the NUL); PIDs fit (pid_max is at most
/// 4194304, 7 digits) but the cut keeps a nonsense PID from failing in the kernel instead.
fn veth_name(prefix: &str, pid: i32) -> String {
    let mut name = format!("{prefix}{pid}");
    name.truncate(15);
    name
}

/// What to attach: the container's pinned first process (whose netns gets `ethwe`), the bridge,
/// the addresses, and whether to add the `224.0.0.0/4` route.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    pub process: &'a Process,
    pub bridge: &'a str,
    pub cidrs: &'a [Ipv4Net],
    pub multicast_route: bool,
}

/// What an attach did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// `false` when `ethwe` already existed and only missing addresses were added.
    pub created: bool,
    /// The addresses that were not there before.
    pub added: Vec<Ipv4Net>,
}
