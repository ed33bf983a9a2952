//! The rtnetlink connection every operation opens, the link queries they share, and how netlink
//! errors become [`NetError`]s.

use std::os::fd::RawFd;

use futures_util::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::NetError;

/// A connection in the namespace of the calling thread, its task spawned on the current runtime.
///
/// One per operation rather than one shared: a socket is tied to the namespace of the thread that
/// opened it, and the operations are too rare for the extra socket to matter.
pub(crate) fn connect(op: &str) -> Result<Handle, NetError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
        op: format!("{op}: opening a netlink socket"),
        source,
    })?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Wraps a netlink error with what was being done.
pub(crate) fn netlink_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    move |source| NetError::Netlink {
        op: op.into(),
        source,
    }
}

/// The errno a netlink request was refused with, if it was refused by the kernel.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<Errno> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(Errno::from_raw(msg.raw_code().abs())),
        _ => None,
    }
}

/// What the operations need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) kind: Option<InfoKind>,
    /// The index of the bridge (or bond…) it is a port of.
    pub(crate) controller: Option<u32>,
    pub(crate) mtu: u32,
    pub(crate) up: bool,
    /// The STP state when it is a bridge port: frames pass only once it is `Forwarding`.
    pub(crate) port_state: Option<BridgePortState>,
    /// The hardware address, when it has one.
    pub(crate) mac: Option<Vec<u8>>,
    /// For a veth: the index of its peer, in the peer's namespace.
    pub(crate) peer_index: Option<u32>,
}

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            controller: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            port_state: None,
            mac: None,
            peer_index: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Address(mac) => link.mac = Some(mac.clone()),
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Controller(index) => link.controller = Some(*index),
                LinkAttribute::Link(index) => link.peer_index = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.clone()),
                            LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                                link.port_state = port.iter().find_map(|p| match p {
                                    InfoBridgePort::State(state) => Some(*state),
                                    _ => None,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    pub(crate) fn is_bridge(&self) -> bool {
        self.kind == Some(InfoKind::Bridge)
    }
}

/// The link called `name`, or `None` when there is none.
pub(crate) async fn by_name(handle: &Handle, name: &str) -> Result<Option<Link>, NetError> {
    Ok(message_by_name(handle, name)
        .await?
        .as_ref()
        .map(Link::from_message))
}

/// The kernel's whole description of link `name`, for callers that need its type-specific data.
pub(crate) async fn message_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(msg) => Ok(msg),
        Err(err) if errno(&err) == Some(Errno::ENODEV) => Ok(None),
        Err(err) => Err(netlink_err(format!("looking up link {name}"))(err)),
    }
}

/// Every link in the namespace.
pub(crate) async fn all(handle: &Handle) -> Result<Vec<Link>, NetError> {
    handle
        .link()
        .get()
        .execute()
        .map_ok(|msg| Link::from_message(&msg))
        .try_collect()
        .await
        .map_err(netlink_err("listing links"))
}

/// A request for the veth pair `name`/`peer`, both ends at `mtu` (a veth end defaults to 1500,
/// and a bridge port smaller than the bridge would drop large frames), `name` a port of
/// `controller`, and `peer` created in the network namespace `peer_netns` when given.
pub(crate) fn veth_pair(
    name: &str,
    peer: &str,
    mtu: u32,
    controller: u32,
    peer_netns: Option<RawFd>,
) -> LinkMessage {
    let mut peer = LinkUnspec::new_with_name(peer).mtu(mtu);
    if let Some(fd) = peer_netns {
        peer = peer.setns_by_fd(fd);
    }
    let peer = peer.build();
    LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .controller(controller)
        .build()
}

/// Deletes link `index` (`name` is for the error); `false` when it was already gone.
pub(crate) async fn delete(handle: &Handle, index: u32, name: &str) -> Result<bool, NetError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(err) if errno(&err) == Some(Errno::ENODEV) => Ok(false),
        Err(err) => Err(netlink_err(format!("deleting link {name}"))(err)),
    }
}
