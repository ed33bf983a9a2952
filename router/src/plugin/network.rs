//! Docker's network driver calls: an endpoint is a veth whose host end is a port of the `weave`
//! bridge; Docker moves the other end into the container and names it `ethwe<n>`.
//!
//! The driver keeps no state of its own: the veth names come from the endpoint id
//! ([`weavenet::endpoint_veth_names`]), the addresses are the allocator's, so after a router
//! restart `Join` and `DeleteEndpoint` find what the previous process made. Docker itself
//! remembers which containers are on which network.
//!
//! The veth is made at `Join`, when Docker is about to move it, and removed at `DeleteEndpoint`:
//! at `Leave` Docker still has to take the container end back out of the sandbox, and the pair
//! goes with its host end in any case.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::PluginError;
use super::protocol::{CreateEndpoint, CreateNetwork, EndpointRef};

/// What Docker names the container's interface: this prefix and a number (`ethwe0`).
pub const INTERFACE_PREFIX: &str = weavenet::CONTAINER_IFNAME;

/// `CreateNetwork`: only IPv4 is carried. A pool from another IPAM driver is accepted (the
/// addresses are then the user's to keep apart from weave's), as the original's plugin did.
///
/// # Errors
/// [`PluginError::Refused`] for a network with IPv6 pools.
pub fn create_network(req: &CreateNetwork) -> Result<(), PluginError> {
    if req.ipv6_data.as_ref().is_some_and(|v6| !v6.is_empty()) {
        return Err(PluginError::Refused(
            "weave networks do not carry IPv6; create the network without --ipv6".to_owned(),
        ));
    }
    Ok(())
}

/// `CreateEndpoint`: the address must already be chosen (by the IPAM driver); nothing is made
/// yet, and the answer leaves Docker's interface as it is (the kernel picks the MAC).
///
/// # Errors
/// [`PluginError::Refused`] for an endpoint without an IPv4 address or with an id no veth name
/// can be made from.
pub fn create_endpoint(req: &CreateEndpoint) -> Result<(String, String), PluginError> {
    let has_address = req
        .interface
        .as_ref()
        .is_some_and(|i| !i.address.is_empty());
    if !has_address {
        return Err(PluginError::Refused(format!(
            "endpoint {} has no IPv4 address; the weave driver does not choose addresses itself",
            req.endpoint_id
        )));
    }
    veth_names(&req.endpoint_id)
}

/// The host and container veth names of an endpoint.
///
/// # Errors
/// [`PluginError::Refused`] for an id too short or not alphanumeric.
pub fn veth_names(endpoint_id: &str) -> Result<(String, String), PluginError> {
    weavenet::endpoint_veth_names(endpoint_id)
        .ok_or_else(|| PluginError::Refused(format!("malformed endpoint id {endpoint_id:?}")))
}

/// libnetwork's route types: through a next hop, or straight out of the interface.
const ROUTE_NEXT_HOP: u8 = 0;
const ROUTE_CONNECTED: u8 = 1;

/// How a container on the plugin's network reaches weaveDNS, which listens on the host (on
/// Docker's bridge address by default): through the host's own address on the weave bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsRoute {
    /// weaveDNS's address.
    pub server: Ipv4Addr,
    /// The host's address on the weave bridge (`weave expose`'s).
    pub host: Ipv4Addr,
}

/// The answer to `Join` once the veth `peer` exists: Docker moves `peer` into the sandbox as
/// `ethwe<n>`, with the `224.0.0.0/4` route through it, as a proxy-attached container's `ethwe`
/// has (multicast is one of weave's features; without the route it would leave through the
/// container's default route, if any). No gateway, and `DisableGatewayService`, so Docker neither routes the container's
/// default traffic into weave (the bridge has no router) nor adds the container to its
/// `docker_gwbridge` network: like a proxy-attached container's `ethwe`, the weave network is
/// for reaching other weave containers; a container that also needs the outside world is
/// connected to a second network as well.
///
/// With `dns`, two routes more let the container reach weaveDNS and nothing else of the host
/// through weave: Docker's embedded DNS forwards a `--dns` server's queries from inside the
/// container, where the server (on Docker's bridge) is otherwise unreachable for a container on
/// this network alone. The host's weave address is reached on the link (it may lie outside the
/// endpoint's subnet), and the server through it.
pub fn join_answer(peer: &str, dns: Option<DnsRoute>) -> Value {
    let mut routes = vec![json!({ "Destination": "224.0.0.0/4", "RouteType": ROUTE_CONNECTED })];
    if let Some(dns) = dns {
        routes.push(
            json!({ "Destination": format!("{}/32", dns.host), "RouteType": ROUTE_CONNECTED }),
        );
        if dns.server != dns.host {
            routes.push(json!({
                "Destination": format!("{}/32", dns.server),
                "RouteType": ROUTE_NEXT_HOP,
                "NextHop": dns.host.to_string(),
            }));
        }
    }
    json!({
        "InterfaceName": { "SrcName": peer, "DstPrefix": INTERFACE_PREFIX },
        "StaticRoutes": routes,
        "DisableGatewayService": true,
    })
}

