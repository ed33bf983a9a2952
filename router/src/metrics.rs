//! The router's Prometheus metrics, served at `GET /metrics` on its HTTP address: requests by
//! route, method and status with their latency, the addresses of the range and of the default
//! subnet in use and free, and weaveDNS questions by how they were answered. prometheus-client
//! keeps and encodes them; the address gauges are read from the allocator at each scrape.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::Ipv4Net;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http_api::ApiState;
use crate::ipam::Allocator;

/// How a weaveDNS question was answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values read as Prometheus users expect
pub enum DnsResult {
    /// From the registry: a name in the domain, or a reverse name of one of its addresses.
    local,
    /// An upstream name server answered.
    forwarded,
    /// No upstream answered, or too many questions were being forwarded: SERVFAIL.
    failed,
    /// The client may not ask.
    refused,
    /// Not a question weaveDNS takes (not a query, not one question).
    invalid,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    subnet: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    result: DnsResult,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    addresses: Family<AddressLabels, Gauge>,
    dns: Family<DnsLabels, Counter>,
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

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s: an answer from memory, one that waits for Docker or the store.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weave");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests to the router's HTTP API by route, method and status",
            requests.clone(),
        );
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request to the router's HTTP API, by route",
            latency.clone(),
        );
        let addresses = Family::<AddressLabels, Gauge>::default();
        registry.register(
            "ipam_addresses",
            "Addresses of the allocation range and of the default subnet, in use and free",
            addresses.clone(),
        );
        let dns = Family::<DnsLabels, Counter>::default();
        registry.register(
            "dns_queries",
            "weaveDNS questions by how they were answered",
            dns.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                addresses,
                dns,
            }),
        }
    }

    /// Counts one weaveDNS question.
    pub fn dns(&self, result: DnsResult) {
        self.inner.dns.get_or_create(&DnsLabels { result }).inc();
    }

    fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition, with the address gauges read from `alloc` when it is loaded.
    pub fn encode(&self, alloc: Option<&Allocator>) -> String {
        if let Some(alloc) = alloc {
            let mut subnets = vec![alloc.universe()];
            if alloc.default_subnet() != alloc.universe() {
                subnets.push(alloc.default_subnet());
            }
            for subnet in subnets {
                let (used, free) = usage(alloc, subnet);
                for (state, value) in [("used", used), ("free", free)] {
                    self.inner
                        .addresses
                        .get_or_create(&AddressLabels {
                            subnet: subnet.to_string(),
                            state,
                        })
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .unwrap_or_else(|_| unreachable!("writing to a String does not fail"));
        out
    }
}

/// In use and free host addresses of `subnet` inside the range.
fn usage(alloc: &Allocator, subnet: Ipv4Net) -> (u64, u64) {
    let hosts = (1u64 << (32 - u32::from(subnet.prefix_len()))).saturating_sub(2);
    let used = alloc.used_in(subnet) as u64;
    (used, hosts.saturating_sub(used))
}

/// Counts and times every request; the route is the matched pattern (`/ip/{id}`), so that
/// container ids do not become label values.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn serve(State((metrics, api)): State<(Metrics, ApiState)>) -> Response {
    let text = api
        .read(|alloc| metrics.encode(Some(alloc)))
        .unwrap_or_else(|_| metrics.encode(None));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_holds_requests_addresses_and_dns() {
        let metrics = Metrics::new();
        metrics.request("/ip/{id}", "POST", 200, 0.0003);
        metrics.request("/ip/{id}", "POST", 200, 0.002);
        metrics.dns(DnsResult::local);
        metrics.dns(DnsResult::forwarded);
        metrics.dns(DnsResult::local);
        let net = |t: &str| -> Ipv4Net { t.parse().unwrap() };
        let mut alloc = Allocator::new(net("10.32.0.0/24"), net("10.32.0.0/25")).unwrap();
        alloc.allocate("a", net("10.32.0.0/25"), true).unwrap();
        alloc.allocate("b", net("10.32.0.0/24"), true).unwrap();
        let text = metrics.encode(Some(&alloc));
        for line in [
            "weave_http_requests_total{route=\"/ip/{id}\",method=\"POST\",status=\"200\"} 2",
            "weave_http_request_duration_seconds_count{route=\"/ip/{id}\"} 2",
            "weave_ipam_addresses{subnet=\"10.32.0.0/24\",state=\"used\"} 2",
            "weave_ipam_addresses{subnet=\"10.32.0.0/24\",state=\"free\"} 252",
            "weave_ipam_addresses{subnet=\"10.32.0.0/25\",state=\"used\"} 2",
            "weave_ipam_addresses{subnet=\"10.32.0.0/25\",state=\"free\"} 124",
            "weave_dns_queries_total{result=\"local\"} 2",
            "weave_dns_queries_total{result=\"forwarded\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
