//! The VXLAN port that joins this host's bridge to the other hosts' bridges (MULTIHOST.md §4.4):
//! the kernel link itself, its flood list, and forgetting a peer.
//!
//! Learning stays on. The kernel then records, from the frames it receives, which VTEP each
//! remote MAC sits behind, so unicast needs no control plane of ours; the flood list (one
//! all-zeros FDB entry per peer VTEP) carries only broadcast, multicast and frames for MACs not
//! yet learned. The price is that a learned entry outlives its peer by the ageing time (300 s),
//! which is why [`forget_vtep`] flushes them as well (MULTIHOST.md §3.5).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures_util::{StreamExt, TryStreamExt};
use nix::errno::Errno;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};
use tracing::{debug, info};

use crate::link::{self, Link, errno, netlink_err};
use crate::{NetError, bridge};

/// The UDP port of weave's VXLAN unless told otherwise. Not IANA's 4789, which Docker Swarm's
/// overlay uses: two VXLAN links cannot share a port and VNI in one namespace.
pub const DEFAULT_VXLAN_PORT: u16 = 6789;
/// The VXLAN network identifier unless told otherwise; every host of a network must use the same.
pub const DEFAULT_VNI: u32 = 1;

/// The MAC of a VXLAN link's default entry: frames for MACs it has no entry of its own for go to
/// every destination of this one.
const FLOOD_MAC: [u8; 6] = [0; 6];

/// What this host's VXLAN port should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// The link's name; [`vxlan_name`] of the port unless told otherwise.
    pub name: String,
    /// The bridge it is a port of.
    pub bridge: String,
    pub vni: u32,
    /// The UDP port peers send to, the same on every host.
    pub port: u16,
    /// This host's underlay address: the source of its encapsulated packets and the VTEP the
    /// peers put in their flood lists.
    pub local: Ipv4Addr,
    /// The bridge's MTU, which must leave room for the 50 bytes VXLAN adds on the underlay: a
    /// port smaller than its bridge drops the bridge's large frames.
    pub mtu: u32,
}

impl VxlanSpec {
    /// weave's port for `bridge`: `vxlan-6789`, VNI 1, UDP port 6789.
    pub fn new(bridge: &str, local: Ipv4Addr, mtu: u32) -> Self {
        VxlanSpec {
            name: vxlan_name(DEFAULT_VXLAN_PORT),
            bridge: bridge.to_owned(),
            vni: DEFAULT_VNI,
            port: DEFAULT_VXLAN_PORT,
            local,
            mtu,
        }
    }
}

/// The link name weave gives its VXLAN port on UDP port `port`: `vxlan-<port>`, at most 11
/// bytes, so it always fits the kernel's 15.
pub fn vxlan_name(port: u16) -> String {
    format!("{VXLAN_PREFIX}{port}")
}

/// What the names of weave's VXLAN ports start with.
pub(crate) const VXLAN_PREFIX: &str = "vxlan-";

/// Makes `spec.name` a VXLAN link as `spec` says, learning on, a port of `spec.bridge`, up;
/// returns whether it was created (or re-created).
///
/// An existing link with the same VNI, port, local address and learning is kept, with its
/// flood list and learned entries, so that a restarted router does not cut traffic; only its
/// MTU, bridge and up state are put right. One that differs in any of those is replaced rather
/// than refused: the name is weave's, and the difference means weave was launched again with
/// another address or port (a host whose address changed), which is what the user asked for;
/// the kernel would not change a VXLAN link's port or VNI in place anyway. A created link has an
/// empty flood list, which is what `true` tells the caller: it must [`set_flood_list`].
///
/// # Errors
/// [`NetError::NoBridge`] when the bridge is missing; [`NetError::NotVxlan`] when a link named
/// `spec.name` is of another type (it is left alone); [`NetError::Netlink`] when the kernel
/// refuses, for example because another VXLAN link already has this VNI and port.
pub async fn ensure_vxlan(spec: &VxlanSpec) -> Result<bool, NetError> {
    let handle = link::connect(&format!("creating VXLAN link {}", spec.name))?;
    let bridge = bridge::lookup(&handle, &spec.bridge)
        .await?
        .ok_or_else(|| NetError::NoBridge(spec.bridge.clone()))?;
    if let Some((existing, tunnel)) = lookup(&handle, &spec.name).await? {
        let differs = tunnel.differences(spec);
        if differs.is_empty() {
            put_right(&handle, &existing, spec, bridge.index).await?;
            return Ok(false);
        }
        info!(link = %spec.name, ?differs, "replacing VXLAN link");
        link::delete(&handle, existing.index, &spec.name).await?;
    }
    create(&handle, spec, bridge.index).await?;
    Ok(true)
}

