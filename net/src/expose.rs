//! The host on the weave network: addresses on the bridge itself (`weave expose` and `hide`), and
//! the bridge's MAC and addresses as `weave ps` shows them.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use nix::errno::Errno;

use crate::attach::{WeaveInterface, interface_of, ipv4_of};
use crate::link::{self, errno, netlink_err};
use crate::{NetError, arp, bridge};

/// Adds `cidr` to the bridge `name` so the host reaches the containers in that subnet; `false`
/// when the bridge had that address already. Neighbours learn it at once (gratuitous ARP).
///
/// # Errors
/// [`NetError::NoBridge`] when the bridge is not there; netlink failures.
pub async fn expose(name: &str, cidr: Ipv4Net) -> Result<bool, NetError> {
    let handle = link::connect(&format!("exposing {cidr} on {name}"))?;
    let found = bridge::lookup(&handle, name)
        .await?
        .ok_or_else(|| NetError::NoBridge(name.to_owned()))?;
    let present = interface_of(&handle, &found).await?.addrs;
    if present.iter().any(|p| p.addr() == cidr.addr()) {
        return Ok(false);
    }
    match handle
        .address()
        .add(found.index, IpAddr::V4(cidr.addr()), cidr.prefix_len())
        .execute()
        .await
    {
        Ok(()) => {}
        Err(err) if errno(&err) == Some(Errno::EEXIST) => return Ok(false),
        Err(err) => return Err(netlink_err(format!("adding {cidr} to {name}"))(err)),
    }
    // Only a courtesy to caches that knew another MAC for the address: failure is no failure.
    let _ = arp::announce(name, &[cidr.addr()]);
    Ok(true)
}

/// Removes the address of `cidr` (any prefix) from the bridge `name`; `false` when it had none.
///
/// # Errors
/// Netlink failures. A missing bridge has no addresses: `false`.
pub async fn hide(name: &str, cidr: Ipv4Net) -> Result<bool, NetError> {
    let handle = link::connect(&format!("hiding {cidr} on {name}"))?;
    let Some(found) = bridge::lookup(&handle, name).await? else {
        return Ok(false);
    };
    let messages: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(found.index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_err(format!("listing addresses of {name}")))?;
    let mut removed = false;
    for msg in messages {
        if ipv4_of(&msg).is_some_and(|net| net.addr() == cidr.addr()) {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(netlink_err(format!("removing {cidr} from {name}")))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// The host's interface `name` (the bridge) with its MAC and IPv4 addresses; `None` when absent.
///
/// # Errors
/// Netlink failures.
pub async fn host_interface(name: &str) -> Result<Option<WeaveInterface>, NetError> {
    let handle = link::connect(&format!("reading {name}"))?;
    match link::by_name(&handle, name).await? {
        Some(found) => Ok(Some(interface_of(&handle, &found).await?)),
        None => Ok(None),
    }
}
