//! The client of Weave Net's router HTTP API that the proxy uses: address allocation and claims,
//! the release of what a failed attach took, weaveDNS's domain and address, and names.
//!
//! It sends exactly what the original's Go client sent, so it works against a real Weave Net router
//! as well as ours: form-encoded bodies (also on `PUT`), `check-alive=true` on every container
//! request, 200 and 204 as the only successes, and the router's `200 cancelled` quirk read as a
//! cancellation rather than an address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::cidr::CidrToken;
use crate::upstream::root_cause;

/// The router's default control address (`WEAVE_HTTP_ADDR` unset).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6784";
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: &str = "6784";

/// The original's `curl --connect-timeout 3`: a router that is not there is reported at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The bound on a whole request, answer included: a router that accepts and never answers must
/// not hold an attach (or a sweep, or a `weave` command) for ever. Every call the router serves
/// is a map lookup or a small file write; seconds are plenty.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections to the router are closed after this long: reopening one on the loopback
/// costs next to nothing, and a proxy that attaches nothing for a while should hold nothing open.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// A failed router call.
#[derive(Debug, Error)]
pub enum RouterError {
    /// Nothing answers at the address.
    #[error("weave router not running at {addr}: launch it with `weave launch-router` ({reason})")]
    Down { addr: String, reason: String },
    /// The router refused the request; `body` is its own explanation.
    #[error("weave router at {addr} answered {call} with {status}: {body}")]
    Refused {
        addr: String,
        call: String,
        status: StatusCode,
        body: String,
    },
    /// The router accepted the request but did not answer it in time.
    #[error("weave router at {addr} did not answer {call} within {after:?}")]
    Timeout {
        addr: String,
        call: String,
        after: Duration,
    },
    /// The router cancelled the request because the container is no longer running.
    #[error("weave router cancelled {call}: the container is not running")]
    Cancelled { call: String },
    /// A success whose body is not the address the API promises.
    #[error("weave router answered {call} with {body:?}, which is not an address/prefix")]
    Garbled { call: String, body: String },
}

/// Normalises `WEAVE_HTTP_ADDR` the way the original's client did: empty means the default,
/// a bare host gets the default port, and anything with more than one colon is used verbatim.
pub fn normalise_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.matches(':').count() > 1 {
        return addr.to_owned();
    }
    let (host, port) = addr.split_once(':').unwrap_or((addr, ""));
    let host = if host.is_empty() { DEFAULT_HOST } else { host };
    let port = if port.is_empty() { DEFAULT_PORT } else { port };
    format!("{host}:{port}")
}

/// The request that gets a container an address for one `WEAVE_CIDR` token: method and path.
pub fn address_request(id: &str, token: &CidrToken) -> (Method, String) {
    match token {
        CidrToken::DefaultSubnet => (Method::POST, format!("/ip/{id}")),
        CidrToken::Subnet(net) => (Method::POST, format!("/ip/{id}/{net}")),
        CidrToken::Address(cidr) => (Method::PUT, format!("/ip/{id}/{cidr}")),
    }
}

/// What a successful address request means: the address handed out (for `POST`), or nothing
/// to read (for `PUT`, whose address is the one asked for).
///
/// # Errors
/// [`RouterError::Refused`] for any status but 200/204, [`RouterError::Cancelled`] for the
/// `cancelled` body, [`RouterError::Garbled`] when a `POST` answer is not `ip/len`.
pub fn interpret(
    addr: &str,
    call: &str,
    token: &CidrToken,
    status: StatusCode,
    body: &str,
) -> Result<Ipv4Net, RouterError> {
    if status != StatusCode::OK && status != StatusCode::NO_CONTENT {
        return Err(RouterError::Refused {
            addr: addr.to_owned(),
            call: call.to_owned(),
            status,
            body: body.trim_end().to_owned(),
        });
    }
    let body = body.trim();
    if body == "cancelled" {
        return Err(RouterError::Cancelled {
            call: call.to_owned(),
        });
    }
    match token {
        CidrToken::Address(cidr) => Ok(*cidr),
        CidrToken::DefaultSubnet | CidrToken::Subnet(_) => {
            body.parse().map_err(|_| RouterError::Garbled {
                call: call.to_owned(),
                body: body.to_owned(),
            })
        }
    }
}

