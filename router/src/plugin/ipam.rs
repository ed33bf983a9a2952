//! Docker's IPAM driver calls mapped onto the router's one allocator, so that addresses handed
//! to `--net=<plugin>` containers and to proxy-attached or `weave attach`ed ones never collide.
//! Pure: each decision takes the allocator and a parsed request.
//!
//! - **Pools** hold no state: a pool id spells out its subnet (and `--ip-range`), so a router
//!   that restarted answers for pools Docker made before, and `ReleasePool` has nothing to free.
//! - **Addresses** are owned by `plugin:<ip>` ([`owner_id`]): Docker asks before it knows the
//!   endpoint, and releases by address alone. They are not container entries, so neither the
//!   events watcher nor the start-up reclaim (which know containers, not endpoints) frees them;
//!   only `ReleaseAddress` does.
//! - **Gateways.** Docker insists that a network has one. Weave has no router on the bridge, so
//!   the pool's answer names the subnet's own network address as the gateway (in `Data`), which
//!   Docker then takes without asking for an address, and which no endpoint can ever be given.
//!   A gateway the user names (`network create --gateway`) is claimed like any address, so no
//!   container gets it and `ReleaseAddress` at `network rm` frees what was claimed.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::PluginError;
use super::protocol::{GATEWAY_ADDRESS_TYPE, ReleaseAddress, RequestAddress, RequestPool};
use crate::ipam::{self as allocator, Allocator};

/// Prefix of the owner id of every address the plugin hands out.
pub const OWNER_PREFIX: &str = "plugin:";

/// Prefix of every pool id.
const POOL_PREFIX: &str = "weave:";

/// The owner id under which the plugin holds `addr`.
pub fn owner_id(addr: Ipv4Addr) -> String {
    format!("{OWNER_PREFIX}{addr}")
}

/// A pool: the subnet endpoints are in, and where inside it addresses are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Ipv4Net,
    /// `--ip-range`; `None` for the whole subnet.
    pub range: Option<Ipv4Net>,
}

impl Pool {
    /// The pool id Docker keeps: `weave:<subnet>` or `weave:<subnet>:<range>`.
    pub fn id(&self) -> String {
        match self.range {
            Some(range) => format!("{POOL_PREFIX}{}:{range}", self.subnet),
            None => format!("{POOL_PREFIX}{}", self.subnet),
        }
    }

    /// The pool a pool id names.
    ///
    /// # Errors
    /// [`PluginError::Refused`] for an id this plugin never gave out.
    pub fn parse_id(id: &str) -> Result<Self, PluginError> {
        let unknown = || PluginError::Refused(format!("unknown pool id {id:?}"));
        let rest = id.strip_prefix(POOL_PREFIX).ok_or_else(unknown)?;
        let (subnet, range) = match rest.split_once(':') {
            Some((subnet, range)) => (subnet, Some(range)),
            None => (rest, None),
        };
        let subnet = allocator::parse_subnet(subnet).map_err(|_| unknown())?;
        let range = range
            .map(allocator::parse_subnet)
            .transpose()
            .map_err(|_| unknown())?;
        Ok(Self { subnet, range })
    }

    /// Where new addresses come from.
    fn allocation_range(&self) -> Ipv4Net {
        self.range.unwrap_or(self.subnet)
    }
}

/// `RequestPool`: the default subnet when no `--subnet` is given; a given one must lie inside
/// the range (addresses outside it would be the user's to keep apart, which is what `--ip` is
/// for), and `--ip-range` inside the subnet. The answer is the pool id, the subnet, and the
/// gateway in `Data` (see the module's notes).
///
/// # Errors
/// [`PluginError::Refused`] for IPv6, a malformed subnet or one outside the range.
pub fn request_pool(alloc: &Allocator, req: &RequestPool) -> Result<Value, PluginError> {
    if req.v6 {
        return Err(PluginError::Refused(
            "weave does not allocate IPv6 addresses".to_owned(),
        ));
    }
    let universe = alloc.universe();
    let subnet = if req.pool.is_empty() {
        alloc.default_subnet()
    } else {
        let subnet = allocator::parse_subnet(&req.pool)?;
        if !contains(universe, subnet) {
            return Err(PluginError::Refused(format!(
                "subnet {subnet} is not inside the weave range {universe}"
            )));
        }
        subnet
    };
    let range = if req.sub_pool.is_empty() {
        None
    } else {
        let range = allocator::parse_subnet(&req.sub_pool)?;
        if !contains(subnet, range) {
            return Err(PluginError::Refused(format!(
                "ip range {range} is not inside subnet {subnet}"
            )));
        }
        Some(range)
    };
    let pool = Pool { subnet, range };
    Ok(json!({
        "PoolID": pool.id(),
        "Pool": subnet.to_string(),
        "Data": { GATEWAY_ADDRESS_TYPE: subnet.to_string() },
    }))
}