/// Deletes the VXLAN link `name`, and with it its flood list and learned entries; `false` when
/// there was none.
///
/// # Errors
/// [`NetError::NotVxlan`] when `name` is a link of another type (it is left alone);
/// [`NetError::Netlink`] when the kernel refuses.
pub async fn delete_vxlan(name: &str) -> Result<bool, NetError> {
    let handle = link::connect(&format!("deleting VXLAN link {name}"))?;
    match lookup(&handle, name).await? {
        Some((existing, _)) => link::delete(&handle, existing.index, name).await,
        None => Ok(false),
    }
}

/// The flood list of the VXLAN link `link`: the VTEPs its default entry sends to, ascending.
///
/// # Errors
/// [`NetError::NoVxlan`] or [`NetError::NotVxlan`] when `link` is missing or of another type;
/// [`NetError::Netlink`] when the FDB cannot be listed.
pub async fn flood_entries(link: &str) -> Result<Vec<Ipv4Addr>, NetError> {
    let handle = link::connect(&format!("listing the flood list of {link}"))?;
    let index = vxlan_index(&handle, link).await?;
    Ok(flood_list(&remotes(&handle, index, link).await?))
}

/// What [`set_flood_list`] changed, each list ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodChange {
    pub added: Vec<Ipv4Addr>,
    pub removed: Vec<Ipv4Addr>,
}

impl FloodChange {
    /// Whether the flood list was already as asked.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Makes the flood list of the VXLAN link `link` exactly `vteps` (duplicates ignored): appends
/// the missing VTEPs, as `bridge fdb append` does, then deletes the extra ones. Running it again
/// with the same list changes nothing.
///
/// The list should not contain this host's own address: the link would send every flooded frame
/// to itself. Learned entries of a removed VTEP stay until they age out; for a peer that is
/// gone, use [`forget_vtep`].
///
/// # Errors
/// [`NetError::NoVxlan`] or [`NetError::NotVxlan`] when `link` is missing or of another type;
/// [`NetError::Netlink`] when the kernel refuses an entry, in which case the entries before it
/// have been changed and a later call finishes the job.
pub async fn set_flood_list(link: &str, vteps: &[Ipv4Addr]) -> Result<FloodChange, NetError> {
    let handle = link::connect(&format!("setting the flood list of {link}"))?;
    let index = vxlan_index(&handle, link).await?;
    let present = flood_list(&remotes(&handle, index, link).await?);
    let mut change = flood_diff(&present, vteps);
    // Additions first: a peer that changed its address keeps getting floods through the swap.
    for &vtep in &change.added {
        append(&handle, fdb_message(index, FLOOD_MAC, vtep))
            .await
            .map_err(netlink_err(format!(
                "adding VTEP {vtep} to the flood list of {link}"
            )))?;
    }
    let mut removed = Vec::with_capacity(change.removed.len());
    for vtep in change.removed {
        if remove(&handle, index, FLOOD_MAC, vtep, link).await? {
            removed.push(vtep);
        }
    }
    change.removed = removed;
    Ok(change)
}

/// What [`forget_vtep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Whether the VTEP was in the flood list.
    pub flood_entry: bool,
    /// How many learned MACs pointed at it.
    pub learned: usize,
}

/// Forgets the peer VTEP `vtep` on the VXLAN link `link`: removes it from the flood list and
/// flushes the entries the kernel learned for MACs behind it. Without the flush, frames for
/// those MACs would still go to the peer until the entries aged out (MULTIHOST.md §3.5).
///
/// Static entries that point at it (added by hand) are kept. A peer that is still alive and
/// still sends here is learned again from its next frame: this is for peers that are gone.
///
/// # Errors
/// [`NetError::NoVxlan`] or [`NetError::NotVxlan`] when `link` is missing or of another type;
/// [`NetError::Netlink`] when the kernel refuses to list or delete an entry.
pub async fn forget_vtep(link: &str, vtep: Ipv4Addr) -> Result<Forgotten, NetError> {
    let handle = link::connect(&format!("forgetting VTEP {vtep} on {link}"))?;
    let index = vxlan_index(&handle, link).await?;
    let entries = remotes(&handle, index, link).await?;
    let mut forgotten = Forgotten::default();
    if flood_list(&entries).contains(&vtep) {
        forgotten.flood_entry = remove(&handle, index, FLOOD_MAC, vtep, link).await?;
    }
    for entry in learned_behind(&entries, vtep) {
        if remove(&handle, index, entry.mac, vtep, link).await? {
            forgotten.learned += 1;
        }
    }
    debug!(link, %vtep, ?forgotten, "VTEP forgotten");
    Ok(forgotten)
}

