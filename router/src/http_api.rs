//! The router's HTTP API (IPAM part and `/status`): Weave Net's paths, verbs, parameters, bodies and
//! status codes.
//!
//! Clients are the original `weave` script (curl) and Go API client, and our proxy; they read bodies
//! verbatim, so every answer copies the original byte for byte: plain `ip/len` bodies with no newline,
//! 204 for claims and frees, errors as Go's `http.Error` writes them (400, text plus a newline), and
//! the `200 cancelled` quirk for requests whose container is not running.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use api::status::line;
use api::{ErrorKind, route};
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::dns::registry::Registry;
use crate::ipam::{self, Allocator, IpamError};
use crate::store::{Store, StoreError};

/// A boxed future, so [`Liveness`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether the container behind an id still runs. With `check-alive=true` the original asks Docker
/// once, before acting, and cancels the request when the container is not running; this is that seam.
pub trait Liveness: Send + Sync + std::fmt::Debug {
    /// `false` cancels the request (answered `200 cancelled`).
    fn is_alive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool>;
}

/// Treats every id as running: for tests and embedders without Docker (`weaver` itself uses
/// [`crate::docker::DockerLiveness`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct AssumeAlive;

impl Liveness for AssumeAlive {
    fn is_alive<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }
}

/// What a block claim in the store came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockClaim {
    /// This peer owns the block now (or already did).
    Ours(Ipv4Net),
    /// The one block asked for belongs to another peer, shown as `name(nickname)`.
    Taken { block: Ipv4Net, owner: String },
    /// Every candidate belongs to another peer.
    NoneFree,
}

/// What [`ApiState::make_room`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// There is room now: try again.
    Made,
    /// There will be none: this is the error to give.
    Refused(IpamError),
    /// The error was not for want of a block (or this host is alone): give it as it is.
    Unchanged,
}

/// Where blocks of the range are claimed on a network of several hosts: the store
/// ([`crate::mesh::Mesh`]). Absent on a lone host, which owns the whole range.
pub trait BlockSource: Send + Sync + std::fmt::Debug {
    /// Claims the first of `candidates` that no other peer owns. An error says why the store
    /// could not be asked.
    fn claim<'a>(&'a self, candidates: Vec<Ipv4Net>) -> BoxFuture<'a, Result<BlockClaim, String>>;
}

/// Makes the lines of `/status`'s router block when asked.
#[derive(Clone)]
pub struct RouterLines(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for RouterLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouterLines")
    }
}

/// Shared state of the API: the configuration known at start, and the allocator once loaded.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    universe: Ipv4Net,
    default_subnet: Ipv4Net,
    liveness: Arc<dyn Liveness>,
    /// Empty until the saved state is loaded; `/status` answers 503 and `/ip...` 503 until then.
    ipam: OnceLock<Mutex<Ipam>>,
    /// weaveDNS, for `/status`; empty with `--no-dns`.
    dns: OnceLock<DnsStatus>,
    /// The store's blocks, on a network of several hosts.
    blocks: OnceLock<Arc<dyn BlockSource>>,
    /// The lines of `/status`'s router block, on a network of several hosts.
    router_lines: OnceLock<RouterLines>,
    /// Held while a block is claimed, so that requests that all found their blocks full claim
    /// one block between them, not one each.
    claiming: tokio::sync::Mutex<()>,
    /// Docker's network plugin, for `/status`; empty with `--no-plugin`.
    plugin: OnceLock<PluginStatus>,
}

/// What `/status` shows of weaveDNS.
#[derive(Debug, Clone)]
pub struct DnsStatus {
    /// The names it holds.
    pub registry: Registry,
    /// Where names outside its domain are asked.
    pub upstreams: Vec<SocketAddr>,
    /// The TTL of its answers.
    pub ttl: u32,
}

/// What `/status` shows of Docker's network plugin.
#[derive(Debug, Clone)]
pub struct PluginStatus {
    /// The driver name users give (`docker network create -d NAME`).
    pub name: String,
    /// Where Docker finds it.
    pub socket: std::path::PathBuf,
}

#[derive(Debug)]
struct Ipam {
    alloc: Allocator,
    store: Store,
}

