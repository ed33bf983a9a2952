//! weaveDNS at start-up: where it listens, which upstream servers it asks, and the names of the
//! containers that were attached before the router (re)started.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::dns::registry::Registry;
use crate::dns::resolv;
use crate::dns::server::{self, DnsConfig};
use crate::docker;
use crate::http_api::{ApiState, DnsStatus};
use crate::metrics::Metrics;
use crate::names::NamesState;
use crate::reclaim;
use anyhow::{Context as _, Result};

use super::DnsArgs;

/// Upstream name servers are asked for at most this long each.
const DNS_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds weaveDNS (UDP and TCP) and starts serving it; the names come from the API. It answers
/// the host and the containers on `range` (weave's) and on the Docker bridges, no one else.
pub(crate) async fn start(
    args: &DnsArgs,
    host_root: &Path,
    docker: &bollard::Docker,
    state: &ApiState,
    range: Ipv4Net,
    metrics: &Metrics,
) -> Result<NamesState> {
    // Where weaveDNS listens by default, and in any case the bridge whose containers it answers
    // (whatever `dockerd --bridge` named it).
    let gateway = match docker::bridge_gateway(docker).await {
        Ok(gateway) => gateway,
        Err(err) if args.dns_listen_address.is_some() => {
            tracing::warn!(error = %err, "[dns] cannot ask Docker for its bridge's address; containers on it are answered only if it is docker0");
            None
        }
        Err(err) => {
            return Err(err).context("asking Docker for its bridge's address (for weaveDNS)");
        }
    };
    let listen = match &args.dns_listen_address {
        Some(text) => dns_listen_address(text)?,
        None => SocketAddr::from((
            gateway.context(
                "Docker has no `bridge` network to put weaveDNS on; \
                 give --dns-listen-address or --no-dns",
            )?,
            53,
        )),
    };
    let resolv_conf = args
        .resolv_conf
        .clone()
        .unwrap_or_else(|| host_root.join("etc/resolv.conf"));
    let upstreams: Vec<SocketAddr> = match std::fs::read_to_string(&resolv_conf) {
        // The server drops those that are itself (it knows the port it ends up on).
        Ok(text) => resolv::nameservers(&text),
        Err(err) => {
            tracing::warn!(path = %resolv_conf.display(), error = %err, "[dns] cannot read the upstream name servers; names outside the domain will fail");
            Vec::new()
        }
    };
    let registry = Registry::new(&args.dns_domain);
    let server = server::bind(
        DnsConfig {
            listen,
            ttl: args.dns_ttl,
            upstreams,
            upstream_timeout: DNS_UPSTREAM_TIMEOUT,
            allowed: vec![IpNet::V4(range)],
            docker_gateways: gateway.map(IpAddr::V4).into_iter().collect(),
            max_forwards: server::DEFAULT_MAX_FORWARDS,
            metrics: Some(metrics.clone()),
        },
        registry.clone(),
    )
    .await
    .with_context(|| {
        format!("starting weaveDNS on {listen}; pick another --dns-listen-address, or --no-dns")
    })?;
    let listen = server.local_addr();
    let upstreams = server.upstreams().to_vec();
    state.set_dns_status(DnsStatus {
        registry: registry.clone(),
        upstreams: upstreams.clone(),
        ttl: args.dns_ttl,
    });
    let upstreams: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
    tracing::info!(%listen, domain = registry.domain(), upstreams = %upstreams.join(" "), "[dns] listening");
    tokio::spawn(async move {
        if let Err(err) = server.run().await {
            tracing::error!(error = %err, "[dns] server stopped");
        }
    });
    Ok(NamesState {
        registry,
        listen,
        liveness: state.liveness(),
    })
}

/// `ip` or `ip:port` (port 53 when left out).
fn dns_listen_address(text: &str) -> Result<SocketAddr> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .with_context(|| format!("bad --dns-listen-address {text:?}: expected ip or ip:port"))
}

/// Names of the containers found attached at start-up: they registered with a router that is
/// gone, so they are registered again, as the original's `populateDNS`.
pub(crate) fn restore_names(registry: &Registry, survey: &reclaim::Survey) {
    for (id, fqdn) in &survey.names {
        let Some((_, cidrs)) = survey.attached.iter().find(|(a, _)| a == id) else {
            continue;
        };
        for cidr in cidrs {
            if registry.add(id, cidr.addr(), fqdn) {
                tracing::info!(container = %id, addr = %cidr.addr(), %fqdn, "[dns] name restored");
            }
        }
    }
}