/// The settings of a VXLAN link that only a new link can change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tunnel {
    vni: Option<u32>,
    port: Option<u16>,
    local: Option<Ipv4Addr>,
    learning: Option<bool>,
}

impl Tunnel {
    /// The link's VXLAN settings; all `None` for a link of another type.
    fn of(msg: &LinkMessage) -> Self {
        let mut tunnel = Tunnel::default();
        let infos = msg.attributes.iter().filter_map(|attr| match attr {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        });
        for info in infos.flatten() {
            let LinkInfo::Data(InfoData::Vxlan(settings)) = info else {
                continue;
            };
            for setting in settings {
                match setting {
                    InfoVxlan::Id(vni) => tunnel.vni = Some(*vni),
                    InfoVxlan::Port(port) => tunnel.port = Some(*port),
                    InfoVxlan::Local(local) => tunnel.local = Some(*local),
                    InfoVxlan::Learning(on) => tunnel.learning = Some(*on),
                    _ => {}
                }
            }
        }
        tunnel
    }

    /// The settings in which the link is not what `spec` asks for; empty when it can stay.
    fn differences(&self, spec: &VxlanSpec) -> Vec<&'static str> {
        [
            ("vni", self.vni == Some(spec.vni)),
            ("port", self.port == Some(spec.port)),
            ("local", self.local == Some(spec.local)),
            ("learning", self.learning == Some(true)),
        ]
        .into_iter()
        .filter_map(|(name, same)| (!same).then_some(name))
        .collect()
    }
}

/// The link `name` and its VXLAN settings: `None` when absent, an error when it is of another
/// type, so that nobody deletes or reprograms a link weave did not make.
async fn lookup(handle: &Handle, name: &str) -> Result<Option<(Link, Tunnel)>, NetError> {
    let Some(msg) = link::message_by_name(handle, name).await? else {
        return Ok(None);
    };
    let existing = Link::from_message(&msg);
    if existing.kind != Some(InfoKind::Vxlan) {
        return Err(NetError::NotVxlan(name.to_owned()));
    }
    Ok(Some((existing, Tunnel::of(&msg))))
}

async fn vxlan_index(handle: &Handle, name: &str) -> Result<u32, NetError> {
    match lookup(handle, name).await? {
        Some((existing, _)) => Ok(existing.index),
        None => Err(NetError::NoVxlan(name.to_owned())),
    }
}

async fn create(handle: &Handle, spec: &VxlanSpec, bridge: u32) -> Result<(), NetError> {
    let request = LinkVxlan::new(&spec.name, spec.vni)
        .port(spec.port)
        .local(spec.local)
        .learning(true)
        .mtu(spec.mtu)
        .controller(bridge)
        .up()
        .build();
    handle.link().add(request).execute().await.map_err(|err| {
        let mut op = format!(
            "creating VXLAN link {} (VNI {}, port {})",
            spec.name, spec.vni, spec.port
        );
        if errno(&err) == Some(Errno::EEXIST) {
            op.push_str(": is there another VXLAN link with this VNI and port?");
        }
        netlink_err(op)(err)
    })
}

/// Sets what may have drifted on a link that is otherwise right, touching only what differs.
async fn put_right(
    handle: &Handle,
    existing: &Link,
    spec: &VxlanSpec,
    bridge: u32,
) -> Result<(), NetError> {
    if existing.mtu == spec.mtu && existing.controller == Some(bridge) && existing.up {
        return Ok(());
    }
    let mut request = LinkUnspec::new_with_index(existing.index).up();
    if existing.mtu != spec.mtu {
        request = request.mtu(spec.mtu);
    }
    if existing.controller != Some(bridge) {
        request = request.controller(bridge);
    }
    handle
        .link()
        .set(request.build())
        .execute()
        .await
        .map_err(netlink_err(format!("updating VXLAN link {}", spec.name)))
}

/// One FDB entry of a VXLAN link: frames for `mac` go to the VTEP `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remote {
    mac: [u8; 6],
    dst: Ipv4Addr,
    /// Learned from a received frame (or added as dynamic), as opposed to static: it ages out.
    learned: bool,
}