impl Ipam {
    /// Makes `next` the live state, saving it first when what is persisted changed (dead marks
    /// alone are not worth a disk write).
    fn commit(&mut self, next: Allocator) -> Result<(), ApiError> {
        if next == self.alloc {
            return Ok(());
        }
        if !next.same_allocations(&self.alloc) {
            self.store.save(&next).map_err(ApiError::Persist)?;
        }
        self.alloc = next;
        Ok(())
    }
}

impl ApiState {
    /// State for an allocator with `universe` and `default_subnet` that is not loaded yet, so the
    /// listener can answer (503) while the saved state is read.
    pub fn new(universe: Ipv4Net, default_subnet: Ipv4Net, liveness: Arc<dyn Liveness>) -> Self {
        Self {
            inner: Arc::new(Shared {
                universe,
                default_subnet,
                liveness,
                ipam: OnceLock::new(),
                dns: OnceLock::new(),
                blocks: OnceLock::new(),
                router_lines: OnceLock::new(),
                claiming: tokio::sync::Mutex::new(()),
                plugin: OnceLock::new(),
            }),
        }
    }

    /// State that is ready at once with `alloc`, saving to `store`.
    pub fn ready(alloc: Allocator, store: Store, liveness: Arc<dyn Liveness>) -> Self {
        let state = Self::new(alloc.universe(), alloc.default_subnet(), liveness);
        state.set_ready(alloc, store);
        state
    }

    /// Hands the loaded allocator over; from now on the API serves IPAM and `/status` is 200.
    /// A second call is ignored: the first allocator stays authoritative.
    pub fn set_ready(&self, alloc: Allocator, store: Store) {
        if self
            .inner
            .ipam
            .set(Mutex::new(Ipam { alloc, store }))
            .is_err()
        {
            tracing::warn!("IPAM was already initialised; ignoring a second initialisation");
        }
    }

    /// Shows a router block in `/status`, made by `lines` at each request.
    pub fn set_router_lines(&self, lines: RouterLines) {
        let _ = self.inner.router_lines.set(lines);
    }

    /// Allocates from blocks claimed in `source` from now on.
    pub fn set_block_source(&self, source: Arc<dyn BlockSource>) {
        let _ = self.inner.blocks.set(source);
    }

    /// Runs an allocator operation; when it needs a block this peer does not own yet, claims
    /// one in the store and runs it again.
    async fn change_claiming<T>(
        &self,
        op: impl Fn(&mut Allocator) -> Result<T, IpamError>,
    ) -> Result<Result<T, IpamError>, ApiError> {
        let first = self.change(&op)?;
        let Err(err) = &first else {
            return Ok(first);
        };
        match self.make_room(err).await? {
            Room::Made => self.change(&op),
            Room::Refused(err) => Ok(Err(err)),
            Room::Unchanged => Ok(first),
        }
    }

    /// Gives `id` an address in the default subnet, as `POST /ip/{id}` does: the one it holds,
    /// else the lowest free, claiming a block in the store first when needed.
    ///
    /// # Errors
    /// [`ApiError`] when not ready or the store fails; the inner [`IpamError`] when the subnet
    /// is full.
    pub async fn allocate_default(&self, id: &str) -> Result<Result<Ipv4Net, IpamError>, ApiError> {
        let subnet = self.inner.default_subnet;
        self.change_claiming(|alloc| alloc.allocate(id, subnet, false))
            .await
    }

