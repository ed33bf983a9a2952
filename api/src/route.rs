//! The router's paths and the calls made on them: Weave Net 2.8's routes (the router serves the
//! patterns, clients build [`Call`]s), the ids with a meaning of their own, and the kinds of
//! failure a status code stands for.
//!
//! Bodies are form-encoded, also on `PUT`, as the original's clients sent them. A parameter of a
//! `DELETE` goes in the query string: Go's router read form bodies only for `POST`, `PUT` and
//! `PATCH`, and ours reads them the same way.

use std::fmt;
use std::net::Ipv4Addr;

use http::{Method, StatusCode};

use crate::cidr::CidrToken;

/// `GET`: the router's status text (503 while IPAM loads its saved state).
pub const STATUS: &str = "/status";
/// `GET`: the default subnet.
pub const DEFAULT_SUBNET: &str = "/ipinfo/defaultsubnet";
/// `GET`: every allocation.
pub const IPS: &str = "/ip";
/// `POST` allocates in the default subnet, `GET` looks up, `DELETE` frees all of `{id}`'s.
pub const IP_OF: &str = "/ip/{id}";
/// `DELETE`: frees one address of `{id}`.
pub const IP_ONE: &str = "/ip/{id}/{ip}";
/// `POST` allocates in subnet `{ip}/{prefixlen}`, `PUT` claims the address, `GET` looks up.
pub const IP_IN: &str = "/ip/{id}/{ip}/{prefixlen}";
/// `GET`: weaveDNS's domain.
pub const DOMAIN: &str = "/domain";
/// `GET`: weaveDNS's address.
pub const DNS_ADDRESS: &str = "/dns-address";
/// `GET`: weaveDNS's address and port.
pub const DNS_ADDRESS_PORT: &str = "/dns-address-port";
/// `GET` lists the names, `DELETE` removes them (optionally only `?fqdn=`).
pub const NAMES: &str = "/name";
/// `DELETE`: every name of `{id}`.
pub const NAMES_OF: &str = "/name/{id}";
/// `PUT` registers (form `fqdn=`), `DELETE` removes `{id}`'s names on `{ip}`.
pub const NAME: &str = "/name/{id}/{ip}";
/// `GET`: the peers of a network of several hosts and whether each is alive (404 alone).
pub const STATUS_PEERS: &str = "/status/peers";
/// `GET`: per peer, whether its VXLAN endpoint answers a probe, full-size frames included
/// (404 alone).
pub const STATUS_CONNECTIONS: &str = "/status/connections";
/// `GET`: the address blocks per peer (404 alone).
pub const STATUS_IPAM: &str = "/status/ipam";
/// `DELETE`: `weave rmpeer`: takes over a dead peer's blocks and removes its names (`?force=true`
/// even while it is alive). 200 `N IPs taken over from X`.
pub const PEER: &str = "/peer/{peer}";

/// `POST` on the peer port (6783), asked by other hosts' routers: `{"endpoints": [...]}`, the
/// store this router uses; one still alone makes a store on its host first.
pub const PEER_STORE: &str = "/store";
/// `POST ?peer=HOST`: `weave connect HOST`: joins (or adds) the store HOST's router uses, then
/// the router starts again on it. 200 with what changed.
pub const CONNECT: &str = "/connect";
/// `POST ?peer=HOST`: `weave forget HOST`: the store endpoints on HOST are no longer used after
/// the router's next start. 200 with what changed.
pub const FORGET: &str = "/forget";

/// `GET`: Prometheus metrics (text exposition).
pub const METRICS: &str = "/metrics";

/// The id the host's own addresses (`weave expose`) are held under.
pub const EXPOSE_ID: &str = "weave:expose";
/// The id of names registered for no container (`weave dns-add IP -h NAME`).
pub const EXTERN_ID: &str = "weave:extern";
/// The id a caller uses when it does not know the container (`api.NoContainerID` in the
/// original): a claim under it is recorded under the address's own text.
pub const NO_CONTAINER_ID: &str = "_";

/// One request to the router: method, path (with any query) and form body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    /// `application/x-www-form-urlencoded`; empty for none.
    pub form: String,
}

impl Call {
    /// Any call, `form` encoded as the router reads it.
    pub fn new(method: Method, path: impl Into<String>, form: &[(&str, &str)]) -> Self {
        Self {
            method,
            path: path.into(),
            form: encode(form),
        }
    }

    /// Gets container `id` the address `token` asks for: `POST /ip/{id}` (default subnet),
    /// `POST /ip/{id}/{net}/{len}` (any in a subnet) or `PUT /ip/{id}/{ip}/{len}` (a claim).
    /// `check_alive` makes the router cancel it when the container no longer runs.
    pub fn address(id: &str, token: &CidrToken, check_alive: bool) -> Self {
        let (method, path) = match token {
            CidrToken::DefaultSubnet => (Method::POST, format!("/ip/{id}")),
            CidrToken::Subnet(net) => (Method::POST, format!("/ip/{id}/{net}")),
            CidrToken::Address(cidr) => (Method::PUT, format!("/ip/{id}/{cidr}")),
        };
        Self::new(method, path, alive(check_alive))
    }

