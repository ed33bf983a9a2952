//! The client: one HTTP connection pool, the endpoints, and the one way a unary call is made
//! (bounded in time, failed over to the next endpoint when the member cannot serve it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::endpoints::Endpoints;
use crate::wire;

/// The bounds on talking to one member.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A member whose port does not accept within this is skipped. On a LAN a live member
    /// accepts in milliseconds; a dead host's SYNs go unanswered for ever.
    pub connect: Duration,
    /// A whole unary request, answer included. etcd gives up on a write without quorum after
    /// about its own 7 s (`request timed out`); waiting less moves on to a member that has
    /// quorum sooner.
    pub request: Duration,
    /// A watch quiet for this long has its member asked for its status: a member that does not
    /// answer, or has no leader, is left for another (see [`crate::watch`]).
    pub watch_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
            watch_idle: Duration::from_secs(10),
        }
    }
}

/// A pooled connection is dropped after this long unused; reopening one is cheap, and a pool
/// that outlives a member's restart only yields a failed first request.
const POOL_IDLE: Duration = Duration::from_secs(30);

type Http = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// An etcd v3 client over the JSON gateway. Cheap to clone: clones share the pool and the
/// endpoint in use.
///
/// A request that a member refuses to connect, does not answer in time, or cannot serve
/// (no leader, `request timed out`) is sent to the next member. A write that timed out may
/// still have been applied by the member that did not answer, so a retried write can land
/// twice: harmless for puts and deletes (same end state, one more revision), told apart by
/// [`Client::create`] (the owner it reports is the caller itself), and to be kept in mind for a
/// general [`Txn`](crate::Txn) whose compares its own first application would change.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Endpoints,
    http: Http,
    timeouts: Timeouts,
}

/// What one member made of a request.
#[derive(Debug)]
pub(crate) enum Answer {
    Ok(Bytes),
    /// An error from etcd: a gRPC status.
    Refused {
        code: i32,
        message: String,
    },
}

/// gRPC codes that mean "this member cannot serve it now" rather than "no": Unavailable (no
/// leader, `request timed out`, stopping) and DeadlineExceeded. Another member may serve it.
fn fails_over(code: i32) -> bool {
    matches!(code, 4 | 14)
}

impl Client {
    /// A client of the members at `endpoints` (`host:port` or `http://host:port`), with the
    /// default [`Timeouts`]. Nothing is contacted until the first request.
    ///
    /// # Errors
    /// [`Error::NoEndpoints`], [`Error::BadEndpoint`].
    pub fn new<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_timeouts(endpoints, Timeouts::default())
    }

    /// As [`Client::new`], with other bounds.
    ///
    /// # Errors
    /// [`Error::NoEndpoints`], [`Error::BadEndpoint`].
    pub fn with_timeouts<I, S>(endpoints: I, timeouts: Timeouts) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = Endpoints::new(endpoints)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                http,
                timeouts,
            }),
        })
    }

    /// The endpoints, normalised to `http://host:port`, in the order given.
    pub fn endpoints(&self) -> &[String] {
        self.inner.endpoints.urls()
    }

    /// The endpoint requests go to first: the one that answered last.
    pub fn current_endpoint(&self) -> &str {
        &self.inner.endpoints.urls()[self.inner.endpoints.current()]
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    pub(crate) fn endpoint_list(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// A unary call: to the current endpoint, then round the others while members fail to
    /// answer or cannot serve it. A retried write may have been applied by the member that
    /// timed out; the writes this crate offers are idempotent or, like create-if-absent, say
    /// who owns the key, so the caller can tell its own earlier write.
    pub(crate) async fn call<Q, A>(&self, call: &'static str, request: &Q) -> Result<A, Error>
    where
        Q: Serialize,
        A: DeserializeOwned,
    {
        let body = Bytes::from(serde_json::to_vec(request).expect("requests serialise"));
        let mut tried = Vec::new();
        for (i, endpoint) in self.inner.endpoints.attempts() {
            match self.send(endpoint, call, body.clone()).await {
                Ok(Answer::Ok(bytes)) => {
                    self.inner.endpoints.answered(i);
                    return parse(endpoint, call, &bytes);
                }
                Ok(Answer::Refused { code, message }) if fails_over(code) => {
                    tracing::debug!(%endpoint, call, code, %message, "etcd member cannot serve, trying the next");
                    tried.push((endpoint.to_owned(), message));
                }
                Ok(Answer::Refused { code, message }) => {
                    self.inner.endpoints.answered(i);
                    return Err(Error::Refused {
                        endpoint: endpoint.to_owned(),
                        call,
                        code,
                        message,
                    });
                }
                Err(reason) => {
                    tracing::debug!(%endpoint, call, %reason, "etcd member did not answer, trying the next");
                    tried.push((endpoint.to_owned(), reason));
                }
            }
        }
        Err(Error::Unavailable { call, tried })
    }

    /// A unary call to one endpoint, without failover (a member's own status, for one).
    pub(crate) async fn call_one<Q, A>(
        &self,
        endpoint: &str,
        call: &'static str,
        request: &Q,
    ) -> Result<A, Error>
    where
        Q: Serialize,
        A: DeserializeOwned,
    {
        let body = Bytes::from(serde_json::to_vec(request).expect("requests serialise"));
        match self.send(endpoint, call, body).await {
            Ok(Answer::Ok(bytes)) => parse(endpoint, call, &bytes),
            Ok(Answer::Refused { code, message }) => Err(Error::Refused {
                endpoint: endpoint.to_owned(),
                call,
                code,
                message,
            }),
            Err(reason) => Err(Error::Unavailable {
                call,
                tried: vec![(endpoint.to_owned(), reason)],
            }),
        }
    }

    /// One request to one member, within [`Timeouts::request`]. `Err` is why it did not answer.
    async fn send(
        &self,
        endpoint: &str,
        call: &'static str,
        body: Bytes,
    ) -> Result<Answer, String> {
        let exchange = async {
            let response = self.open(endpoint, call, body, false).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|err| root_cause(&err))?
                .to_bytes();
            Ok(read_answer(status, bytes))
        };
        tokio::time::timeout(self.inner.timeouts.request, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {:?}",
                    self.inner.timeouts.request
                ))
            })
    }

    /// Sends a request and returns the response with its body unread (a watch reads it as a
    /// stream). `require_leader` makes etcd end the stream when the member loses its leader,
    /// instead of holding it silent on the minority side of a partition.
    pub(crate) async fn open(
        &self,
        endpoint: &str,
        call: &'static str,
        body: Bytes,
        require_leader: bool,
    ) -> Result<http::Response<Incoming>, String> {
        let mut request = Request::post(format!("{endpoint}{call}"))
            .header(header::CONTENT_TYPE, "application/json");
        if require_leader {
            // grpc-gateway passes `Grpc-Metadata-*` headers on as gRPC metadata; `hasleader` is
            // etcd's require-leader key.
            request = request.header("Grpc-Metadata-hasleader", "true");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| format!("bad request: {err}"))?;
        self.inner
            .http
            .request(request)
            .await
            .map_err(|err| root_cause(&err))
    }
}