    /// When `err` says the allocator needs a block this peer does not own (and a store to
    /// claim it in is set), claims it. One claim at a time: requests that all found their
    /// blocks full claim one block between them, not one each.
    ///
    /// # Errors
    /// [`ApiError::Store`] when the store cannot be asked; [`ApiError::Persist`].
    pub async fn make_room(&self, err: &IpamError) -> Result<Room, ApiError> {
        let (Some(source), Some(candidates)) = (self.inner.blocks.get(), self.wanted_blocks(err)?)
        else {
            return Ok(Room::Unchanged);
        };
        let _claiming = self.inner.claiming.lock().await;
        // Another request may have claimed what this one needs while it waited.
        let has_room = self.read(|alloc| match err {
            IpamError::NeedBlock(subnet) => alloc.lowest_free(*subnet).is_ok(),
            IpamError::BlockNotOwned(_, block) => alloc.owns_block(*block),
            _ => false,
        })?;
        if has_room {
            return Ok(Room::Made);
        }
        Ok(
            match (
                source.claim(candidates).await.map_err(ApiError::Store)?,
                err,
            ) {
                (BlockClaim::Ours(block), _) => {
                    self.update(|alloc| alloc.add_block(block))?;
                    Room::Made
                }
                (BlockClaim::Taken { owner, .. }, IpamError::BlockNotOwned(cidr, _)) => {
                    Room::Refused(IpamError::OwnedBy(*cidr, owner))
                }
                (BlockClaim::NoneFree | BlockClaim::Taken { .. }, IpamError::NeedBlock(subnet)) => {
                    let hosts = subnet_hosts(*subnet, self.inner.universe);
                    Room::Refused(IpamError::Exhausted {
                        subnet: *subnet,
                        hosts,
                    })
                }
                (_, err) => Room::Refused(err.clone()),
            },
        )
    }

    /// Claims the next block for `subnet` in the background when the owned ones there are
    /// filling up, so that the allocation that would need it finds it owned already.
    fn claim_ahead(&self, subnet: Ipv4Net) {
        if self.inner.blocks.get().is_none() {
            return;
        }
        let Ok((used, total)) = self.read(|alloc| alloc.fill(subnet)) else {
            return;
        };
        if !should_claim_ahead(used, total) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let Some(source) = state.inner.blocks.get() else {
                return;
            };
            let _claiming = state.inner.claiming.lock().await;
            let Ok(((used, total), candidates)) =
                state.read(|alloc| (alloc.fill(subnet), unowned_blocks(alloc, subnet)))
            else {
                return;
            };
            if !should_claim_ahead(used, total) {
                return;
            }
            match source.claim(candidates).await {
                Ok(BlockClaim::Ours(block)) => {
                    tracing::info!(%block, %subnet, used, total, "claimed the next block ahead of need");
                    let _ = state.update(|alloc| alloc.add_block(block));
                }
                Ok(_) => tracing::debug!(%subnet, "no block left to claim ahead"),
                Err(err) => {
                    tracing::warn!(%subnet, error = %err, "cannot claim the next block ahead of need")
                }
            }
        });
    }

    /// The blocks that would give room for what `err` wanted; `None` for other errors.
    fn wanted_blocks(&self, err: &IpamError) -> Result<Option<Vec<Ipv4Net>>, ApiError> {
        Ok(match err {
            IpamError::NeedBlock(subnet) => {
                Some(self.read(|alloc| unowned_blocks(alloc, *subnet))?)
            }
            IpamError::BlockNotOwned(_, block) => Some(vec![*block]),
            _ => None,
        })
    }

    /// Shows weaveDNS in `/status`.
    pub fn set_dns_status(&self, dns: DnsStatus) {
        let _ = self.inner.dns.set(dns);
    }

    /// Shows Docker's network plugin in `/status`.
    pub fn set_plugin_status(&self, plugin: PluginStatus) {
        let _ = self.inner.plugin.set(plugin);
    }

    /// What `check-alive=true` asks.
    pub fn liveness(&self) -> Arc<dyn Liveness> {
        Arc::clone(&self.inner.liveness)
    }

    /// Whether IPAM is initialised.
    pub fn is_ready(&self) -> bool {
        self.inner.ipam.get().is_some()
    }

    fn ipam(&self) -> Result<MutexGuard<'_, Ipam>, ApiError> {
        let ipam = self.inner.ipam.get().ok_or(ApiError::NotReady)?;
        // A panic while holding the lock happened before the swap in `change`, so the state is intact.
        Ok(ipam
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs `op` on a copy and saves the copy before it replaces the live allocator, so memory and
    /// disk never disagree even when the save fails.
    fn change<T>(
        &self,
        op: impl FnOnce(&mut Allocator) -> Result<T, IpamError>,
    ) -> Result<Result<T, IpamError>, ApiError> {
        let mut ipam = self.ipam()?;
        let mut next = ipam.alloc.clone();
        let result = op(&mut next);
        if result.is_ok() {
            ipam.commit(next)?;
        }
        Ok(result)
    }

    /// Reads the allocator.
    ///
    /// # Errors
    /// [`ApiError::NotReady`] before [`ApiState::set_ready`].
    pub fn read<T>(&self, op: impl FnOnce(&Allocator) -> T) -> Result<T, ApiError> {
        Ok(op(&self.ipam()?.alloc))
    }

    /// Applies `op` to the allocator, saving the result when the allocations changed: the entry
    /// point for what is not an HTTP request (Docker events, the periodic sweep of dead marks).
    ///
    /// # Errors
    /// [`ApiError::NotReady`] before [`ApiState::set_ready`], [`ApiError::Persist`] when the
    /// change could not be saved (the allocator then keeps its previous state).
    pub fn update<T>(&self, op: impl FnOnce(&mut Allocator) -> T) -> Result<T, ApiError> {
        let mut ipam = self.ipam()?;
        let mut next = ipam.alloc.clone();
        let result = op(&mut next);
        ipam.commit(next)?;
        Ok(result)
    }

    async fn cancelled(&self, id: &str, check_alive: bool) -> bool {
        check_alive && !self.inner.liveness.is_alive(id).await
    }
}

