//! A container's `ethwe`: the veth that plugs its network namespace into the bridge, its
//! addresses and multicast route; detaching it; reading its addresses back.
//!
//! The order follows the original weave's attach (see `weave-proxy.md` §3.4): create the veth with
//! its host end a bridge port and its peer `vethwepg<pid>` in the container, rename the peer
//! `ethwe`, bring the host end up, then inside the container add the addresses *before* `ethwe`
//! goes up, announce them, and add the multicast route last, because `weavewait` treats that
//! route as "attach finished".
//!
//! Two departures. The peer is created directly in the container's namespace (the kernel takes
//! the namespace for each end of a new veth) instead of created on the host and moved: the end
//! state is the same, the peer never sits on the host, and a move costs the kernel an RCU grace
//! period (~15 ms here, most of an attach). And the original's iptables rules inside the
//! container (drop multicast not from weave subnets) are not reproduced: they need an iptables
//! binary in the container's view.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::BridgePortState;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec, RouteMessageBuilder};
use tracing::{debug, warn};

use crate::link::{self, Link, errno, netlink_err};
use crate::netns::Netns;
use crate::process::Process;
use crate::{
    AttachRequest, Attached, CONTAINER_IFNAME, NetError, arp, bridge, host_veth_name,
    peer_veth_name, sysctl,
};

/// How long an attach waits for another attach of the same container that is under way.
const OTHER_ATTACH_WAIT: Duration = Duration::from_secs(10);

/// How long a new bridge port may take to forward before the announcement goes out anyway.
const FORWARDING_WAIT: Duration = Duration::from_secs(1);

/// Multicast traffic leaves through `ethwe` rather than the container's default route.
const MULTICAST: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(224, 0, 0, 0), 4) {
    Ok(net) => net,
    Err(_) => panic!("224.0.0.0/4 is a valid prefix"),
};

/// Gives the container `ethwe` on `bridge`: veth `vethwepl<pid>` (MTU from the bridge, hairpin on,
/// up) whose peer is created in the container as `vethwepg<pid>` and renamed `ethwe`; addresses
/// added before it goes up; gratuitous ARP once the bridge port forwards; the multicast route
/// last. Idempotent: with `ethwe` present only missing addresses (and the route) are added.
///
/// Safe against a second attach of the same container at the same time (the proxy's start
/// request and Docker's events, two proxies, `weave attach`): only one can create the veth; the
/// other finds `vethwepl<pid>` with its peer already in the container, waits for `ethwe` and then
/// only adds what is missing. It never removes what it did not create. A `vethwepl<pid>` whose
/// peer is *not* in the container is a leftover of an earlier process that had the same PID
/// (the pinned process has it now), and is removed.
///
/// On failure the veth this call created is deleted; nothing else is.
///
/// # Errors
/// [`NetError::NoBridge`] when the bridge is missing, [`NetError::Namespace`] when the process
/// (or its namespace) is gone or is the host's, and a netlink error naming the failed step.
pub async fn attach(req: &AttachRequest<'_>) -> Result<Attached, NetError> {
    let pid = req.process.pid();
    let handle = link::connect(&format!("attaching process {pid}"))?;
    let bridge = bridge::lookup(&handle, req.bridge)
        .await?
        .ok_or_else(|| NetError::NoBridge(req.bridge.to_owned()))?;
    let netns = Netns::open(req.process)?;
    let plan = Plan {
        cidrs: req.cidrs.to_vec(),
        multicast_route: req.multicast_route,
    };
    let host = host_veth_name(pid);
    let peer = peer_veth_name(pid);
    let deadline = Instant::now() + OTHER_ATTACH_WAIT;

    let (created, added) = loop {
        let existing = {
            let plan = plan.clone();
            netns.run(move || plan.reconfigure()).await?
        };
        if let Some(added) = existing {
            ensure_hairpin(&handle, &host).await;
            break (false, added);
        }
        let pair = link::veth_pair(&host, &peer, bridge.mtu, bridge.index, Some(netns.fd()));
        match handle.link().add(pair).execute().await {
            Ok(()) => match plumb(&handle, &netns, &host, peer.clone(), plan.clone()).await {
                Ok(added) => break (true, added),
                Err(err) => {
                    remove_after_failure(&handle, &host).await;
                    return Err(err);
                }
            },
            Err(err) if errno(&err) == Some(Errno::EEXIST) => {
                // Either name may be taken. The host end's, by another attach of this container
                // (its peer is in the container) or by a leftover of an earlier process with
                // this PID (its peer is anywhere else); the peer's, by a link of the
                // container's own, which is not ours to touch.
                let Some(existing) = link::by_name(&handle, &host).await? else {
                    return Err(netlink_err(format!("creating veth {host}"))(err));
                };
                let theirs = netns.run(move || peer_in_container(existing.index)).await?;
                if !theirs {
                    warn!(pid, veth = %host, "removing a leftover veth of an earlier process with this PID");
                    remove_after_failure(&handle, &host).await;
                } else if Instant::now() < deadline {
                    debug!(pid, veth = %host, "another attach of this container is under way");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    return Err(NetError::Io {
                        op: format!("creating veth {host}"),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "another attach of this container did not finish",
                        ),
                    });
                }
            }
            Err(err) => return Err(netlink_err(format!("creating veth {host}"))(err)),
        }
    };

    wait_until_forwarding(&handle, &host).await;
    let finished = {
        let added = added.clone();
        netns.run(move || plan.finish(added)).await
    };
    if let Err(err) = finished {
        if created {
            remove_after_failure(&handle, &host).await;
        }
        return Err(err);
    }
    Ok(Attached { created, added })
}