/// `RequestAddress`: a given address is claimed (with the subnet's prefix), otherwise the lowest
/// free one of the pool's range is taken; a gateway request without an address is answered with
/// the subnet's network address and takes nothing. Returns the address with the subnet's prefix.
///
/// # Errors
/// [`PluginError::Refused`] for an unknown pool or an address outside the subnet's hosts; the
/// allocator's refusals (taken, exhausted).
pub fn request_address(
    alloc: &mut Allocator,
    req: &RequestAddress,
) -> Result<Ipv4Net, PluginError> {
    let pool = Pool::parse_id(&req.pool_id)?;
    let prefix = pool.subnet.prefix_len();
    let with_prefix = |addr: Ipv4Addr| {
        Ipv4Net::new(addr, prefix).unwrap_or_else(|_| unreachable!("prefix of a valid subnet"))
    };
    if req.address.is_empty() {
        if req.is_gateway() {
            return Ok(pool.subnet);
        }
        let free = alloc.lowest_free(pool.allocation_range())?;
        let cidr = with_prefix(free.addr());
        alloc.claim(&owner_id(cidr.addr()), cidr, false)?;
        return Ok(cidr);
    }
    let addr = allocator::parse_ip(&req.address)?;
    if !is_host_of(pool.subnet, addr) {
        return Err(PluginError::Refused(format!(
            "address {addr} is not a host address of subnet {}",
            pool.subnet
        )));
    }
    let cidr = with_prefix(addr);
    let owner = owner_id(addr);
    // A claim by the same owner id would succeed, but here it means a second endpoint.
    if alloc.owner_of(addr) == Some(owner.as_str()) {
        return Err(PluginError::Refused(format!(
            "address {addr} is already in use by another endpoint"
        )));
    }
    alloc.claim(&owner, cidr, false)?;
    Ok(cidr)
}

/// `ReleaseAddress`: frees the address if the plugin holds it. Anything else is not ours to
/// free (a gateway that was never taken, a release repeated after a restart): that is no error,
/// since Docker would only keep failing to remove its network. Returns the address when it was
/// held.
///
/// # Errors
/// [`PluginError::Refused`] for an unknown pool or a malformed address.
pub fn release_address(
    alloc: &mut Allocator,
    req: &ReleaseAddress,
) -> Result<Option<Ipv4Addr>, PluginError> {
    Pool::parse_id(&req.pool_id)?;
    // Docker sends a bare address; accept one with a prefix too.
    let text = req.address.split('/').next().unwrap_or_default();
    let addr = allocator::parse_ip(text)?;
    Ok(alloc.free(&owner_id(addr), addr).is_ok().then_some(addr))
}

fn contains(outer: Ipv4Net, inner: Ipv4Net) -> bool {
    outer.contains(&inner.network()) && outer.contains(&inner.broadcast())
}

