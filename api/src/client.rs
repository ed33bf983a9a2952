//! A small typed client of the router's API: each call the proxy and `weave` make, with its
//! answer read as the contract says. How a call reaches the router is a [`Transport`]: plain
//! HTTP ([`HttpTransport`]) here, a relay through the router's container in `weave`.
//!
//! It sends exactly what the original's Go client sent, so it works against a real Weave Net
//! router as well as ours: form bodies (also on `PUT`), `check-alive=true` on container
//! requests, 200 and 204 as the only successes, and the router's `200 cancelled` quirk read as a
//! cancellation rather than an address.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::cidr::CidrToken;
use crate::route::{self, Call, ErrorKind};

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
/// costs next to nothing, and a client that calls nothing for a while should hold nothing open.
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
        kind: ErrorKind,
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
    /// A success whose body is not what the API promises.
    #[error("weave router answered {call} with {body:?}, which is not {expected}")]
    Garbled {
        call: String,
        body: String,
        expected: &'static str,
    },
}

impl RouterError {
    /// The kind of a refusal; `None` for the failures that are not the router's answer.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// An answer: its status and its body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// 200 and 204 are the API's successes.
    pub fn is_success(&self) -> bool {
        self.status == StatusCode::OK || self.status == StatusCode::NO_CONTENT
    }

    /// What an error answer says: the `message` of a JSON body (`{"message": ...}`, Docker's
    /// shape), else the body itself.
    pub fn message(self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or(self.body)
    }
}

/// How a [`Call`] reaches the router.
pub trait Transport: Send + Sync {
    /// Where the router is, for messages.
    fn addr(&self) -> &str;

    /// Sends `call`; any answer, error or not, is `Ok`.
    ///
    /// # Errors
    /// [`RouterError::Down`] when nothing answers, [`RouterError::Timeout`] when the answer
    /// does not come.
    fn send(&self, call: &Call) -> impl Future<Output = Result<Answer, RouterError>> + Send;
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

/// The router over plain HTTP, with a small pool of connections.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    addr: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpTransport {
    /// The router at `addr` (normalised as `WEAVE_HTTP_ADDR` is).
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
}

impl Transport for HttpTransport {
    fn addr(&self) -> &str {
        &self.addr
    }

    async fn send(&self, call: &Call) -> Result<Answer, RouterError> {
        let request = Request::builder()
            .method(call.method.clone())
            .uri(format!("http://{}{}", self.addr, call.path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(call.form.clone())))
            .map_err(|err| RouterError::Down {
                addr: self.addr.clone(),
                reason: format!("bad request {call}: {err}"),
            })?;
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
            Ok(Answer {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RouterError::Timeout {
                addr: self.addr.clone(),
                call: call.to_string(),
                after: REQUEST_TIMEOUT,
            })?
    }
}

/// The innermost error message, which is the one that says what happened (`Connection refused`).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Where containers find weaveDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsInfo {
    /// The domain it answers for, `weave.local.`.
    pub domain: String,
    /// Its address, given to containers as their name server.
    pub server: IpAddr,
}

/// The router's API, reached through `T`.
#[derive(Debug, Clone)]
pub struct RouterClient<T = HttpTransport> {
    transport: T,
}

impl RouterClient {
    /// A client for the router at `addr` over HTTP (normalised as `WEAVE_HTTP_ADDR` is).
    pub fn new(addr: &str) -> Self {
        Self::over(HttpTransport::new(addr))
    }
}

impl<T: Transport> RouterClient<T> {
    /// A client whose calls go through `transport`.
    pub fn over(transport: T) -> Self {
        Self { transport }
    }

