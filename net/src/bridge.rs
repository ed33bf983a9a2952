//! The weave bridge: creating it with its MTU, finding it, deleting it with its container ports,
//! and listing which containers are plugged into it.

use nix::errno::Errno;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};
use tracing::{debug, warn};

use crate::link::{self, Link, errno, netlink_err};
use crate::vxlan::VXLAN_PREFIX;
use crate::{Bridge, HOST_VETH_PREFIX, NetError, PLUGIN_HOST_VETH_PREFIX, sysctl};

/// Creates the bridge `name` (up, `mtu`, `accept_ra` 0) unless it exists; returns it and whether
/// it was created. An existing link of another type is [`NetError::NotABridge`].
///
/// An existing bridge keeps its MTU (containers already attached use it) but is brought up if it
/// is down.
pub async fn ensure_bridge(name: &str, mtu: u32) -> Result<(Bridge, bool), NetError> {
    let handle = link::connect(&format!("creating bridge {name}"))?;
    if let Some(existing) = lookup(&handle, name).await? {
        let bridge = bring_up(&handle, existing).await?;
        return Ok((bridge, false));
    }
    match handle
        .link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
    {
        Ok(()) => {}
        // Someone else created it between our lookup and add: theirs is as good as ours.
        Err(err) if errno(&err) == Some(Errno::EEXIST) => {
            let existing = lookup(&handle, name)
                .await?
                .ok_or_else(|| NetError::NoBridge(name.to_owned()))?;
            return Ok((bring_up(&handle, existing).await?, false));
        }
        Err(err) => return Err(netlink_err(format!("creating bridge {name}"))(err)),
    }
    let created = lookup(&handle, name)
        .await?
        .ok_or_else(|| NetError::NoBridge(name.to_owned()))?;
    if created.mtu != mtu {
        set_mtu(&handle, &created, mtu).await?;
    }
    sysctl::disable_accept_ra(name);
    let created = lookup(&handle, name)
        .await?
        .ok_or_else(|| NetError::NoBridge(name.to_owned()))?;
    if created.mtu != mtu {
        warn!(
            bridge = name,
            wanted = mtu,
            got = created.mtu,
            "bridge MTU not applied"
        );
    }
    Ok((bring_up(&handle, created).await?, true))
}

/// Brings the bridge `name`, its container ports and every attached container's `ethwe` down to
/// at most `mtu`; returns how many links changed. A host that was alone (a bridge of 65535)
/// and joins a network of several hosts needs this: the bridge does not fragment, so a frame
/// larger than the VXLAN port takes is dropped without a word, and a container whose `ethwe`
/// still says 65535 would stall every TCP stream to another host. Links already small enough
/// are left alone; a container that exits meanwhile is skipped.
///
/// The container side of a plugin endpoint is not reached (Docker named and moved it); its host
/// side is lowered, which still caps what crosses the bridge.
///
/// # Errors
/// When the bridge cannot be read or lowered.
pub async fn lower_mtu(name: &str, mtu: u32) -> Result<usize, NetError> {
    let handle = link::connect(&format!("lowering the MTU of {name}"))?;
    let Some(bridge) = lookup(&handle, name).await? else {
        return Ok(0);
    };
    let mut changed = 0;
    // Ports first: a bridge takes the smallest MTU of its ports whatever it was told.
    for port in container_ports(&handle, bridge.index).await? {
        if port.mtu > mtu {
            set_link_mtu(&handle, &port, mtu).await?;
            changed += 1;
        }
    }
    if bridge.mtu > mtu {
        set_link_mtu(&handle, &bridge, mtu).await?;
        changed += 1;
    }
    for pid in attached_pids(name).await? {
        match lower_ethwe(pid, mtu).await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(err) => debug!(pid, error = %err, "ethwe MTU left: the container is gone"),
        }
    }
    Ok(changed)
}

async fn set_link_mtu(handle: &Handle, target: &Link, mtu: u32) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(target.index).mtu(mtu).build())
        .execute()
        .await
        .map_err(netlink_err(format!(
            "setting the MTU of {} to {mtu}",
            target.name
        )))
}

