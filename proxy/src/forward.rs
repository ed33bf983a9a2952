//! Forwarding one request to the daemon and its answer back, including hijacked streams.
//!
//! Headers, status, reason phrase and body pass through untouched. The only changes are the
//! hop-by-hop headers of RFC 9110 §7.6.1, which belong to each connection and not to the message,
//! and, on attach and exec start, the upgrade request that lets a hyper client take over the
//! connection.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::time::Instant;
use tokio::sync::Notify;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use tracing::debug;

use crate::attach::Attacher;
use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::intercept::{self, Presentation, Settings};
use crate::route::{Endpoint, route};
use crate::upstream::Upstream;

/// The daemon's end of a hijacked connection, handed from the request handler to the
/// connection task, which splices it to the client.
#[derive(Debug, Clone, Default)]
pub struct HijackSlot(Arc<SlotInner>);

#[derive(Debug, Default)]
struct SlotInner {
    hijack: Mutex<Option<Hijack>>,
    /// Wakes the connection task for a legacy hijack, whose response hyper must not write.
    legacy: Notify,
}

/// A hijacked stream waiting to be spliced.
#[derive(Debug)]
pub struct Hijack {
    /// The daemon's end.
    pub daemon: Upgraded,
    /// For a client that did not ask to upgrade: the response head to write by hand before
    /// the stream (hyper would add a `Content-Length: 0` that the daemon never sends).
    pub legacy_head: Option<Bytes>,
}

impl HijackSlot {
    fn put(&self, hijack: Hijack) {
        let legacy = hijack.legacy_head.is_some();
        *self.0.hijack.lock().expect("hijack slot lock poisoned") = Some(hijack);
        if legacy {
            self.0.legacy.notify_one();
        }
    }

    /// Takes the hijacked stream, if this connection was hijacked.
    pub fn take(&self) -> Option<Hijack> {
        self.0
            .hijack
            .lock()
            .expect("hijack slot lock poisoned")
            .take()
    }

    /// Resolves when a legacy hijack is ready for the connection task to take over.
    pub async fn legacy_ready(&self) {
        self.0.legacy.notified().await;
    }
}

/// The daemon's own answer to an attach or exec start without `Upgrade` (every version).
const LEGACY_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n";

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and must not be forwarded.
/// `Transfer-Encoding` is left to hyper, which frames each side's body itself.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether the client asked to upgrade the connection (`Connection: Upgrade` and `Upgrade: ...`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Everything a request handler needs: the daemon and how to rewrite for weave.
#[derive(Debug, Clone)]
pub struct Context {
    /// The Docker daemon.
    pub upstream: Upstream,
    /// How containers are rewritten.
    pub settings: Settings,
    /// Attaches containers when they start.
    pub attacher: Attacher,
}

/// Forwards one client request and returns what the client should see.
pub async fn forward(
    context: &Context,
    request: Request<Incoming>,
    hijack: &HijackSlot,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match exchange(context, request, hijack).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    debug!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn exchange(
    context: &Context,
    request: Request<Incoming>,
    hijack: &HijackSlot,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (upstream, settings) = (&context.upstream, &context.settings);
    let endpoint = route(request.method(), request.uri().path());
    let (mut parts, body) = request.into_parts();
    let presentation = match endpoint {
        Endpoint::ContainerCreate => {
            return intercept::create_container(upstream, settings, parts, body).await;
        }
        Endpoint::ExecCreate { ref container } => {
            return intercept::create_exec(upstream, settings, container, parts, body).await;
        }
        Endpoint::ContainerStart { container } => {
            return start_container(context, &container, parts, body).await;
        }
        Endpoint::ContainerList => Some(Presentation::List),
        Endpoint::ContainerInspect => Some(Presentation::Inspect),
        _ => None,
    };
    let client_upgrades = wants_upgrade(&parts.headers);
    if !client_upgrades {
        strip_hop_by_hop(&mut parts.headers);
        if endpoint.hijacks() {
            // A hyper client cannot keep writing after a bare `200` raw-stream answer, so the
            // daemon is always asked for the `101 UPGRADED` form; an old client that did not ask
            // for it still gets the bare `200` below.
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        }
    }
    let mut response = upstream
        .send(Request::from_parts(parts, body::stream(body)))
        .await?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upgraded =
            hyper::upgrade::on(&mut response)
                .await
                .map_err(|err| ProxyError::Hijack {
                    addr: upstream.addr().to_string(),
                    reason: err.to_string(),
                })?;
        if client_upgrades {
            hijack.put(Hijack {
                daemon: upgraded,
                legacy_head: None,
            });
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, body::empty()));
        }
        // The legacy form, `200 OK` and then the raw stream until either side closes, is
        // written by the connection task itself; this response is never sent.
        hijack.put(Hijack {
            daemon: upgraded,
            legacy_head: Some(Bytes::from_static(LEGACY_HEAD)),
        });
        return std::future::pending().await;
    }

    strip_hop_by_hop(response.headers_mut());
    match presentation {
        Some(kind) => {
            let weave_network = settings.rewrite_inspect.then_some(&context.attacher);
            intercept::present(upstream, kind, response, weave_network).await
        }
        None => Ok(response.map(body::stream)),
    }
}

/// `POST /containers/{id}/start` and `/restart`: forwarded, and a success is answered only once
/// the container is attached. `304 Not Modified` (already running) and errors come back at once.
async fn start_container(
    context: &Context,
    container: &str,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<ProxyBody>, ProxyError> {
    strip_hop_by_hop(&mut parts.headers);
    let _starting = context.attacher.begin_start(container).await;
    let mut response = context
        .upstream
        .send(Request::from_parts(parts, body::stream(body)))
        .await?;
    strip_hop_by_hop(response.headers_mut());
    if response.status().is_success() {
        context
            .attacher
            .on_start_request(container)
            .await
            .map_err(|source| ProxyError::Attach {
                container: container.to_owned(),
                source,
            })?;
    }
    Ok(response.map(body::stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn detects_upgrade_requests() {
        let cases = [
            (vec![("Connection", "Upgrade"), ("Upgrade", "tcp")], true),
            (
                vec![
                    ("Connection", "keep-alive, upgrade"),
                    ("Upgrade", "websocket"),
                ],
                true,
            ),
            (vec![("Upgrade", "tcp")], false),
            (vec![("Connection", "Upgrade")], false),
            (vec![("Connection", "close")], false),
            (vec![], false),
        ];
        for (pairs, want) in cases {
            assert_eq!(wants_upgrade(&headers(&pairs)), want, "{pairs:?}");
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut map = headers(&[
            ("Connection", "close, X-Trace"),
            ("X-Trace", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Type", "application/json"),
            ("Content-Length", "2"),
            ("Transfer-Encoding", "chunked"),
            ("X-Registry-Auth", "e30="),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "content-length",
                "content-type",
                "transfer-encoding",
                "x-registry-auth"
            ]
        );
    }
}