/// Removes the container's `ethwe` (and with it the host end of its veth, whatever its name);
/// `false` when it has none.
///
/// # Errors
/// [`NetError::Namespace`] when the process is gone.
pub async fn detach(process: &Process) -> Result<bool, NetError> {
    let netns = Netns::open(process)?;
    netns
        .run(|| async {
            let handle = link::connect("detaching ethwe")?;
            match link::by_name(&handle, CONTAINER_IFNAME).await? {
                Some(ethwe) => link::delete(&handle, ethwe.index, CONTAINER_IFNAME).await,
                None => Ok(false),
            }
        })
        .await
}

/// In the container's netns: whether the peer of host link `host_index` is there. One dump of
/// every link, not a lookup by name: another attach renames the peer to `ethwe` at any moment.
async fn peer_in_container(host_index: u32) -> Result<bool, NetError> {
    let handle = link::connect("looking for an attach under way")?;
    Ok(link::all(&handle)
        .await?
        .iter()
        .any(|l| l.peer_index == Some(host_index)))
}

/// The IPv4 addresses on `ethwe` in the network namespace of `process`; empty when it has no
/// `ethwe`.
///
/// # Errors
/// [`NetError::Namespace`] when the process is gone.
pub async fn container_addrs(process: &Process) -> Result<Vec<Ipv4Net>, NetError> {
    let netns = Netns::open(process)?;
    netns
        .run(|| async {
            let handle = link::connect("reading ethwe addresses")?;
            match link::by_name(&handle, CONTAINER_IFNAME).await? {
                Some(ethwe) => ipv4_addrs(&handle, ethwe.index).await,
                None => Ok(Vec::new()),
            }
        })
        .await
}

/// The IPv4 addresses of the host's interface `name`; `None` when there is no such interface.
///
/// # Errors
/// When netlink cannot be asked.
pub async fn host_addrs(name: &str) -> Result<Option<Vec<Ipv4Net>>, NetError> {
    let handle = link::connect(&format!("reading the addresses of {name}"))?;
    match link::by_name(&handle, name).await? {
        Some(found) => Ok(Some(ipv4_addrs(&handle, found.index).await?)),
        None => Ok(None),
    }
}

/// A container's `ethwe` as `docker inspect` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaveInterface {
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Its IPv4 addresses, in the order the kernel lists them.
    pub addrs: Vec<Ipv4Net>,
}

/// The `ethwe` in the network namespace of `process`, `None` when it has none.
///
/// # Errors
/// [`NetError::Namespace`] when the process is gone.
pub async fn container_interface(process: &Process) -> Result<Option<WeaveInterface>, NetError> {
    let netns = Netns::open(process)?;
    netns
        .run(|| async {
            let handle = link::connect("reading ethwe")?;
            let Some(ethwe) = link::by_name(&handle, CONTAINER_IFNAME).await? else {
                return Ok(None);
            };
            Ok(Some(interface_of(&handle, &ethwe).await?))
        })
        .await
}

/// The requested addresses that are not on the interface yet, by IP (a present IP with another
/// prefix counts as present), each once, in request order.
pub(crate) fn missing_addrs(wanted: &[Ipv4Net], present: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut missing: Vec<Ipv4Net> = Vec::new();
    for net in wanted {
        let known = |n: &Ipv4Net| n.addr() == net.addr();
        if !present.iter().any(known) && !missing.iter().any(known) {
            missing.push(*net);
        }
    }
    missing
}