/// Lowers `ethwe` inside the network namespace of `pid`; whether it changed.
async fn lower_ethwe(pid: i32, mtu: u32) -> Result<bool, NetError> {
    let process = crate::Process::pin(pid)?;
    let netns = crate::netns::Netns::open(&process)?;
    netns
        .run(move || async move {
            let handle = link::connect("lowering the MTU of ethwe")?;
            match link::by_name(&handle, crate::CONTAINER_IFNAME).await? {
                Some(ethwe) if ethwe.mtu > mtu => {
                    set_link_mtu(&handle, &ethwe, mtu).await?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
}

/// The bridge `name`, if it exists. A link of that name that is not a bridge is
/// [`NetError::NotABridge`], so that nobody goes on to create one over it.
pub async fn find_bridge(name: &str) -> Result<Option<Bridge>, NetError> {
    let handle = link::connect(&format!("looking up bridge {name}"))?;
    Ok(lookup(&handle, name).await?.map(|l| to_bridge(&l)))
}

/// Deletes the bridge `name` and every `vethwepl*` (and plugin `vethwpl*`) port on it, and its
/// VXLAN port (`vxlan-*`); `false` when it did not exist.
///
/// The ports go first so that containers lose `ethwe` (deleting either end of a veth deletes
/// both) rather than keep a veth to nowhere, and so that no VXLAN link is left holding its UDP
/// port. Other ports are left alone; they just lose their bridge.
pub async fn delete_bridge(name: &str) -> Result<bool, NetError> {
    let handle = link::connect(&format!("deleting bridge {name}"))?;
    let Some(bridge) = lookup(&handle, name).await? else {
        return Ok(false);
    };
    for port in container_ports(&handle, bridge.index).await? {
        link::delete(&handle, port.index, &port.name).await?;
    }
    link::delete(&handle, bridge.index, name).await
}

/// PIDs of the containers whose `vethwepl<pid>` is a port of `bridge`, ascending; empty when the
/// bridge does not exist.
pub async fn attached_pids(bridge: &str) -> Result<Vec<i32>, NetError> {
    let handle = link::connect(&format!("listing ports of {bridge}"))?;
    let Some(bridge) = lookup(&handle, bridge).await? else {
        return Ok(Vec::new());
    };
    let mut pids: Vec<i32> = container_ports(&handle, bridge.index)
        .await?
        .iter()
        .filter_map(|port| pid_of_host_veth(&port.name))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The PID in a host veth name `vethwepl<pid>`; `None` for any other name.
pub(crate) fn pid_of_host_veth(name: &str) -> Option<i32> {
    let digits = name.strip_prefix(HOST_VETH_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|pid| *pid > 0)
}

/// The bridge `name` as a link: `None` when absent, an error when it is something else.
pub(crate) async fn lookup(handle: &Handle, name: &str) -> Result<Option<Link>, NetError> {
    match link::by_name(handle, name).await? {
        Some(l) if l.is_bridge() => Ok(Some(l)),
        Some(_) => Err(NetError::NotABridge(name.to_owned())),
        None => Ok(None),
    }
}

fn to_bridge(link: &Link) -> Bridge {
    Bridge {
        name: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
    }
}

async fn container_ports(handle: &Handle, bridge_index: u32) -> Result<Vec<Link>, NetError> {
    Ok(link::all(handle)
        .await?
        .into_iter()
        .filter(|l| {
            l.controller == Some(bridge_index)
                && (l.name.starts_with(HOST_VETH_PREFIX)
                    || l.name.starts_with(PLUGIN_HOST_VETH_PREFIX)
                    || l.name.starts_with(VXLAN_PREFIX))
        })
        .collect())
}

async fn bring_up(handle: &Handle, bridge: Link) -> Result<Bridge, NetError> {
    if !bridge.up {
        handle
            .link()
            .set(LinkUnspec::new_with_index(bridge.index).up().build())
            .execute()
            .await
            .map_err(netlink_err(format!("bringing bridge {} up", bridge.name)))?;
    }
    Ok(to_bridge(&bridge))
}

/// Sets the bridge MTU directly; kernels that refuse a bridge an MTU above its ports' (before
/// 4.17) get it through a temporary port that has that MTU. (There is no `dummy` link type on
/// every kernel, so the temporary port is a veth.)
async fn set_mtu(handle: &Handle, bridge: &Link, mtu: u32) -> Result<(), NetError> {
    let direct = handle
        .link()
        .set(LinkUnspec::new_with_index(bridge.index).mtu(mtu).build())
        .execute()
        .await;
    match direct {
        Ok(()) => Ok(()),
        Err(err) => {
            debug!(bridge = %bridge.name, mtu, error = %err, "bridge refused MTU; using a temporary port");
            raise_mtu_through_port(handle, bridge, mtu).await
        }
    }
}

/// Enslaves a veth of MTU `mtu` to the bridge and deletes it again: on old kernels the bridge
/// takes its ports' MTU and keeps it. (Since Linux 4.17 it would revert on removal, but those
/// kernels accept the MTU directly.)
async fn raise_mtu_through_port(handle: &Handle, bridge: &Link, mtu: u32) -> Result<(), NetError> {
    let (name, peer) = (
        format!("vethwedu{}", bridge.index),
        format!("vethwedp{}", bridge.index),
    );
    let (name, peer) = (&name[..name.len().min(15)], &peer[..peer.len().min(15)]);
    handle
        .link()
        .add(link::veth_pair(name, peer, mtu, bridge.index, None))
        .execute()
        .await
        .map_err(netlink_err(format!("creating MTU helper veth {name}")))?;
    let helper = link::by_name(handle, name).await?;
    if let Some(helper) = helper {
        link::delete(handle, helper.index, name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_from_host_veth_names() {
        for (name, want) in [
            ("vethwepl1234", Some(1234)),
            ("vethwepl4194304", Some(4_194_304)),
            ("vethwepl1", Some(1)),
            ("vethwepl", None),
            ("vethwepl0", None),
            ("vethwepl-5", None),
            ("vethwepl12a", None),
            ("vethwepg1234", None),
            ("vethwe-bridge", None),
            ("eth0", None),
        ] {
            assert_eq!(pid_of_host_veth(name), want, "{name}");
        }
    }
}