    /// `weave rmpeer`: `DELETE /peer/{peer}`, refused while it is alive unless `force`.
    pub fn remove_peer(peer: &str, force: bool) -> Self {
        let path = format!("/peer/{peer}");
        Self::new(
            Method::DELETE,
            if force {
                format!("{path}?force=true")
            } else {
                path
            },
            &[],
        )
    }

    /// `weave connect HOST`: `POST /connect?peer=HOST`.
    pub fn connect(peer: &str) -> Self {
        Self::new(
            Method::POST,
            format!("{CONNECT}?peer={}", query_value(peer)),
            &[],
        )
    }

    /// `weave forget HOST`: `POST /forget?peer=HOST`.
    pub fn forget(peer: &str) -> Self {
        Self::new(
            Method::POST,
            format!("{FORGET}?peer={}", query_value(peer)),
            &[],
        )
    }

    /// Frees one address of `id`: `DELETE /ip/{id}/{ip}`.
    pub fn release(id: &str, ip: Ipv4Addr) -> Self {
        Self::new(Method::DELETE, format!("/ip/{id}/{ip}"), &[])
    }

    /// Registers `fqdn` for `id` on `ip`: `PUT /name/{id}/{ip}` with `fqdn=`.
    pub fn register_name(id: &str, ip: Ipv4Addr, fqdn: &str, check_alive: bool) -> Self {
        let mut form = vec![("fqdn", fqdn)];
        form.extend_from_slice(alive(check_alive));
        Self::new(Method::PUT, format!("/name/{id}/{ip}"), &form)
    }

    /// Removes `id`'s names on `ip` (only `fqdn`, when given): `DELETE /name/{id}/{ip}`.
    pub fn deregister_name(id: &str, ip: Ipv4Addr, fqdn: Option<&str>) -> Self {
        let mut path = format!("/name/{id}/{ip}");
        if let Some(fqdn) = fqdn {
            path.push('?');
            path.push_str(&encode(&[("fqdn", fqdn)]));
        }
        Self::new(Method::DELETE, path, &[])
    }

    /// `GET path`, for the paths that take nothing.
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path, &[])
    }
}

impl fmt::Display for Call {
    /// `METHOD /path`, as errors and logs name a call.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn alive(check_alive: bool) -> &'static [(&'static str, &'static str)] {
    if check_alive {
        &[("check-alive", "true")]
    } else {
        &[]
    }
}

/// A form body, `application/x-www-form-urlencoded`.
pub fn encode(form: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// What a failure is, as its status code says it: the router answers with the original's
/// texts (clients such as the `weave` script print them), so the kind travels in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be done: a bad address or subnet, an address in use, a full subnet
    /// (400).
    Refused,
    /// Nothing at that path: an unknown address to free, or weaveDNS not running (404).
    NotFound,
    /// The router is still loading its saved state (503).
    NotReady,
    /// The router failed, e.g. could not save its state (500).
    Internal,
}

impl ErrorKind {
    /// The status the router answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Refused => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind a status stands for; `None` for a success, and a status no kind has is
    /// [`ErrorKind::Internal`].
    pub fn of(status: StatusCode) -> Option<Self> {
        if status.is_success() {
            return None;
        }
        Some(match status {
            StatusCode::BAD_REQUEST => Self::Refused,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::SERVICE_UNAVAILABLE => Self::NotReady,
            _ => Self::Internal,
        })
    }
}

/// `value` percent-encoded for a query string: host names and addresses pass as they are.
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv4Net;

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn each_token_maps_to_its_documented_request() {
        let cases = [
            (CidrToken::DefaultSubnet, "POST /ip/abc"),
            (
                CidrToken::Subnet(net("10.32.2.0/24")),
                "POST /ip/abc/10.32.2.0/24",
            ),
            (
                CidrToken::Address(net("10.2.1.1/24")),
                "PUT /ip/abc/10.2.1.1/24",
            ),
        ];
        for (token, want) in cases {
            let call = Call::address("abc", &token, true);
            assert_eq!(call.to_string(), want);
            assert_eq!(call.form, "check-alive=true");
            assert_eq!(Call::address("abc", &token, false).form, "");
        }
    }

    #[test]
    fn names_are_sent_in_the_form_and_removed_by_query() {
        let ip = "10.32.0.1".parse().unwrap();
        let put = Call::register_name("c1", ip, "a b.weave.local.", true);
        assert_eq!(put.to_string(), "PUT /name/c1/10.32.0.1");
        assert_eq!(put.form, "fqdn=a+b.weave.local.&check-alive=true");
        let delete = Call::deregister_name("c1", ip, Some("a.weave.local."));
        assert_eq!(delete.path, "/name/c1/10.32.0.1?fqdn=a.weave.local.");
        assert_eq!(delete.form, "");
        let all = Call::deregister_name("c1", ip, None);
        assert_eq!(all.path, "/name/c1/10.32.0.1");
        assert_eq!(
            Call::release("c1", ip).to_string(),
            "DELETE /ip/c1/10.32.0.1"
        );
    }

    #[test]
    fn kinds_travel_in_the_status() {
        for kind in [
            ErrorKind::Refused,
            ErrorKind::NotFound,
            ErrorKind::NotReady,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::of(kind.status()), Some(kind));
        }
        assert_eq!(ErrorKind::of(StatusCode::NO_CONTENT), None);
        assert_eq!(
            ErrorKind::of(StatusCode::IM_A_TEAPOT),
            Some(ErrorKind::Internal)
        );
    }
}
