//! The proxy's Prometheus metrics, served at `GET /metrics` on `--metrics-addr` (a loopback
//! address: the numbers say what runs on the host): requests by endpoint, method and status
//! with their latency, attaches by outcome (and failures by reason) with their latency, and the
//! bytes relayed by kind of stream and direction. prometheus-client keeps and encodes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    result: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayLabels {
    stream: &'static str,
    direction: &'static str,
}

/// What kind of stream bytes were relayed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A request or response body passed through as the daemon or client sent it.
    Body,
    /// A hijacked connection (attach, exec start, any upgrade) after its head.
    Hijacked,
}

/// Counters of the bytes relayed on one kind of stream, one per direction. Clones share the
/// counts, so a stream holds these and adds to them without looking up a label set per chunk.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// Bytes from the client to the daemon.
    pub to_daemon: Counter,
    /// Bytes from the daemon to the client.
    pub to_client: Counter,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Timings<EndpointLabels>,
    attaches: Family<AttachLabels, Counter>,
    attach_latency: Timings<AttachLabels>,
    /// Made once, so that a request takes its counters without a lookup.
    body: Relayed,
    hijacked: Relayed,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn timing() -> Histogram {
    // 100 µs to about 6 s: a ping answered by the daemon, a start that waits for an attach.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weaveproxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Docker API requests through the proxy, by endpoint, method and status",
            requests.clone(),
        );
        let latency: Timings<EndpointLabels> = Family::new_with_constructor(timing);
        registry.register(
            "request_duration_seconds",
            "Time to the answer's head of a Docker API request, by endpoint",
            latency.clone(),
        );
        let attaches = Family::<AttachLabels, Counter>::default();
        registry.register(
            "attaches",
            "Containers attached to the weave network, and attaches that failed, by reason",
            attaches.clone(),
        );
        let attach_latency: Timings<AttachLabels> = Family::new_with_constructor(timing);
        registry.register(
            "attach_duration_seconds",
            "Time an attach took, by outcome",
            attach_latency.clone(),
        );
        let relayed = Family::<RelayLabels, Counter>::default();
        registry.register(
            "relayed_bytes",
            "Bytes relayed between clients and the daemon, by stream (body or hijacked) and \
             direction (to_daemon or to_client); the heads of requests and answers are not counted",
            relayed.clone(),
        );
        // One statement per counter: a label set's guard held to the end of a statement that
        // creates the next one would deadlock on the family's lock.
        let counter = |stream, direction| {
            let counter = relayed.get_or_create(&RelayLabels { stream, direction });
            counter.clone()
        };
        let counters = |stream| {
            let to_daemon = counter(stream, "to_daemon");
            let to_client = counter(stream, "to_client");
            Relayed {
                to_daemon,
                to_client,
            }
        };
        let (body, hijacked) = (counters("body"), counters("hijacked"));
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                attaches,
                attach_latency,
                body,
                hijacked,
            }),
        }
    }

    /// Counts one request to `endpoint` (a name from the route table, never a path: ids would
    /// make a label value per container).
    pub fn request(
        &self,
        endpoint: &'static str,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                endpoint,
                method: method_label(method),
                status: status.as_u16(),
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
    }

    /// Counts one attach: `reason` is `""` for a success.
    pub fn attach(&self, reason: Result<(), &'static str>, took: Duration) {
        let labels = match reason {
            Ok(()) => AttachLabels {
                result: "attached",
                reason: "",
            },
            Err(reason) => AttachLabels {
                result: "failed",
                reason,
            },
        };
        self.inner.attaches.get_or_create(&labels).inc();
        self.inner
            .attach_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The counters of bytes relayed on `kind` of stream.
    pub fn relayed(&self, kind: StreamKind) -> Relayed {
        match kind {
            StreamKind::Body => self.inner.body.clone(),
            StreamKind::Hijacked => self.inner.hijacked.clone(),
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .unwrap_or_else(|_| unreachable!("writing to a String does not fail"));
        out
    }

    /// Serves `GET /metrics` on `listener` until `stop`.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(metrics.answer(&request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) =
            if request.method() == Method::GET && request.uri().path() == "/metrics" {
                (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.encode(),
                )
            } else {
                (
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "only GET /metrics here\n".to_owned(),
                )
            };
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| unreachable!("a valid status and header"))
    }
}

/// The label of a request's method: the HTTP methods by name, anything else `OTHER`. A fixed
/// set keeps a client that makes up methods from growing the metrics without bound, and no
/// label is allocated on the way of every request.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Whether `addr` may serve the metrics: loopback only.
pub fn is_allowed(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_attaches_are_counted_by_endpoint_outcome_and_reason() {
        let metrics = Metrics::new();
        let ms = Duration::from_millis;
        metrics.request(
            "container_start",
            &Method::POST,
            StatusCode::NO_CONTENT,
            ms(20),
        );
        metrics.request(
            "container_start",
            &Method::POST,
            StatusCode::NO_CONTENT,
            ms(25),
        );
        metrics.request("other", &Method::GET, StatusCode::OK, ms(1));
        metrics.attach(Ok(()), ms(15));
        metrics.attach(Err("router"), ms(3));
        let body = metrics.relayed(StreamKind::Body);
        body.to_client.inc_by(300);
        metrics.relayed(StreamKind::Body).to_client.inc_by(12);
        metrics.relayed(StreamKind::Hijacked).to_daemon.inc_by(7);
        let text = metrics.encode();
        for line in [
            "weaveproxy_requests_total{endpoint=\"container_start\",method=\"POST\",status=\"204\"} 2",
            "weaveproxy_requests_total{endpoint=\"other\",method=\"GET\",status=\"200\"} 1",
            "weaveproxy_request_duration_seconds_count{endpoint=\"container_start\"} 2",
            "weaveproxy_attaches_total{result=\"attached\",reason=\"\"} 1",
            "weaveproxy_attaches_total{result=\"failed\",reason=\"router\"} 1",
            "weaveproxy_attach_duration_seconds_count{result=\"attached\",reason=\"\"} 1",
            "weaveproxy_relayed_bytes_total{stream=\"body\",direction=\"to_client\"} 312",
            "weaveproxy_relayed_bytes_total{stream=\"body\",direction=\"to_daemon\"} 0",
            "weaveproxy_relayed_bytes_total{stream=\"hijacked\",direction=\"to_daemon\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn only_loopback_may_serve_them() {
        for (addr, allowed) in [
            ("127.0.0.1:9102", true),
            ("[::1]:9102", true),
            ("0.0.0.0:9102", false),
            ("10.0.0.1:9102", false),
        ] {
            assert_eq!(is_allowed(&addr.parse().unwrap()), allowed, "{addr}");
        }
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
