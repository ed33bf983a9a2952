//! The mesh's part of the router's HTTP API: `/status/peers`, `/status/ipam` and `weave
//! rmpeer`'s `DELETE /peer/{peer}`. Served only on a network of several hosts; alone, these
//! paths answer 404 as Weave Net's did without a router.

use std::net::SocketAddrV4;
use std::sync::{Arc, OnceLock};

use api::route;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;

use super::{Mesh, RmPeerError, probe, status};
use crate::http_api::ApiState;

/// Where the mesh is once it is joined: the routes are served from the start (503 until then),
/// since the listener opens before the bridge and the store are set up.
pub type MeshSlot = Arc<OnceLock<Mesh>>;

#[derive(Debug, Clone)]
struct MeshState {
    mesh: MeshSlot,
    api: ApiState,
}

impl MeshState {
    fn mesh(&self) -> Option<&Mesh> {
        self.mesh.get()
    }
}

fn not_joined() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "not joined yet\n").into_response()
}

/// The routes over the mesh in `mesh`, with the allocator in `api`.
pub fn router(mesh: MeshSlot, api: ApiState) -> Router {
    Router::new()
        .route(route::STATUS_PEERS, get(peers))
        .route(route::STATUS_IPAM, get(ipam))
        .route(route::STATUS_CONNECTIONS, get(connections))
        .route(route::PEER, delete(remove_peer))
        .with_state(MeshState { mesh, api })
}

async fn peers(State(s): State<MeshState>) -> Response {
    match s.mesh() {
        Some(mesh) => status::peers_text(&mesh.view(), &mesh.config().name).into_response(),
        None => not_joined(),
    }
}

async fn connections(State(s): State<MeshState>) -> Response {
    let Some(mesh) = s.mesh() else {
        return not_joined();
    };
    let config = mesh.config();
    let view = mesh.view();
    let port = probe::probe_port(config.net.port);
    let peers: Vec<(String, SocketAddrV4)> = view
        .peers
        .iter()
        .filter(|(name, _)| **name != config.name)
        .map(|(name, peer)| (name.clone(), SocketAddrV4::new(peer.vtep, port)))
        .collect();
    // All at once: the answer takes one probe's time, however many peers there are.
    let probes = peers
        .iter()
        .map(|(_, vtep)| probe::probe(config.vtep, *vtep, config.mtu));
    let results = futures_util::future::join_all(probes).await;
    let found: Vec<_> = peers
        .into_iter()
        .zip(results)
        .map(|((name, vtep), probe)| (name, vtep, probe))
        .collect();
    status::connections_text(&view, &found, config.mtu).into_response()
}

async fn ipam(State(s): State<MeshState>) -> Response {
    let Some(mesh) = s.mesh() else {
        return not_joined();
    };
    let active = match s.api.read(|alloc| {
        alloc
            .owned_blocks()
            .into_iter()
            .map(|b| alloc.used_in(b))
            .sum::<usize>()
    }) {
        Ok(active) => active,
        Err(err) => return err.into_response(),
    };
    let config = mesh.config();
    status::ipam_text(&mesh.view(), &config.name, config.net.range, active).into_response()
}

#[derive(Debug, Deserialize)]
struct Force {
    #[serde(default)]
    force: bool,
}

async fn remove_peer(
    State(s): State<MeshState>,
    Path(peer): Path<String>,
    Query(force): Query<Force>,
) -> Response {
    let Some(mesh) = s.mesh() else {
        return not_joined();
    };
    match mesh.remove_peer(&peer, force.force).await {
        Ok(taken) => {
            let ips: u64 = taken
                .blocks
                .iter()
                .map(|b| 1u64 << (32 - u32::from(b.prefix_len())))
                .sum();
            for block in &taken.blocks {
                if let Err(err) = s.api.update(|alloc| alloc.add_block(*block)) {
                    return err.into_response();
                }
            }
            tracing::info!(peer = %taken.peer, blocks = taken.blocks.len(), "peer removed; its blocks taken over");
            format!("{ips} IPs taken over from {}\n", taken.peer).into_response()
        }
        Err(err) => {
            let status = match err {
                RmPeerError::Unknown(_) => StatusCode::NOT_FOUND,
                RmPeerError::Alive(_) | RmPeerError::Itself => StatusCode::CONFLICT,
                RmPeerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, format!("{err}\n")).into_response()
        }
    }
}