fn is_host_of(subnet: Ipv4Net, addr: Ipv4Addr) -> bool {
    subnet.contains(&addr) && addr != subnet.network() && addr != subnet.broadcast()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::plugin::protocol::REQUEST_ADDRESS_TYPE;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn alloc() -> Allocator {
        Allocator::new(net("10.32.0.0/12"), net("10.32.0.0/12")).unwrap()
    }

    fn pool(pool: &str, sub_pool: &str) -> RequestPool {
        RequestPool {
            pool: pool.to_owned(),
            sub_pool: sub_pool.to_owned(),
            ..RequestPool::default()
        }
    }

    fn address(pool_id: &str, address: &str, gateway: bool) -> RequestAddress {
        RequestAddress {
            pool_id: pool_id.to_owned(),
            address: address.to_owned(),
            options: gateway.then(|| {
                HashMap::from([(
                    REQUEST_ADDRESS_TYPE.to_owned(),
                    GATEWAY_ADDRESS_TYPE.to_owned(),
                )])
            }),
        }
    }

    #[test]
    fn pools_table() {
        let with_default = Allocator::new(net("10.32.0.0/12"), net("10.40.0.0/16")).unwrap();
        // Ok: the pool id and the subnet.
        type Want = Result<(&'static str, &'static str), &'static str>;
        let cases: &[(RequestPool, Want)] = &[
            (pool("", ""), Ok(("weave:10.40.0.0/16", "10.40.0.0/16"))),
            (
                pool("10.33.0.0/24", ""),
                Ok(("weave:10.33.0.0/24", "10.33.0.0/24")),
            ),
            (
                pool("10.33.0.0/24", "10.33.0.128/25"),
                Ok(("weave:10.33.0.0/24:10.33.0.128/25", "10.33.0.0/24")),
            ),
            (
                pool("10.32.0.0/12", ""),
                Ok(("weave:10.32.0.0/12", "10.32.0.0/12")),
            ),
            (
                pool("192.168.7.0/24", ""),
                Err("subnet 192.168.7.0/24 is not inside the weave range 10.32.0.0/12"),
            ),
            (
                pool("10.0.0.0/8", ""),
                Err("subnet 10.0.0.0/8 is not inside the weave range 10.32.0.0/12"),
            ),
            (
                pool("10.33.0.1/24", ""),
                Err("invalid subnet - bits after network prefix are not all zero: 10.33.0.1/24"),
            ),
            (
                pool("10.33.0.0/24", "10.34.0.0/25"),
                Err("ip range 10.34.0.0/25 is not inside subnet 10.33.0.0/24"),
            ),
            (
                RequestPool {
                    v6: true,
                    ..RequestPool::default()
                },
                Err("weave does not allocate IPv6 addresses"),
            ),
        ];
        for (req, want) in cases {
            let got = request_pool(&with_default, req).map_err(|e| e.to_string());
            match want {
                Ok((id, subnet)) => {
                    let got = got.unwrap_or_else(|e| panic!("{req:?}: {e}"));
                    assert_eq!(got["PoolID"], *id, "{req:?}");
                    assert_eq!(got["Pool"], *subnet, "{req:?}");
                    assert_eq!(got["Data"][GATEWAY_ADDRESS_TYPE], *subnet, "{req:?}");
                    assert_eq!(Pool::parse_id(id).unwrap().id(), *id);
                }
                Err(message) => assert_eq!(got.unwrap_err(), *message, "{req:?}"),
            }
        }
    }

    #[test]
    fn pool_ids_round_trip_and_foreign_ones_are_refused() {
        for bad in [
            "",
            "weave:",
            "weave:10.0.0.1/8",
            "default:10.0.0.0/8",
            "weave:x:y",
        ] {
            assert_eq!(
                Pool::parse_id(bad).unwrap_err().to_string(),
                format!("unknown pool id {bad:?}")
            );
        }
    }

    #[test]
    fn addresses_come_from_the_shared_allocator() {
        let mut a = alloc();
        // An address the proxy allocated is never handed out again.
        a.allocate("proxied", net("10.32.0.0/12"), true).unwrap();
        let id = "weave:10.32.0.0/12";
        let first = request_address(&mut a, &address(id, "", false)).unwrap();
        assert_eq!(first, net("10.32.0.2/12"));
        assert_eq!(a.owner_of(first.addr()), Some("plugin:10.32.0.2"));
        let second = request_address(&mut a, &address(id, "", false)).unwrap();
        assert_eq!(second, net("10.32.0.3/12"));
        // `docker run --ip`: a claim, refused when the address is taken.
        assert_eq!(
            request_address(&mut a, &address(id, "10.32.9.9", false)).unwrap(),
            net("10.32.9.9/12")
        );
        assert_eq!(
            request_address(&mut a, &address(id, "10.32.0.1", false))
                .unwrap_err()
                .to_string(),
            "address 10.32.0.1/12 is already owned by proxied"
        );
        assert_eq!(
            request_address(&mut a, &address(id, "10.32.9.9", false))
                .unwrap_err()
                .to_string(),
            "address 10.32.9.9 is already in use by another endpoint"
        );
        assert_eq!(
            request_address(&mut a, &address(id, "10.48.0.1", false))
                .unwrap_err()
                .to_string(),
            "address 10.48.0.1 is not a host address of subnet 10.32.0.0/12"
        );
        // Released addresses are reused; unknown releases are no error and free nothing.
        let release = |a: &mut Allocator, ip: &str| {
            release_address(
                a,
                &ReleaseAddress {
                    pool_id: id.to_owned(),
                    address: ip.to_owned(),
                },
            )
            .unwrap()
            .is_some()
        };
        assert!(release(&mut a, "10.32.0.2"));
        assert!(!release(&mut a, "10.32.0.2"));
        assert!(
            !release(&mut a, "10.32.0.1"),
            "the proxy's address is not ours"
        );
        assert_eq!(a.owner_of(net("10.32.0.1/32").addr()), Some("proxied"));
        assert_eq!(
            request_address(&mut a, &address(id, "", false)).unwrap(),
            net("10.32.0.2/12")
        );
    }

    #[test]
    fn ranges_and_gateways() {
        let mut a = alloc();
        let id = "weave:10.33.0.0/24:10.33.0.128/25";
        assert_eq!(
            request_address(&mut a, &address(id, "", false)).unwrap(),
            net("10.33.0.129/24")
        );
        // A gateway without an address takes nothing and is the subnet's own address.
        assert_eq!(
            request_address(&mut a, &address(id, "", true)).unwrap(),
            net("10.33.0.0/24")
        );
        assert_eq!(a.owners().count(), 1);
        // A named gateway is claimed, so no endpoint gets it.
        assert_eq!(
            request_address(&mut a, &address(id, "10.33.0.130", true)).unwrap(),
            net("10.33.0.130/24")
        );
        assert_eq!(
            request_address(&mut a, &address(id, "", false)).unwrap(),
            net("10.33.0.131/24")
        );
        let mut small = Allocator::new(net("10.32.0.0/12"), net("10.32.0.0/12")).unwrap();
        let tiny = "weave:10.34.0.0/30";
        request_address(&mut small, &address(tiny, "", false)).unwrap();
        request_address(&mut small, &address(tiny, "", false)).unwrap();
        assert_eq!(
            request_address(&mut small, &address(tiny, "", false))
                .unwrap_err()
                .to_string(),
            "no free address in 10.34.0.0/30: all 2 host addresses are allocated"
        );
        assert_eq!(
            request_address(&mut small, &address("nope", "", false))
                .unwrap_err()
                .to_string(),
            "unknown pool id \"nope\""
        );
    }
}