/// What to configure on `ethwe` once it is in the container.
#[derive(Debug, Clone)]
struct Plan {
    cidrs: Vec<Ipv4Net>,
    multicast_route: bool,
}

impl Plan {
    /// In the container's netns: if `ethwe` exists, adds the missing addresses, makes sure it is
    /// up and returns the added addresses; `None` when there is no `ethwe` yet.
    async fn reconfigure(self) -> Result<Option<Vec<Ipv4Net>>, NetError> {
        let handle = link::connect("looking for ethwe")?;
        match link::by_name(&handle, CONTAINER_IFNAME).await? {
            Some(ethwe) => self.address_and_up(&handle, &ethwe).await.map(Some),
            None => Ok(None),
        }
    }

    /// In the container's netns: turns the peer into `ethwe`, adds the addresses and brings it
    /// up.
    async fn configure_peer(self, peer: String) -> Result<Vec<Ipv4Net>, NetError> {
        let handle = link::connect(&format!("configuring {peer}"))?;
        let mut moved = link::by_name(&handle, &peer)
            .await?
            .ok_or_else(|| missing_link(&format!("finding {peer} in the container"), &peer))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(moved.index)
                    .name(CONTAINER_IFNAME)
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink_err(format!(
                "renaming {peer} to {CONTAINER_IFNAME}"
            )))?;
        CONTAINER_IFNAME.clone_into(&mut moved.name);
        sysctl::disable_accept_ra(CONTAINER_IFNAME);
        sysctl::tune_arp(CONTAINER_IFNAME);
        self.address_and_up(&handle, &moved).await
    }

    /// Addresses first, then up: whoever waits for `ethwe` to be up finds its addresses there.
    async fn address_and_up(
        &self,
        handle: &Handle,
        ethwe: &Link,
    ) -> Result<Vec<Ipv4Net>, NetError> {
        let present = ipv4_addrs(handle, ethwe.index).await?;
        let added = missing_addrs(&self.cidrs, &present);
        for net in &added {
            let result = handle
                .address()
                .add(ethwe.index, IpAddr::V4(net.addr()), net.prefix_len())
                .execute()
                .await;
            match result {
                Ok(()) => {}
                Err(err) if errno(&err) == Some(Errno::EEXIST) => {}
                Err(err) => {
                    return Err(netlink_err(format!("adding {net} to {CONTAINER_IFNAME}"))(
                        err,
                    ));
                }
            }
        }
        if !ethwe.up {
            handle
                .link()
                .set(LinkUnspec::new_with_index(ethwe.index).up().build())
                .execute()
                .await
                .map_err(netlink_err(format!("bringing {CONTAINER_IFNAME} up")))?;
        }
        Ok(added)
    }

    /// In the container's netns, once the bridge forwards: announce the new addresses, then the
    /// multicast route, last because `weavewait` takes it to mean "attached".
    async fn finish(self, added: Vec<Ipv4Net>) -> Result<(), NetError> {
        let ips: Vec<Ipv4Addr> = added.iter().map(Ipv4Net::addr).collect();
        if let Err(err) = arp::announce(CONTAINER_IFNAME, &ips) {
            debug!(error = %err, "gratuitous ARP not sent");
        }
        if !self.multicast_route {
            return Ok(());
        }
        let handle = link::connect("adding the multicast route")?;
        let ethwe = link::by_name(&handle, CONTAINER_IFNAME)
            .await?
            .ok_or_else(|| {
                missing_link("finding ethwe for the multicast route", CONTAINER_IFNAME)
            })?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(MULTICAST.network(), MULTICAST.prefix_len())
            .output_interface(ethwe.index)
            .scope(RouteScope::Link)
            .build();
        match handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(err) if errno(&err) == Some(Errno::EEXIST) => Ok(()),
            Err(err) => Err(netlink_err(format!(
                "adding route {MULTICAST} dev {CONTAINER_IFNAME}"
            ))(err)),
        }
    }
}

/// The host-side steps after the veth exists: hairpin, `accept_ra`, host end up; then the
/// container-side steps.
async fn plumb(
    handle: &Handle,
    netns: &Netns,
    host: &str,
    peer: String,
    plan: Plan,
) -> Result<Vec<Ipv4Net>, NetError> {
    let host_link = link::by_name(handle, host)
        .await?
        .ok_or_else(|| missing_link(&format!("finding veth {host}"), host))?;
    set_hairpin(handle, host_link.index, host).await?;
    sysctl::disable_accept_ra(host);
    handle
        .link()
        .set(LinkUnspec::new_with_index(host_link.index).up().build())
        .execute()
        .await
        .map_err(netlink_err(format!("bringing {host} up")))?;
    netns.run(move || plan.configure_peer(peer)).await
}