/// The API's routes over `state`. Wrong method on a known path gives 405, an unknown path 404,
/// as with the original's gorilla/mux.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(route::STATUS, get(status))
        .route(route::DEFAULT_SUBNET, get(default_subnet))
        .route(route::IPS, get(list))
        .route(
            route::IP_OF,
            post(allocate_default)
                .get(lookup_default)
                .delete(delete_all),
        )
        .route(route::IP_ONE, delete(free_one))
        .route(route::IP_IN, post(allocate_in).put(claim).get(lookup_in))
        .with_state(state)
}

/// Failures that are not the allocator's own refusals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("IPAM is not initialised yet")]
    NotReady,
    #[error("unable to persist IPAM state: {0}")]
    Persist(StoreError),
    /// This peer's blocks are full and the store cannot be asked for another.
    #[error("this peer's address blocks are full and no new block can be claimed: {0}")]
    Store(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self {
            Self::NotReady => ErrorKind::NotReady,
            Self::Persist(_) => ErrorKind::Internal,
            Self::Store(_) => ErrorKind::NotReady,
        };
        tracing::error!(error = %self, "[allocator]");
        go_error(kind.status(), &self.to_string())
    }
}

/// The blocks for `subnet` this peer does not own yet: where a claim may give it room.
fn unowned_blocks(alloc: &Allocator, subnet: Ipv4Net) -> Vec<Ipv4Net> {
    alloc
        .blocks_for(subnet)
        .into_iter()
        .filter(|b| !alloc.owns_block(*b))
        .collect()
}

/// A peer claims its next block for a subnet once the blocks it owns there are this full, so
/// that a short store outage does not stop containers from starting (MULTIHOST.md §4.2).
const CLAIM_AHEAD_AT: (u64, u64) = (3, 4);

/// Whether owned blocks filled `used` of `total` call for claiming the next one already.
fn should_claim_ahead(used: u64, total: u64) -> bool {
    total > 0 && used * CLAIM_AHEAD_AT.1 >= total * CLAIM_AHEAD_AT.0
}

/// How many addresses of `subnet` inside `universe` could ever be handed out.
fn subnet_hosts(subnet: Ipv4Net, universe: Ipv4Net) -> u64 {
    let lo = u64::from(u32::from(subnet.network())).max(u64::from(u32::from(universe.network())));
    let hi =
        u64::from(u32::from(subnet.broadcast())).min(u64::from(u32::from(universe.broadcast())));
    (hi + 1).saturating_sub(lo).saturating_sub(2)
}