/// A member's answer: 200 is a result, anything else carries a gRPC status in its body (or, from
/// something that is not etcd, just a status line).
pub(crate) fn read_answer(status: StatusCode, body: Bytes) -> Answer {
    if status == StatusCode::OK {
        return Answer::Ok(body);
    }
    match serde_json::from_slice::<wire::Status>(&body) {
        Ok(s) if s.code != 0 => Answer::Refused {
            code: s.code,
            message: s.message,
        },
        _ => Answer::Refused {
            code: grpc_code_of(status),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
        },
    }
}

/// The gRPC code grpc-gateway would have turned into `status`, so that a proxy's 503 fails over
/// like etcd's own Unavailable.
fn grpc_code_of(status: StatusCode) -> i32 {
    match status.as_u16() {
        503 | 502 => 14,
        504 => 4,
        404 => 5,
        400 => 3,
        _ => 2,
    }
}

fn parse<A: DeserializeOwned>(
    endpoint: &str,
    call: &'static str,
    bytes: &[u8],
) -> Result<A, Error> {
    serde_json::from_slice(bytes).map_err(|err| Error::Garbled {
        endpoint: endpoint.to_owned(),
        call,
        reason: err.to_string(),
    })
}

/// The innermost error message, the one that says what happened (`Connection refused`).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        /// Status, body, and the refusal read from them (`None`: a result).
        type Case = (u16, &'static str, Option<(i32, &'static str)>);
        let cases: &[Case] = &[
            (200, r#"{"header":{}}"#, None),
            (
                503,
                r#"{"code":14,"message":"etcdserver: no leader"}"#,
                Some((14, "etcdserver: no leader")),
            ),
            (
                400,
                r#"{"code":11,"message":"mvcc: required revision has been compacted"}"#,
                Some((11, "mvcc: required revision has been compacted")),
            ),
            (
                503,
                "Service Unavailable",
                Some((14, "HTTP 503 Service Unavailable: Service Unavailable")),
            ),
            (504, "", Some((4, "HTTP 504 Gateway Timeout: "))),
            (500, "{}", Some((2, "HTTP 500 Internal Server Error: {}"))),
        ];
        for (status, body, want) in cases {
            let answer = read_answer(StatusCode::from_u16(*status).unwrap(), Bytes::from(*body));
            let got = match &answer {
                Answer::Ok(_) => None,
                Answer::Refused { code, message } => Some((*code, message.as_str())),
            };
            assert_eq!(got, *want, "{status} {body}");
        }
    }

    #[test]
    fn only_unavailable_and_deadline_fail_over() {
        let cases = [
            (14, true),
            (4, true),
            (3, false),
            (5, false),
            (11, false),
            (9, false),
        ];
        for (code, want) in cases {
            assert_eq!(fails_over(code), want, "{code}");
        }
    }
}
