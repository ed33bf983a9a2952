//! Forwarding one request to the daemon and its answer back, including hijacked streams.
//!
//! Headers, status, reason phrase and body pass through untouched. The only changes are the
//! hop-by-hop headers of RFC 9110 §7.6.1, which belong to each connection and not to the message,
//! and, on attach and exec start, the upgrade request that lets a hyper client take over the
//! connection.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use tracing::debug;

use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::route::route;
use crate::upstream::Upstream;

/// The daemon's end of a hijacked connection, handed from the request handler to the connection
/// task, which splices it to the client once the response head has been written.
#[derive(Debug, Clone, Default)]
pub struct HijackSlot(Arc<Mutex<Option<Upgraded>>>);

impl HijackSlot {
    fn put(&self, upgraded: Upgraded) {
        *self.0.lock().expect("hijack slot lock poisoned") = Some(upgraded);
    }

    /// Takes the daemon's end of the stream, if this connection was hijacked.
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().expect("hijack slot lock poisoned").take()
    }
}

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

/// Forwards one client request and returns what the client should see.
pub async fn forward(
    upstream: &Upstream,
    request: Request<Incoming>,
    hijack: &HijackSlot,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match exchange(upstream, request, hijack).await {
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
    upstream: &Upstream,
    request: Request<Incoming>,
    hijack: &HijackSlot,
) -> Result<Response<ProxyBody>, ProxyError> {
    let endpoint = route(request.method(), request.uri().path());
    let (mut parts, body) = request.into_parts();
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
        hijack.put(upgraded);
        let (mut parts, _) = response.into_parts();
        if !client_upgrades {
            // The legacy form: `200 OK`, then the raw stream until either side closes.
            parts.status = StatusCode::OK;
            parts.extensions.clear();
            strip_hop_by_hop(&mut parts.headers);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(Response::from_parts(parts, body::empty()));
    }

    strip_hop_by_hop(response.headers_mut());
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
