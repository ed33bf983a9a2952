//! At start-up, before the router reports ready and before the plugin answers: addresses the
//! plugin holds that no network of its IPAM driver uses any more are freed.
//!
//! Docker releases an endpoint's address by calling the plugin; a call made while the router
//! was down (a container removed meanwhile) never arrives, and Docker does not replay it. What
//! Docker still uses is on its networks: every endpoint's address and any gateway the user
//! named. Everything else the plugin holds is left over.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::Network;
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};

use super::ipam::{OWNER_PREFIX, owner_id};
use crate::ipam::Allocator;

/// The plugin's addresses that are not in `in_use`, ascending.
pub fn unused(alloc: &Allocator, in_use: &HashSet<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut stale: Vec<Ipv4Addr> = alloc
        .owners()
        .filter(|(id, _)| id.starts_with(OWNER_PREFIX))
        .flat_map(|(_, owner)| owner.cidrs.iter().map(|c| c.addr()))
        .filter(|addr| !in_use.contains(addr))
        .collect();
    stale.sort_unstable();
    stale
}

/// The gateways the networks of IPAM driver `driver` name (`10.32.0.1` or `10.32.0.1/12`).
pub fn gateways(networks: &[Network], driver: &str) -> Vec<Ipv4Addr> {
    networks
        .iter()
        .filter(|n| uses_ipam(n, driver))
        .flat_map(|n| n.ipam.iter().flat_map(|i| i.config.iter().flatten()))
        .filter_map(|c| parse_addr(c.gateway.as_deref()?))
        .collect()
}

fn uses_ipam(network: &Network, driver: &str) -> bool {
    network.ipam.as_ref().and_then(|i| i.driver.as_deref()) == Some(driver)
}

fn parse_addr(text: &str) -> Option<Ipv4Addr> {
    text.split('/').next()?.parse().ok()
}

/// Frees in `alloc` the plugin's addresses that are not in `in_use` (see [`in_use`]); the
/// addresses freed, ascending.
///
/// It runs on the allocator before the router hands it to the API: a client that sees the
/// router ready (`/status` 200) must not see a left-over the router is about to drop, and no
/// address the plugin hands out later can be mistaken for one.
pub fn free_unused(alloc: &mut Allocator, in_use: &HashSet<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut stale = unused(alloc, in_use);
    stale.retain(|addr| alloc.free(&owner_id(*addr), *addr).is_ok());
    stale
}

/// Every address the networks of IPAM driver `driver` use: their endpoints' and gateways.
///
/// # Errors
/// When Docker cannot be asked. The caller then frees nothing: an address wrongly kept is a
/// small loss, one wrongly freed a clash.
pub async fn in_use(
    docker: &Docker,
    driver: &str,
) -> Result<HashSet<Ipv4Addr>, bollard::errors::Error> {
    let networks = docker.list_networks(None::<ListNetworksOptions>).await?;
    let mut in_use: HashSet<Ipv4Addr> = gateways(&networks, driver).into_iter().collect();
    for network in networks.iter().filter(|n| uses_ipam(n, driver)) {
        let Some(id) = network.id.as_deref() else {
            continue;
        };
        let inspect = docker
            .inspect_network(id, None::<InspectNetworkOptions>)
            .await?;
        in_use.extend(
            inspect
                .containers
                .unwrap_or_default()
                .values()
                .filter_map(|e| parse_addr(e.ipv4_address.as_deref()?)),
        );
    }
    Ok(in_use)
}

#[cfg(test)]
mod tests {
    use bollard::models::{Ipam, IpamConfig};

    use super::*;

    fn net(text: &str) -> ipnet::Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn only_the_plugins_addresses_out_of_use_are_unused() {
        let mut a = Allocator::new(net("10.32.0.0/12"), net("10.32.0.0/12")).unwrap();
        for cidr in ["10.32.0.1/12", "10.32.0.2/12", "10.32.0.3/12"] {
            let cidr = net(cidr);
            a.claim(&owner_id(cidr.addr()), cidr, false).unwrap();
        }
        a.allocate("proxied", net("10.32.0.0/12"), true).unwrap();
        let in_use = HashSet::from([Ipv4Addr::new(10, 32, 0, 2)]);
        assert_eq!(
            unused(&a, &in_use),
            [Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 3)]
        );
        assert_eq!(
            free_unused(&mut a, &in_use),
            [Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 3)]
        );
        assert!(unused(&a, &in_use).is_empty());
        assert_eq!(
            a.owner_of(Ipv4Addr::new(10, 32, 0, 2)),
            Some("plugin:10.32.0.2")
        );
        assert_eq!(a.owners().count(), 2, "the proxy's owner is kept");
    }

    #[test]
    fn gateways_of_the_drivers_networks() {
        let network = |driver: &str, gateway: Option<&str>| Network {
            ipam: Some(Ipam {
                driver: Some(driver.to_owned()),
                config: Some(vec![IpamConfig {
                    subnet: Some("10.32.0.0/12".to_owned()),
                    gateway: gateway.map(str::to_owned),
                    ..IpamConfig::default()
                }]),
                ..Ipam::default()
            }),
            ..Network::default()
        };
        let networks = [
            network("weave", Some("10.32.0.9")),
            network("weave", Some("10.32.0.0/12")),
            network("weave", None),
            network("default", Some("172.17.0.1")),
        ];
        assert_eq!(
            gateways(&networks, "weave"),
            [Ipv4Addr::new(10, 32, 0, 9), Ipv4Addr::new(10, 32, 0, 0)]
        );
    }
}