/// `EndpointOperInfo`: what `docker network inspect` shows of an endpoint's driver state.
///
/// # Errors
/// As [`veth_names`].
pub fn oper_info(req: &EndpointRef) -> Result<Value, PluginError> {
    let (host, _) = veth_names(&req.endpoint_id)?;
    Ok(json!({ "Value": { "weave.veth": host } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::protocol::{EndpointInterface, IpamData};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn endpoints_need_an_address_and_a_usable_id() {
        let endpoint = |id: &str, address: Option<&str>| CreateEndpoint {
            network_id: "n".to_owned(),
            endpoint_id: id.to_owned(),
            interface: address.map(|a| EndpointInterface {
                address: a.to_owned(),
                ..EndpointInterface::default()
            }),
        };
        let cases = [
            (
                endpoint(ID, Some("10.32.0.1/12")),
                Ok(("vethwpl01234567", "vethwpg01234567")),
            ),
            (
                endpoint(ID, None),
                Err(format!(
                    "endpoint {ID} has no IPv4 address; the weave driver does not choose addresses itself"
                )),
            ),
            (
                endpoint(ID, Some("")),
                Err(format!(
                    "endpoint {ID} has no IPv4 address; the weave driver does not choose addresses itself"
                )),
            ),
            (
                endpoint("short", Some("10.32.0.1/12")),
                Err("malformed endpoint id \"short\"".to_owned()),
            ),
        ];
        for (req, want) in cases {
            let got = create_endpoint(&req).map_err(|e| e.to_string());
            let want = want.map(|(h, p)| (h.to_owned(), p.to_owned()));
            assert_eq!(got, want, "{req:?}");
        }
    }

    #[test]
    fn networks_are_ipv4_only() {
        let v4 = CreateNetwork {
            network_id: "n".to_owned(),
            ipv4_data: Some(vec![IpamData::default()]),
            ipv6_data: Some(Vec::new()),
        };
        assert!(create_network(&v4).is_ok());
        let v6 = CreateNetwork {
            ipv6_data: Some(vec![IpamData::default()]),
            ..v4
        };
        assert!(create_network(&v6).is_err());
    }

    #[test]
    fn join_names_the_veth_routes_multicast_and_turns_the_gateway_service_off() {
        assert_eq!(
            join_answer("vethwpg01234567", None),
            serde_json::json!({
                "InterfaceName": { "SrcName": "vethwpg01234567", "DstPrefix": "ethwe" },
                "StaticRoutes": [{ "Destination": "224.0.0.0/4", "RouteType": 1 }],
                "DisableGatewayService": true,
            })
        );
        let dns = DnsRoute {
            server: Ipv4Addr::new(172, 17, 0, 1),
            host: Ipv4Addr::new(10, 32, 0, 1),
        };
        assert_eq!(
            join_answer("vethwpg01234567", Some(dns))["StaticRoutes"],
            serde_json::json!([
                { "Destination": "224.0.0.0/4", "RouteType": 1 },
                { "Destination": "10.32.0.1/32", "RouteType": 1 },
                { "Destination": "172.17.0.1/32", "RouteType": 0, "NextHop": "10.32.0.1" },
            ])
        );
        let info = oper_info(&EndpointRef {
            network_id: "n".to_owned(),
            endpoint_id: ID.to_owned(),
        })
        .unwrap();
        assert_eq!(info["Value"]["weave.veth"], "vethwpl01234567");
    }
}
