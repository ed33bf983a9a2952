//! The weaveDNS part of the router's HTTP API: Weave Net's `/domain`, `/dns-address` and `/name`
//! paths, verbs, form fields and status codes, over the [`Registry`].
//!
//! Absent with `--no-dns`, so those paths answer 404 and clients (the proxy, the `weave` script,
//! which reads 404 as "feature disabled") leave DNS alone.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use api::route;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};

use crate::dns::registry::Registry;
use crate::http_api::{Body, Liveness, Params, bad_request_for, form_flag, form_value};

/// What the DNS routes share.
#[derive(Debug, Clone)]
pub struct NamesState {
    /// The names and their addresses.
    pub registry: Registry,
    /// Where the DNS server listens (what containers are given as their nameserver).
    pub listen: SocketAddr,
    /// For `check-alive=true`.
    pub liveness: Arc<dyn Liveness>,
}

/// The DNS routes over `state`.
pub fn router(state: NamesState) -> Router {
    Router::new()
        .route(route::DOMAIN, get(domain))
        .route(route::DNS_ADDRESS, get(dns_address))
        .route(route::DNS_ADDRESS_PORT, get(dns_address_port))
        .route(route::NAMES, get(list).delete(remove_all))
        .route(route::NAMES_OF, delete(remove_container))
        .route(route::NAME, put(add).delete(remove_one))
        .with_state(state)
}

const COMPONENT: &str = "[dns]";

async fn domain(State(state): State<NamesState>) -> String {
    state.registry.domain().to_owned()
}

async fn dns_address(State(state): State<NamesState>) -> String {
    state.listen.ip().to_string()
}

async fn dns_address_port(State(state): State<NamesState>) -> String {
    state.listen.to_string()
}

/// `PUT /name/{id}/{ip}` with `fqdn=`: 204 even for a name outside the domain (ignored, as the
/// original); with `check-alive=true` and a container that is not running, the entry does not stay.
async fn add(
    State(state): State<NamesState>,
    Path((id, ip)): Path<(String, String)>,
    query: Params,
    form: Body,
) -> Response {
    let Ok(addr) = ip.parse::<Ipv4Addr>() else {
        return bad_request_for(COMPONENT, &format!("Unable to parse IP address {ip:?}"));
    };
    let fqdn = form_value("fqdn", &query, &form)
        .unwrap_or_default()
        .to_owned();
    if fqdn.is_empty() {
        return bad_request_for(COMPONENT, "fqdn is required");
    }
    if !state.registry.add(&id, addr, &fqdn) {
        tracing::debug!(container = %id, %fqdn, domain = state.registry.domain(), "{COMPONENT} name outside the domain ignored");
        return StatusCode::NO_CONTENT.into_response();
    }
    if form_flag("check-alive", &query, &form) && !state.liveness.is_alive(&id).await {
        state.registry.remove(Some(&id), Some(addr), Some(&fqdn));
        tracing::info!(container = %id, %fqdn, "{COMPONENT} container not running; name not kept");
        return StatusCode::NO_CONTENT.into_response();
    }
    tracing::info!(container = %id, %addr, %fqdn, "{COMPONENT} name added");
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_one(
    State(state): State<NamesState>,
    Path((id, ip)): Path<(String, String)>,
    query: Params,
) -> Response {
    let Ok(addr) = ip.parse::<Ipv4Addr>() else {
        return bad_request_for(COMPONENT, &format!("Unable to parse IP address {ip:?}"));
    };
    remove(&state, Some(&id), Some(addr), &query)
}

async fn remove_container(
    State(state): State<NamesState>,
    Path(id): Path<String>,
    query: Params,
) -> Response {
    remove(&state, Some(&id), None, &query)
}

async fn remove_all(State(state): State<NamesState>, query: Params) -> Response {
    remove(&state, None, None, &query)
}

fn remove(
    state: &NamesState,
    id: Option<&str>,
    addr: Option<Ipv4Addr>,
    query: &Params,
) -> Response {
    let fqdn = query
        .get("fqdn")
        .map(String::as_str)
        .filter(|f| !f.is_empty());
    let removed = state.registry.remove(id, addr, fqdn);
    if removed > 0 {
        tracing::info!(
            container = id.unwrap_or("*"),
            removed,
            "{COMPONENT} names removed"
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /name`: JSON (Weave Net's entry shape) when asked for with `Accept: application/json`,
/// otherwise one `name address container` line per entry, for people.
async fn list(State(state): State<NamesState>, headers: HeaderMap) -> Response {
    let entries = state.registry.entries();
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    if wants_json {
        return axum::Json(entries).into_response();
    }
    let mut text = String::new();
    for entry in &entries {
        text.push_str(&format!(
            "{:<30} {:<15} {}\n",
            entry.hostname, entry.addr, entry.container_id
        ));
    }
    text.into_response()
}