/// A new bridge port passes frames only once the bridge has seen its carrier come up, which the
/// kernel reports asynchronously after `ethwe` goes up; a gratuitous ARP sent before then is
/// dropped. So wait (briefly: with STP off this takes well under a millisecond to a few) for the
/// host end to be forwarding. After the limit, go on: the ARP is only an optimisation.
async fn wait_until_forwarding(handle: &Handle, host: &str) {
    let deadline = Instant::now() + FORWARDING_WAIT;
    loop {
        match link::by_name(handle, host).await {
            Ok(Some(port)) if port.port_state != Some(BridgePortState::Forwarding) => {}
            Ok(_) => return,
            Err(err) => {
                debug!(veth = host, error = %err, "bridge port state unknown");
                return;
            }
        }
        if Instant::now() >= deadline {
            debug!(
                veth = host,
                "bridge port not forwarding yet; announcing anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Hairpin lets a container reach itself through the bridge (e.g. via a NAT-ed published
/// address). It is a bridge-port attribute set with `RTM_NEWLINK`, not through sysfs, which is
/// read-only when this runs in a container.
async fn set_hairpin(handle: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    handle
        .link()
        .set_port(LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(netlink_err(format!("turning hairpin on for {name}")))
}

/// On re-attach the host end should already be in hairpin mode; setting it again is cheap and
/// repairs a veth made by something else. Not fatal: the container is already connected.
async fn ensure_hairpin(handle: &Handle, host: &str) {
    match link::by_name(handle, host).await {
        Ok(Some(veth)) => {
            if let Err(err) = set_hairpin(handle, veth.index, host).await {
                debug!(error = %err, "hairpin not set on re-attach");
            }
        }
        Ok(None) => {
            debug!(veth = %host, "ethwe exists but its host end is not named after the PID")
        }
        Err(err) => debug!(error = %err, "hairpin not checked on re-attach"),
    }
}

/// Best-effort removal of a veth this attach created; the original error is what the caller
/// needs, so a failure here is only logged.
async fn remove_after_failure(handle: &Handle, host: &str) {
    let result = match link::by_name(handle, host).await {
        Ok(Some(veth)) => link::delete(handle, veth.index, host).await.map(drop),
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        warn!(veth = host, error = %err, "could not remove veth after a failed attach");
    }
}

/// A link's MAC, as `aa:bb:cc:dd:ee:ff`, and its IPv4 addresses.
pub(crate) async fn interface_of(handle: &Handle, link: &Link) -> Result<WeaveInterface, NetError> {
    let mac = link
        .mac
        .iter()
        .flatten()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let addrs = ipv4_addrs(handle, link.index).await?;
    Ok(WeaveInterface { mac, addrs })
}

async fn ipv4_addrs(handle: &Handle, index: u32) -> Result<Vec<Ipv4Net>, NetError> {
    handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_filter_map(|msg| async move { Ok(ipv4_of(&msg)) })
        .try_collect()
        .await
        .map_err(netlink_err(format!("listing addresses of link {index}")))
}

/// The IPv4 address and prefix of an address message; `None` for IPv6.
pub(crate) fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point
    // links, and the same as IFA_LOCAL otherwise.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    Ipv4Net::new(local.or(address)?, msg.header.prefix_len).ok()
}

fn missing_link(op: &str, name: &str) -> NetError {
    NetError::Io {
        op: op.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no link {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn missing_addrs_compares_ips_only() {
        for (wanted, present, want) in [
            (&["10.32.0.5/12"][..], &[][..], &["10.32.0.5/12"][..]),
            (&["10.32.0.5/12"], &["10.32.0.5/12"], &[]),
            // same IP, other prefix: present
            (&["10.32.0.5/12"], &["10.32.0.5/24"], &[]),
            (
                &["10.32.0.5/12", "10.2.2.9/24"],
                &["10.32.0.5/12"],
                &["10.2.2.9/24"],
            ),
            // duplicates in the request are added once
            (&["10.2.2.9/24", "10.2.2.9/16"], &[], &["10.2.2.9/24"]),
            (&[], &["10.32.0.5/12"], &[]),
        ] {
            assert_eq!(
                missing_addrs(&nets(wanted), &nets(present)),
                nets(want),
                "{wanted:?} on {present:?}"
            );
        }
    }

    #[test]
    fn multicast_prefix() {
        assert_eq!(MULTICAST.to_string(), "224.0.0.0/4");
    }
}