/// What Go's `http.Error` sends: text/plain, nosniff, the message and a newline.
fn go_error(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn bad_request(message: &str) -> Response {
    bad_request_for("[allocator]", message)
}

/// A 400 as the original answers it, logged under `component`.
pub(crate) fn bad_request_for(component: &str, message: &str) -> Response {
    tracing::warn!("{component}: {message}");
    go_error(ErrorKind::Refused.status(), message)
}

fn cancelled_response(what: &str, id: &str) -> Response {
    tracing::info!("[allocator]: {what} request for {id} cancelled");
    "cancelled".into_response()
}

/// A form value, read like Go's `r.FormValue(name)`: the url-encoded body (sent with its content
/// type) wins over the query string.
pub(crate) fn form_value<'a>(name: &str, query: &'a Params, form: &'a Body) -> Option<&'a str> {
    let from_body = form.as_ref().ok().and_then(|Form(f)| f.get(name));
    from_body.or_else(|| query.get(name)).map(String::as_str)
}

/// A boolean form value: `true` is the only truth, as `r.FormValue(name) == "true"`.
pub(crate) fn form_flag(name: &str, query: &Params, form: &Body) -> bool {
    form_value(name, query, form) == Some("true")
}

pub(crate) type Params = Query<HashMap<String, String>>;
pub(crate) type Body = Result<Form<HashMap<String, String>>, FormRejection>;

fn cidr_text(addrs: &[Ipv4Net]) -> String {
    let mut text = String::new();
    for (i, cidr) in addrs.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{cidr}");
    }
    text
}