/// Where containers find weaveDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsInfo {
    /// The domain it answers for, `weave.local.`.
    pub domain: String,
    /// Its address, given to containers as their name server.
    pub server: IpAddr,
}

/// The router's HTTP API at one address.
#[derive(Debug, Clone)]
pub struct RouterClient {
    addr: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RouterClient {
    /// A client for the router at `addr` (normalised as `WEAVE_HTTP_ADDR` is).
    pub fn new(addr: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Self {
            addr: normalise_addr(addr),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(connector),
        }
    }

    /// The normalised address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Allocates or claims the address `token` asks for, for container `id` (its full id).
    ///
    /// # Errors
    /// See [`RouterError`].
    pub async fn address(&self, id: &str, token: &CidrToken) -> Result<Ipv4Net, RouterError> {
        let (method, path) = address_request(id, token);
        let call = format!("{method} {path}");
        let (status, body) = self
            .call(method, &path, Bytes::from_static(b"check-alive=true"))
            .await?;
        interpret(&self.addr, &call, token, status, &body)
    }

    /// weaveDNS's domain (`GET /domain`) and address (`GET /dns-address`); `None` when the
    /// router runs without DNS (it answers 404 for both).
    ///
    /// # Errors
    /// When the router is unreachable or answers something else.
    pub async fn dns(&self) -> Result<Option<DnsInfo>, RouterError> {
        let (domain, server) = tokio::try_join!(self.get("/domain"), self.get("/dns-address"))?;
        let (Some(domain), Some(server)) = (domain, server) else {
            return Ok(None);
        };
        let server = server.trim().parse().map_err(|_| RouterError::Garbled {
            call: "GET /dns-address".to_owned(),
            body: server.clone(),
        })?;
        Ok(Some(DnsInfo {
            domain: domain.trim().to_owned(),
            server,
        }))
    }

    /// Registers `fqdn` for `addr` of container `id` (`PUT /name/{id}/{ip}`, form `fqdn=`). The
    /// router ignores names outside its domain; one without DNS (404) is no error.
    ///
    /// # Errors
    /// When the router is unreachable or refuses.
    pub async fn register_name(
        &self,
        id: &str,
        addr: Ipv4Addr,
        fqdn: &str,
    ) -> Result<(), RouterError> {
        let path = format!("/name/{id}/{addr}");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("fqdn", fqdn)
            .append_pair("check-alive", "true")
            .finish();
        let (status, body) = self.call(Method::PUT, &path, Bytes::from(form)).await?;
        self.success_unless_off(status, body, || format!("PUT {path}"))
    }

    /// `GET path`: the body on 200, `None` on 404 (a feature the router runs without).
    async fn get(&self, path: &str) -> Result<Option<String>, RouterError> {
        let (status, body) = self.call(Method::GET, path, Bytes::new()).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.success(status, body.clone(), || format!("GET {path}"))?;
        Ok(Some(body))
    }

    /// A router running without DNS answers the name paths 404: there is nothing to register.
    fn success_unless_off(
        &self,
        status: StatusCode,
        body: String,
        call: impl FnOnce() -> String,
    ) -> Result<(), RouterError> {
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.success(status, body, call)
    }

    fn success(
        &self,
        status: StatusCode,
        body: String,
        call: impl FnOnce() -> String,
    ) -> Result<(), RouterError> {
        if status == StatusCode::OK || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        Err(RouterError::Refused {
            addr: self.addr.clone(),
            call: call(),
            status,
            body: body.trim_end().to_owned(),
        })
    }

    /// Frees one address of `id` (`DELETE /ip/{id}/{ip}`), leaving its others.
    ///
    /// # Errors
    /// When the router is unreachable or refuses for another reason.
    pub async fn release_addr(&self, id: &str, addr: Ipv4Addr) -> Result<(), RouterError> {
        let path = format!("/ip/{id}/{addr}");
        let (status, body) = self.call(Method::DELETE, &path, Bytes::new()).await?;
        self.success(status, body, || format!("DELETE {path}"))
    }

    /// Removes the names of container `id` on address `addr` (`DELETE /name/{id}/{ip}`).
    ///
    /// # Errors
    /// When the router is unreachable or refuses.
    pub async fn deregister_name(&self, id: &str, addr: Ipv4Addr) -> Result<(), RouterError> {
        let path = format!("/name/{id}/{addr}");
        let (status, body) = self.call(Method::DELETE, &path, Bytes::new()).await?;
        self.success_unless_off(status, body, || format!("DELETE {path}"))
    }

    /// Any request: `form` is the form-encoded body. Returns the status and the body as text.
    ///
    /// # Errors
    /// [`RouterError::Down`] when nothing answers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        form: Bytes,
    ) -> Result<(StatusCode, String), RouterError> {
        let method_shown = method.clone();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(form))
            .expect("a router request built from a normalised address is valid");
        let down = |reason: String| RouterError::Down {
            addr: self.addr.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| down(root_cause(&err)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| down(err.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RouterError::Timeout {
                addr: self.addr.clone(),
                call: format!("{method_shown} {path}"),
                after: REQUEST_TIMEOUT,
            })??;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_addresses_like_the_original_client() {
        let cases = [
            ("", "127.0.0.1:6784"),
            ("10.0.0.5", "10.0.0.5:6784"),
            ("10.0.0.5:7000", "10.0.0.5:7000"),
            (":7000", "127.0.0.1:7000"),
            ("weave:", "weave:6784"),
            ("[::1]:6784", "[::1]:6784"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_addr(input), want, "{input:?}");
        }
    }

    #[test]
    fn each_token_maps_to_its_documented_request() {
        let cases = [
            (CidrToken::DefaultSubnet, Method::POST, "/ip/abc"),
            (
                CidrToken::Subnet(net("10.32.2.0/24")),
                Method::POST,
                "/ip/abc/10.32.2.0/24",
            ),
            (
                CidrToken::Address(net("10.2.1.1/24")),
                Method::PUT,
                "/ip/abc/10.2.1.1/24",
            ),
        ];
        for (token, method, path) in cases {
            assert_eq!(address_request("abc", &token), (method, path.to_owned()));
        }
    }

    #[test]
    fn interprets_answers() {
        let subnet = CidrToken::Subnet(net("10.32.2.0/24"));
        let claim = CidrToken::Address(net("10.2.1.1/24"));
        let ok = |token: &CidrToken, status: u16, body: &str| {
            interpret("a", "c", token, StatusCode::from_u16(status).unwrap(), body)
        };
        assert_eq!(
            ok(&subnet, 200, "10.32.2.1/24").unwrap(),
            net("10.32.2.1/24")
        );
        assert_eq!(ok(&claim, 204, "").unwrap(), net("10.2.1.1/24"));
        assert!(matches!(
            ok(&subnet, 200, "cancelled"),
            Err(RouterError::Cancelled { .. })
        ));
        // The original's claim ignored the body, so a cancelled claim looked like success.
        assert!(matches!(
            ok(&claim, 200, "cancelled"),
            Err(RouterError::Cancelled { .. })
        ));
        assert!(matches!(
            ok(&subnet, 200, "what"),
            Err(RouterError::Garbled { .. })
        ));
        let refused = ok(
            &claim,
            400,
            "Unable to claim: address 10.2.1.1/24 already in use by x\n",
        )
        .unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("400") && text.ends_with("already in use by x"),
            "{text}"
        );
    }
}