    /// The router's address.
    pub fn addr(&self) -> &str {
        self.transport.addr()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Any call; any answer, error or not.
    ///
    /// # Errors
    /// When the router does not answer.
    pub async fn call(&self, call: &Call) -> Result<Answer, RouterError> {
        self.transport.send(call).await
    }

    /// Allocates or claims the address `token` asks for, for container `id` (its full id),
    /// cancelled by the router when the container does not run.
    ///
    /// # Errors
    /// See [`RouterError`].
    pub async fn address(&self, id: &str, token: &CidrToken) -> Result<Ipv4Net, RouterError> {
        self.address_for(id, token, true).await
    }

    /// [`RouterClient::address`] for an id that is not a container (`weave expose`'s), which
    /// the router must not check.
    ///
    /// # Errors
    /// See [`RouterError`].
    pub async fn address_for(
        &self,
        id: &str,
        token: &CidrToken,
        check_alive: bool,
    ) -> Result<Ipv4Net, RouterError> {
        let call = Call::address(id, token, check_alive);
        let answer = self.call(&call).await?;
        interpret_address(self.addr(), &call, token, &answer)
    }

    /// Frees one address of `id`, leaving its others.
    ///
    /// # Errors
    /// When the router is unreachable or refuses.
    pub async fn release_addr(&self, id: &str, ip: Ipv4Addr) -> Result<(), RouterError> {
        let call = Call::release(id, ip);
        let answer = self.call(&call).await?;
        self.success(&call, answer).map(drop)
    }

    /// Registers `fqdn` for `ip` of `id`. `Ok(false)` when the router runs without weaveDNS
    /// (404); the router ignores names outside its domain.
    ///
    /// # Errors
    /// When the router is unreachable or refuses.
    pub async fn register_name(
        &self,
        id: &str,
        ip: Ipv4Addr,
        fqdn: &str,
        check_alive: bool,
    ) -> Result<bool, RouterError> {
        let call = Call::register_name(id, ip, fqdn, check_alive);
        self.unless_off(&call).await
    }

    /// Removes the names of `id` on `ip` (only `fqdn`, when given). `Ok(false)` when the router
    /// runs without weaveDNS.
    ///
    /// # Errors
    /// When the router is unreachable or refuses.
    pub async fn deregister_name(
        &self,
        id: &str,
        ip: Ipv4Addr,
        fqdn: Option<&str>,
    ) -> Result<bool, RouterError> {
        let call = Call::deregister_name(id, ip, fqdn);
        self.unless_off(&call).await
    }

    /// weaveDNS's domain and address; `None` when the router runs without it (404 for both).
    ///
    /// # Errors
    /// When the router is unreachable or answers something else.
    pub async fn dns(&self) -> Result<Option<DnsInfo>, RouterError> {
        let (domain_call, server_call) = (Call::get(route::DOMAIN), Call::get(route::DNS_ADDRESS));
        let (domain, server) = tokio::try_join!(self.text(&domain_call), self.text(&server_call))?;
        let (Some(domain), Some(server)) = (domain, server) else {
            return Ok(None);
        };
        let server = server.trim().parse().map_err(|_| RouterError::Garbled {
            call: server_call.to_string(),
            body: server.clone(),
            expected: "an IP address",
        })?;
        Ok(Some(DnsInfo {
            domain: domain.trim().to_owned(),
            server,
        }))
    }

    /// The router's status text, and whether it is ready (200; 503 while it loads its state).
    ///
    /// # Errors
    /// When the router is unreachable or answers anything else.
    pub async fn status(&self) -> Result<(bool, String), RouterError> {
        let call = Call::get(route::STATUS);
        let answer = self.call(&call).await?;
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            return Ok((false, answer.body));
        }
        self.success(&call, answer).map(|body| (true, body))
    }

    /// `GET`: the body, `None` on 404 (a feature the router runs without).
    async fn text(&self, call: &Call) -> Result<Option<String>, RouterError> {
        let answer = self.call(call).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.success(call, answer).map(Some)
    }

    /// A name call: a router without weaveDNS answers 404, which is not a failure.
    async fn unless_off(&self, call: &Call) -> Result<bool, RouterError> {
        let answer = self.call(call).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.success(call, answer).map(|_| true)
    }

    fn success(&self, call: &Call, answer: Answer) -> Result<String, RouterError> {
        if answer.is_success() {
            return Ok(answer.body);
        }
        Err(refused(self.addr(), call, &answer))
    }
}

fn refused(addr: &str, call: &Call, answer: &Answer) -> RouterError {
    RouterError::Refused {
        addr: addr.to_owned(),
        call: call.to_string(),
        kind: ErrorKind::of(answer.status).unwrap_or(ErrorKind::Internal),
        status: answer.status,
        body: answer.body.trim_end().to_owned(),
    }
}

/// What an answer to [`Call::address`] means: the address handed out (for `POST`), or the one
/// asked for (a `PUT` claim has nothing to read).
///
/// # Errors
/// [`RouterError::Refused`] for any status but 200/204, [`RouterError::Cancelled`] for the
/// `cancelled` body, [`RouterError::Garbled`] when a `POST` answer is not `ip/len`.
pub fn interpret_address(
    addr: &str,
    call: &Call,
    token: &CidrToken,
    answer: &Answer,
) -> Result<Ipv4Net, RouterError> {
    if !answer.is_success() {
        return Err(refused(addr, call, answer));
    }
    let body = answer.body.trim();
    if body == "cancelled" {
        return Err(RouterError::Cancelled {
            call: call.to_string(),
        });
    }
    match token {
        CidrToken::Address(cidr) => Ok(*cidr),
        CidrToken::DefaultSubnet | CidrToken::Subnet(_) => {
            body.parse().map_err(|_| RouterError::Garbled {
                call: call.to_string(),
                body: body.to_owned(),
                expected: "an address/prefix",
            })
        }
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
    fn interprets_answers() {
        let subnet = CidrToken::Subnet(net("10.32.2.0/24"));
        let claim = CidrToken::Address(net("10.2.1.1/24"));
        let ok = |token: &CidrToken, status: u16, body: &str| {
            let answer = Answer {
                status: StatusCode::from_u16(status).unwrap(),
                body: body.to_owned(),
            };
            interpret_address("a", &Call::address("c", token, true), token, &answer)
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
        let refused = ok(&claim, 400, "Unable to claim: address in use\n").unwrap_err();
        assert_eq!(refused.kind(), Some(ErrorKind::Refused));
        let text = refused.to_string();
        assert!(
            text.contains("400") && text.ends_with("address in use"),
            "{text}"
        );
    }
}
