//! Host routes that would clash with an address range weave is about to use: if the host already
//! routes part of it elsewhere, containers could not reach those addresses over weave.

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};

use crate::NetError;
use crate::link::{self, netlink_err};

/// A route of the main table as far as the overlap check cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostRoute {
    pub(crate) destination: Ipv4Net,
    /// The output interface, absent for multipath and unreachable-style routes.
    pub(crate) oif: Option<u32>,
}

/// IPv4 routes of the host's main table that overlap `range`, leaving out those through `skip_dev`
/// (the weave bridge's own, when it has an address) and the default route, which overlaps
/// everything and is no conflict.
pub async fn overlapping_routes(
    range: Ipv4Net,
    skip_dev: Option<&str>,
) -> Result<Vec<Ipv4Net>, NetError> {
    let handle = link::connect("listing routes")?;
    let skip = match skip_dev {
        Some(name) => link::by_name(&handle, name).await?.map(|l| l.index),
        None => None,
    };
    let routes: Vec<HostRoute> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_filter_map(|msg| async move { Ok(main_table_route(&msg)) })
        .try_collect()
        .await
        .map_err(netlink_err("listing IPv4 routes"))?;
    Ok(conflicts(range, &routes, skip))
}

/// The destination and output interface of `msg`, if it is an IPv4 route of the main table.
fn main_table_route(msg: &RouteMessage) -> Option<HostRoute> {
    // The header's table is a u8; tables above 255 only appear in the attribute.
    let mut table = u32::from(msg.header.table);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => destination = *addr,
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let destination = Ipv4Net::new(destination, msg.header.destination_prefix_length).ok()?;
    Some(HostRoute { destination, oif })
}

/// Whether two prefixes share any address: for prefixes that is exactly "one contains the other".
pub(crate) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// The destinations among `routes` that overlap `range`, without the default route and routes
/// through `skip_oif`, each once, in table order.
pub(crate) fn conflicts(
    range: Ipv4Net,
    routes: &[HostRoute],
    skip_oif: Option<u32>,
) -> Vec<Ipv4Net> {
    let mut found: Vec<Ipv4Net> = Vec::new();
    for route in routes {
        let dest = route.destination.trunc();
        if dest.prefix_len() == 0 || (skip_oif.is_some() && route.oif == skip_oif) {
            continue;
        }
        if overlaps(range, dest) && !found.contains(&dest) {
            found.push(dest);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_is_containment_either_way() {
        for (a, b, want) in [
            ("10.32.0.0/12", "10.32.0.0/12", true),
            ("10.32.0.0/12", "10.40.1.0/24", true),
            ("10.40.1.0/24", "10.32.0.0/12", true),
            ("10.32.0.0/12", "10.0.0.0/8", true),
            ("10.32.0.0/12", "10.48.0.0/12", false),
            ("10.32.0.0/12", "172.17.0.0/16", false),
            ("10.32.0.0/12", "10.31.255.255/32", false),
            ("10.32.0.0/12", "10.47.255.255/32", true),
            ("192.168.0.0/24", "192.168.1.0/24", false),
        ] {
            assert_eq!(overlaps(net(a), net(b)), want, "{a} vs {b}");
        }
    }

    #[test]
    fn conflicts_skip_default_route_and_weave_device() {
        let r = |d: &str, oif: Option<u32>| HostRoute {
            destination: net(d),
            oif,
        };
        let routes = [
            r("0.0.0.0/0", Some(2)),
            r("172.17.0.0/16", Some(3)),
            r("10.32.0.0/12", Some(7)), // the weave bridge's own route
            r("10.40.0.0/16", Some(4)), // inside the range
            r("10.0.0.0/8", Some(5)),   // around the range
            r("10.0.0.0/8", Some(6)),   // same prefix again, other metric
            r("10.48.0.0/12", Some(4)), // next door
            r("10.33.1.0/24", None),    // multipath: no single oif
            r("10.34.1.7/24", Some(4)), // host bits set: reported as its network
        ];
        let range = net("10.32.0.0/12");
        assert_eq!(
            conflicts(range, &routes, Some(7)),
            vec![
                net("10.40.0.0/16"),
                net("10.0.0.0/8"),
                net("10.33.1.0/24"),
                net("10.34.1.0/24")
            ]
        );
        assert_eq!(conflicts(range, &routes, None)[0], net("10.32.0.0/12"));
        assert_eq!(conflicts(net("192.168.0.0/16"), &routes, None), vec![]);
    }
}