async fn status(State(state): State<ApiState>) -> Response {
    let ready = state.is_ready();
    // As the original: `idle` until the allocator holds something, then `ready`; before that the
    // saved state is still being loaded and reconciled with the running containers.
    let ipam_status = match state.ipam() {
        Ok(ipam) if ipam.alloc.owners().next().is_some() => "ready",
        Ok(_) => "idle",
        Err(_) => "initialising",
    };
    let mut body = [
        line("Version", env!("CARGO_PKG_VERSION")),
        "\n".to_owned(),
        state
            .inner
            .router_lines
            .get()
            .map_or_else(String::new, |lines| {
                format!("{}{}\n", line("Service", "router"), (lines.0)())
            }),
        line("Service", "ipam"),
        line("Status", ipam_status),
        line("Range", &state.inner.universe),
        line("DefaultSubnet", &state.inner.default_subnet),
    ]
    .concat();
    if let Some(dns) = state.inner.dns.get() {
        let upstreams: Vec<String> = dns.upstreams.iter().map(|u| u.ip().to_string()).collect();
        body.push('\n');
        for (label, value) in [
            ("Service", "dns".to_owned()),
            ("Domain", dns.registry.domain().to_owned()),
            ("Upstream", upstreams.join(", ")),
            ("TTL", dns.ttl.to_string()),
            ("Entries", dns.registry.entries().len().to_string()),
        ] {
            body.push_str(&line(label, &value));
        }
    }
    if let Some(plugin) = state.inner.plugin.get() {
        body.push('\n');
        body.push_str(&line("Service", "plugin"));
        body.push_str(&line("DriverName", &plugin.name));
        body.push_str(&line("Socket", plugin.socket.display()));
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

async fn default_subnet(State(state): State<ApiState>) -> String {
    state.inner.default_subnet.to_string()
}

async fn allocate(state: &ApiState, id: &str, subnet: Ipv4Net, check_alive: bool) -> Response {
    if state.cancelled(id, check_alive).await {
        return cancelled_response("Allocate", id);
    }
    match state
        .change_claiming(|alloc| alloc.allocate(id, subnet, check_alive))
        .await
    {
        Ok(Ok(cidr)) => {
            tracing::debug!(%id, %cidr, "allocated");
            state.claim_ahead(subnet);
            cidr.to_string().into_response()
        }
        Ok(Err(err)) => bad_request(&err.to_string()),
        Err(err) => err.into_response(),
    }
}

async fn allocate_default(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Params,
    form: Body,
) -> Response {
    let check_alive = form_flag("check-alive", &query, &form);
    let subnet = state.inner.default_subnet;
    allocate(&state, &id, subnet, check_alive).await
}

async fn allocate_in(
    State(state): State<ApiState>,
    Path((id, net, prefix)): Path<(String, String, String)>,
    query: Params,
    form: Body,
) -> Response {
    let subnet = match ipam::parse_subnet(&format!("{net}/{prefix}")) {
        Ok(subnet) => subnet,
        Err(err) => return bad_request(&err.to_string()),
    };
    let check_alive = form_flag("check-alive", &query, &form);
    allocate(&state, &id, subnet, check_alive).await
}

async fn claim(
    State(state): State<ApiState>,
    Path((id, ip, prefix)): Path<(String, String, String)>,
    query: Params,
    form: Body,
) -> Response {
    let cidr = match ipam::parse_cidr(&format!("{ip}/{prefix}")) {
        Ok(cidr) => cidr,
        Err(err) => return bad_request(&err.to_string()),
    };
    // `noErrorOnUnknown` only matters when another peer may own the address; a lone host owns the
    // whole range, so the flag is accepted and has nothing to change.
    let check_alive = form_flag("check-alive", &query, &form);
    if state.cancelled(&id, check_alive).await {
        return cancelled_response("Claim", &id);
    }
    match state
        .change_claiming(|alloc| alloc.claim(&id, cidr, check_alive))
        .await
    {
        Ok(Ok(())) => {
            tracing::debug!(%id, %cidr, "claimed");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(err)) => bad_request(&format!("Unable to claim: {err}")),
        Err(err) => err.into_response(),
    }
}

async fn lookup(state: &ApiState, id: &str, subnet: Ipv4Net) -> Response {
    match state.ipam() {
        Ok(ipam) => cidr_text(&ipam.alloc.lookup(id, subnet)).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn lookup_default(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let subnet = state.inner.default_subnet;
    lookup(&state, &id, subnet).await
}

async fn lookup_in(
    State(state): State<ApiState>,
    Path((id, net, prefix)): Path<(String, String, String)>,
) -> Response {
    match ipam::parse_subnet(&format!("{net}/{prefix}")) {
        Ok(subnet) => lookup(&state, &id, subnet).await,
        Err(err) => bad_request(&err.to_string()),
    }
}

#[derive(Serialize)]
struct Owned {
    /// `null` when nothing is owned, as the original's nil slice encodes.
    owned: Option<Vec<Mapping>>,
}

#[derive(Serialize)]
struct Mapping {
    containerid: String,
    addrs: Vec<String>,
}

async fn list(State(state): State<ApiState>) -> Response {
    let ipam = match state.ipam() {
        Ok(ipam) => ipam,
        Err(err) => return err.into_response(),
    };
    let mappings: Vec<Mapping> = ipam
        .alloc
        .owners()
        .map(|(id, owner)| Mapping {
            containerid: id.to_owned(),
            addrs: owner.cidrs.iter().map(ToString::to_string).collect(),
        })
        .collect();
    drop(ipam);
    let owned = Owned {
        owned: (!mappings.is_empty()).then_some(mappings),
    };
    // Go's json.Encoder ends the document with a newline.
    let mut body = serde_json::to_string(&owned)
        .unwrap_or_else(|_| unreachable!("strings and lists always serialise"));
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn delete_all(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.change(|alloc| alloc.delete(&id)) {
        Ok(Ok(freed)) => {
            tracing::debug!(%id, freed = %cidr_text(&freed), "released");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(err)) => bad_request(&err.to_string()),
        Err(err) => err.into_response(),
    }
}

async fn free_one(
    State(state): State<ApiState>,
    Path((id, ip)): Path<(String, String)>,
) -> Response {
    let addr = match ipam::parse_ip(&ip) {
        Ok(addr) => addr,
        Err(err) => return bad_request(&err.to_string()),
    };
    match state.change(|alloc| alloc.free(&id, addr)) {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(err)) => bad_request(&format!("Unable to free: {err}")),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_block_is_claimed_at_three_quarters() {
        let cases = [
            (0, 0, false),
            (47, 64, false),
            (48, 64, true),
            (64, 64, true),
            (46, 62, false),
            (47, 62, true),
        ];
        for (used, total, want) in cases {
            assert_eq!(
                super::should_claim_ahead(used, total),
                want,
                "{used}/{total}"
            );
        }
    }
}
