//! Forwarding one request to the daemon and its answer back, including hijacked streams.
//!
//! The pipeline's front: each request is routed ([`crate::route`]), handed to its interceptor
//! ([`crate::intercept`]) when the proxy rewrites that endpoint, and otherwise sent on to the
//! daemon ([`crate::upstream`]) as it came. Headers, status, reason phrase and body pass through
//! untouched. The only changes are the hop-by-hop headers ([`crate::hop`]) and, on attach and
//! exec start, the upgrade request that lets a hyper client take over the connection.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::time::Instant;
use tokio::sync::Notify;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use tracing::debug;

use crate::attach::Attacher;
use crate::body::{self, ProxyBody};
use crate::docker::DockerClient;
use crate::error::ProxyError;
use crate::hop::{strip_hop_by_hop, wants_upgrade};
use crate::intercept::present::Presentation;
use crate::intercept::{self, Settings};
use crate::metrics::{Metrics, StreamKind};
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

/// Everything a request handler needs: the daemon and how to rewrite for weave.
#[derive(Debug, Clone)]
pub struct Context {
    /// The Docker daemon, for the clients' requests.
    pub upstream: Upstream,
    /// The same daemon over the same connections, for the proxy's own calls.
    pub docker: DockerClient,
    /// How containers are rewritten.
    pub settings: Settings,
    /// Attaches containers when they start.
    pub attacher: Attacher,
    /// Where requests are counted.
    pub metrics: Metrics,
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
    let endpoint = route(&method, &path);
    let name = endpoint.name();
    let response = match exchange(context, request, hijack, endpoint).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    context
        .metrics
        .request(name, &method, response.status(), started.elapsed());
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
    endpoint: Endpoint,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (upstream, settings) = (&context.upstream, &context.settings);
    let (mut parts, body) = request.into_parts();
    let presentation = match endpoint {
        Endpoint::ContainerCreate => {
            return intercept::create::create_container(
                upstream,
                &context.docker,
                settings,
                parts,
                body,
            )
            .await;
        }
        Endpoint::ExecCreate { ref container } => {
            return intercept::exec::create_exec(
                upstream,
                &context.docker,
                settings,
                container,
                parts,
                body,
            )
            .await;
        }
        Endpoint::ContainerStart { container } => {
            return intercept::start::start_container(
                upstream,
                &context.attacher,
                &container,
                parts,
                body,
            )
            .await;
        }
        Endpoint::ContainerList => Some(Presentation::List),
        Endpoint::ContainerInspect => Some(Presentation::Inspect),
        _ => None,
    };
    // Held until the end of the answer (a build or a pull streams until its tag is made).
    let image_change =
        (endpoint == Endpoint::ImageChange).then(|| context.docker.images().begin_change());
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
    let relayed = context.metrics.relayed(StreamKind::Body);
    let mut response = upstream
        .send(Request::from_parts(
            parts,
            body::counted(body, relayed.to_daemon),
        ))
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
            intercept::present::present(upstream, kind, response, weave_network).await
        }
        None => match image_change {
            Some(guard) => {
                Ok(response.map(|answer| body::holding(answer, relayed.to_client, guard)))
            }
            None => Ok(response.map(|answer| body::counted(answer, relayed.to_client))),
        },
    }
}