/// The entry of link `index` that `msg` describes, when it is one with an IPv4 VTEP.
///
/// A dump of the bridge FDB also has, for a bridge port, the bridge's own entries about that
/// port (flagged master, without a VTEP) and every link's unicast and multicast addresses;
/// only entries the VXLAN link itself holds (flagged self) with a destination are its remotes.
fn remote_of(msg: &NeighbourMessage, index: u32) -> Option<Remote> {
    let header = &msg.header;
    if header.family != AddressFamily::Bridge
        || header.ifindex != index
        || !header.flags.contains(NeighbourFlags::Own)
    {
        return None;
    }
    let mut mac = None;
    let mut dst = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(lladdr) => {
                mac = <[u8; 6]>::try_from(&lladdr[..]).ok()
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
            // The family is AF_BRIDGE, so the parser does not know the address is IPv4.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                dst = <[u8; 4]>::try_from(&bytes[..]).ok().map(Ipv4Addr::from);
            }
            _ => {}
        }
    }
    let static_states = u16::from(NeighbourState::Permanent) | u16::from(NeighbourState::Noarp);
    Some(Remote {
        mac: mac?,
        dst: dst?,
        learned: u16::from(header.state) & static_states == 0,
    })
}

/// The VTEPs of the default entry, ascending and once each.
fn flood_list(entries: &[Remote]) -> Vec<Ipv4Addr> {
    let vteps: BTreeSet<Ipv4Addr> = entries
        .iter()
        .filter(|e| e.mac == FLOOD_MAC)
        .map(|e| e.dst)
        .collect();
    vteps.into_iter().collect()
}

/// The learned entries for MACs behind `vtep`.
fn learned_behind(entries: &[Remote], vtep: Ipv4Addr) -> impl Iterator<Item = &Remote> {
    entries
        .iter()
        .filter(move |e| e.learned && e.dst == vtep && e.mac != FLOOD_MAC)
}

/// What to add to and remove from the flood list `present` to make it `wanted`.
fn flood_diff(present: &[Ipv4Addr], wanted: &[Ipv4Addr]) -> FloodChange {
    let present: BTreeSet<Ipv4Addr> = present.iter().copied().collect();
    let wanted: BTreeSet<Ipv4Addr> = wanted.iter().copied().collect();
    FloodChange {
        added: wanted.difference(&present).copied().collect(),
        removed: present.difference(&wanted).copied().collect(),
    }
}

/// Every FDB entry of the VXLAN link `index`.
///
/// The whole bridge FDB of the namespace is dumped and filtered here: the kernel reads no link
/// index from a dump request in the `ndmsg` form rtnetlink sends, unless the socket has strict
/// checking on, which rtnetlink does not turn on.
async fn remotes(handle: &Handle, index: u32, name: &str) -> Result<Vec<Remote>, NetError> {
    handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_filter_map(|msg| std::future::ready(Ok(remote_of(&msg, index))))
        .try_collect()
        .await
        .map_err(netlink_err(format!("listing the FDB of {name}")))
}

/// A request about the entry `mac` → `dst` that the VXLAN link `index` holds itself (`NTF_SELF`):
/// without that flag a request about a bridge port goes to the bridge's FDB instead.
fn fdb_message(index: u32, mac: [u8; 6], dst: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)),
    ];
    msg
}

/// Adds `msg`'s destination to its entry, as `bridge fdb append`. rtnetlink's own add request
/// sets `NLM_F_EXCL`, which the kernel refuses for an entry that exists, and the default entry
/// exists from the first VTEP on; with `NLM_F_APPEND` it gains one more destination instead, and
/// a destination it has already is accepted without change.
async fn append(handle: &Handle, msg: NeighbourMessage) -> Result<(), rtnetlink::Error> {
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut replies = handle.clone().request(request)?;
    while let Some(reply) = replies.next().await {
        if let NetlinkPayload::Error(err) = reply.payload {
            return Err(rtnetlink::Error::NetlinkError(err));
        }
    }
    Ok(())
}

/// Removes `dst` from the entry `mac` (the entry goes with its last destination); `false` when
/// it was not there, as when something else removed it since the listing.
async fn remove(
    handle: &Handle,
    index: u32,
    mac: [u8; 6],
    dst: Ipv4Addr,
    link: &str,
) -> Result<bool, NetError> {
    match handle
        .neighbours()
        .del(fdb_message(index, mac, dst))
        .execute()
        .await
    {
        Ok(()) => Ok(true),
        Err(err) if errno(&err) == Some(Errno::ENOENT) => Ok(false),
        Err(err) => Err(netlink_err(format!(
            "deleting FDB entry {} dst {dst} of {link}",
            fmt_mac(&mac)
        ))(err)),
    }
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
