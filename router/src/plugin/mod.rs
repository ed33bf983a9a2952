//! Docker's network plugin, served by the router: the remote network driver and the IPAM driver
//! of libnetwork's plugin protocol (`docs/remote.md`, `docs/ipam.md`) on a unix socket that
//! Docker finds by name in `/run/docker/plugins/`, so that `docker network create -d weave
//! --ipam-driver weave` and `docker run --net=<that network>` put containers on the `weave`
//! bridge with addresses from the router's own allocator.
//!
//! # Layout
//! - [`protocol`]: method names, request bodies, fixed answers, the `{"Err": ...}` body (pure).
//! - [`ipam`]: pools and addresses on the shared allocator (pure).
//! - [`network`]: endpoints as veths on the bridge, and what `Join` answers (pure, plus
//!   `weavenet` for the veth itself).
//! - [`names`]: weaveDNS names of the containers on the plugin's networks, found through Docker.
//! - [`reconcile`]: at start, the plugin's addresses Docker no longer uses are freed.
//! - here: the socket, the routing of every request to one handler, and the error mapping. A
//!   bad request is answered with an error body and a non-200 status, never a dropped
//!   connection.
//!
//! Not done: external connectivity for containers on the network alone (a second network gives
//! it); they reach weaveDNS through a route to the host's weave address (see `network`).

pub mod ipam;
pub mod names;
pub mod network;
pub mod protocol;
pub mod reconcile;
pub mod revive;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ipnet::Ipv4Net;
use serde_json::Value;
use tokio::net::UnixListener;

use crate::http_api::{ApiError, ApiState, Room};
use crate::ipam::IpamError;
use protocol::Call;

/// The directory Docker looks for plugin sockets in.
pub const DEFAULT_DIR: &str = "/run/docker/plugins";
/// The plugin's name, which is the driver name users give (`-d weave`).
pub const DEFAULT_NAME: &str = "weave";

/// Why a call was refused, or the plugin could not be served.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown method {0}")]
    UnknownMethod(String),
    #[error("bad {method} request: {source}")]
    BadRequest {
        method: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading the request: {0}")]
    Body(#[from] BytesRejection),
    #[error("{method} {path}: plugin methods are called with POST")]
    NotPost { method: Method, path: String },
    /// The plugin's own refusals, with the message Docker shows.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Net(#[from] weavenet::NetError),
    #[error("another process serves the plugin socket {0}; is another weave router running?")]
    InUse(PathBuf),
    #[error("{op} {path}: {source}")]
    Socket {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PluginError {
    /// Docker shows the message whatever the status; the status tells a log reader whose fault
    /// it was.
    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownMethod(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::NotPost { .. } => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The plugin's state: the router's allocator and the bridge endpoints are plugged into.
#[derive(Debug, Clone)]
pub struct Plugin {
    api: ApiState,
    bridge: String,
    /// weaveDNS; `None` with `--no-dns`.
    names: Option<names::Names>,
    /// weaveDNS's address, which containers on the network are given a route to.
    dns_server: Option<Ipv4Addr>,
}

impl Plugin {
    /// A plugin allocating through `api` and plugging endpoints into `bridge`.
    pub fn new(api: ApiState, bridge: &str) -> Self {
        Self {
            api,
            bridge: bridge.to_owned(),
            names: None,
            dns_server: None,
        }
    }

    /// Registers the containers that join in weaveDNS through `names`, and gives them a route
    /// to weaveDNS at `server`.
    #[must_use]
    pub fn with_names(mut self, names: names::Names, server: Ipv4Addr) -> Self {
        self.names = Some(names);
        self.dns_server = Some(server);
        self
    }

    /// The route to weaveDNS for a joining container: the host's address on the bridge (as
    /// `weave expose` gives it, and kept by the same owner, so `weave ps` shows it and `weave
    /// hide` takes it back) put there first. `None`, with a warning, when that fails: the
    /// container then starts without it rather than not at all.
    async fn dns_route(&self) -> Option<network::DnsRoute> {
        let server = self.dns_server?;
        let exposed = async {
            let cidr = self.api.allocate_default(api::route::EXPOSE_ID).await??;
            weavenet::expose(&self.bridge, cidr).await?;
            Ok::<_, PluginError>(cidr)
        };
        match exposed.await {
            Ok(cidr) => Some(network::DnsRoute {
                server,
                host: cidr.addr(),
            }),
            Err(err) => {
                tracing::warn!(error = %err, "[plugin] no route to weaveDNS for the container: cannot put the host's address on the bridge");
                None
            }
        }
    }

    /// `RequestAddress`, claiming a block in the store first when this peer's are full (on a
    /// network of several hosts).
    async fn request_address(
        &self,
        req: &protocol::RequestAddress,
    ) -> Result<Ipv4Net, PluginError> {
        for _ in 0..3 {
            match self.api.update(|alloc| ipam::request_address(alloc, req))? {
                Err(PluginError::Ipam(err)) => match self.api.make_room(&err).await? {
                    Room::Made => {}
                    Room::Refused(err) => return Err(err.into()),
                    Room::Unchanged => return Err(err.into()),
                },
                other => return other,
            }
        }
        Err(PluginError::Refused(
            "the blocks claimed for this request were taken as soon as they were claimed".into(),
        ))
    }

    /// Carries out one call; its answer's JSON.
    ///
    /// # Errors
    /// The refusal to send back as `{"Err": ...}`.
    pub async fn handle(&self, call: Call) -> Result<Value, PluginError> {
        Ok(match call {
            Call::Activate => protocol::activate(),
            Call::NetCapabilities => protocol::net_capabilities(),
            Call::IpamCapabilities => protocol::ipam_capabilities(),
            Call::AddressSpaces => protocol::address_spaces(),
            Call::Acknowledge(what) => {
                tracing::debug!("[plugin] {what}");
                protocol::empty()
            }
            Call::CreateNetwork(req) => {
                network::create_network(&req)?;
                let pools: Vec<&str> = req
                    .ipv4_data
                    .iter()
                    .flatten()
                    .map(|d| d.pool.as_str())
                    .collect();
                tracing::info!(network = %req.network_id, pools = %pools.join(" "), "[plugin] network created");
                protocol::empty()
            }
            Call::DeleteNetwork(req) => {
                tracing::info!(network = %req.network_id, "[plugin] network deleted");
                protocol::empty()
            }
            Call::CreateEndpoint(req) => {
                network::create_endpoint(&req)?;
                tracing::debug!(endpoint = %req.endpoint_id, "[plugin] endpoint created");
                protocol::empty()
            }
            Call::Join(req) => {
                let (host, peer) = network::veth_names(&req.endpoint_id)?;
                let created = weavenet::create_endpoint_veth(&self.bridge, &host, &peer).await?;
                tracing::info!(endpoint = %req.endpoint_id, veth = %host, created, "[plugin] join");
                if let Some(names) = self.names.clone() {
                    // Docker lists the container on the network only once this answer is in.
                    tokio::spawn(async move {
                        names
                            .register_endpoint(&req.network_id, &req.endpoint_id)
                            .await;
                    });
                }
                network::join_answer(&peer, self.dns_route().await)
            }
            Call::Leave(req) => {
                tracing::debug!(endpoint = %req.endpoint_id, "[plugin] leave");
                protocol::empty()
            }
            Call::DeleteEndpoint(req) => {
                let (host, _) = network::veth_names(&req.endpoint_id)?;
                let removed = weavenet::delete_endpoint_veth(&host).await?;
                tracing::info!(endpoint = %req.endpoint_id, veth = %host, removed, "[plugin] endpoint deleted");
                protocol::empty()
            }
            Call::EndpointOperInfo(req) => network::oper_info(&req)?,
            Call::RequestPool(req) => {
                let answer = self.api.update(|alloc| ipam::request_pool(alloc, &req))??;
                tracing::info!(pool = %answer["PoolID"], "[plugin] pool");
                answer
            }
            Call::ReleasePool(req) => {
                tracing::debug!(pool = %req.pool_id, "[plugin] pool released");
                protocol::empty()
            }
            Call::RequestAddress(req) => {
                let cidr = self.request_address(&req).await?;
                tracing::info!(%cidr, pool = %req.pool_id, gateway = req.is_gateway(), "[plugin] address");
                serde_json::json!({ "Address": cidr.to_string(), "Data": {} })
            }
            Call::ReleaseAddress(req) => {
                let held = self
                    .api
                    .update(|alloc| ipam::release_address(alloc, &req))??;
                tracing::info!(address = %req.address, held = held.is_some(), "[plugin] address released");
                if let (Some(addr), Some(names)) = (held, &self.names) {
                    names.forget(addr);
                }
                protocol::empty()
            }
        })
    }
}

/// The plugin's routes: every path goes to one handler, which reads the method from the path.
pub fn router(plugin: Plugin) -> Router {
    Router::new().fallback(serve_call).with_state(plugin)
}

async fn serve_call(
    State(plugin): State<Plugin>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = uri.path();
    let outcome = if method == Method::POST {
        match body {
            Ok(body) => match protocol::parse(path, &body) {
                Ok(call) => plugin.handle(call).await,
                Err(err) => Err(err),
            },
            Err(rejection) => Err(rejection.into()),
        }
    } else {
        Err(PluginError::NotPost {
            method,
            path: path.to_owned(),
        })
    };
    match outcome {
        Ok(answer) => reply(StatusCode::OK, &answer),
        Err(err) => {
            tracing::warn!(path, error = %err, "[plugin] refused");
            reply(err.status(), &protocol::error(&err.to_string()))
        }
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, protocol::CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// Where Docker looks for the plugin called `name`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Listens on `path`, creating its directory. A socket left by a router that died is replaced;
/// one that another process still answers on is not taken over.
///
/// # Errors
/// [`PluginError::InUse`], or what failed with the directory or the socket.
pub fn bind(path: &Path) -> Result<UnixListener, PluginError> {
    let io = |op: &'static str| {
        move |source| PluginError::Socket {
            op,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(PluginError::InUse(path.to_owned()));
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing the stale socket")(err));
        }
        _ => {}
    }
    UnixListener::bind(path).map_err(io("listening on"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http_api::AssumeAlive;
    use crate::ipam::Allocator;
    use crate::store::Store;

    fn plugin(dir: &Path) -> Plugin {
        let alloc = Allocator::new(
            "10.32.0.0/12".parse().unwrap(),
            "10.32.0.0/12".parse().unwrap(),
        )
        .unwrap();
        let state = ApiState::ready(alloc, Store::new(dir), Arc::new(AssumeAlive));
        Plugin::new(state, "nonexistentbr0")
    }

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, String, Value) {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&bytes)));
        (status, content_type, json)
    }

    #[tokio::test]
    async fn every_answer_is_json_of_the_plugin_content_type() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(plugin(dir.path()));
        let cases: &[(&str, &str, &str, StatusCode, &str)] = &[
            (
                "POST",
                "/Plugin.Activate",
                "",
                StatusCode::OK,
                r#"{"Implements":["NetworkDriver","IpamDriver"]}"#,
            ),
            (
                "POST",
                "/IpamDriver.RequestPool",
                r#"{"Pool":"","V6":false}"#,
                StatusCode::OK,
                r#"{"Data":{"com.docker.network.gateway":"10.32.0.0/12"},"Pool":"10.32.0.0/12","PoolID":"weave:10.32.0.0/12"}"#,
            ),
            (
                "POST",
                "/IpamDriver.RequestAddress",
                r#"{"PoolID":"weave:10.32.0.0/12","Address":""}"#,
                StatusCode::OK,
                r#"{"Address":"10.32.0.1/12","Data":{}}"#,
            ),
            (
                "POST",
                "/IpamDriver.RequestAddress",
                r#"{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.1"}"#,
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"Err":"address 10.32.0.1 is already in use by another endpoint"}"#,
            ),
            (
                "POST",
                "/IpamDriver.ReleaseAddress",
                r#"{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.1"}"#,
                StatusCode::OK,
                "{}",
            ),
            (
                "POST",
                "/NetworkDriver.Join",
                "{",
                StatusCode::BAD_REQUEST,
                r#"{"Err":"bad NetworkDriver.Join request: EOF while parsing an object at line 1 column 1"}"#,
            ),
            (
                "POST",
                "/NetworkDriver.Join",
                r#"{"NetworkID":"n","EndpointID":"x"}"#,
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"Err":"malformed endpoint id \"x\""}"#,
            ),
            (
                "POST",
                "/NetworkDriver.Join",
                r#"{"NetworkID":"n","EndpointID":"0123456789abcdef"}"#,
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"Err":"bridge \"nonexistentbr0\" not present; did you launch weave?"}"#,
            ),
            (
                "POST",
                "/Nope.Nope",
                "{}",
                StatusCode::NOT_FOUND,
                r#"{"Err":"unknown method Nope.Nope"}"#,
            ),
            (
                "GET",
                "/Plugin.Activate",
                "",
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"Err":"GET /Plugin.Activate: plugin methods are called with POST"}"#,
            ),
        ];
        for (method, path, body, status, want) in cases {
            let (got_status, content_type, json) = call(&app, method, path, body).await;
            assert_eq!(got_status, *status, "{method} {path} {body}: {json}");
            assert_eq!(content_type, protocol::CONTENT_TYPE, "{path}");
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(json, want, "{method} {path} {body}");
        }
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("plugins"), "weavetest");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let live = bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(PluginError::InUse(_))));
        drop(live);
        // The file stays behind when the listener goes, as after a crash.
        assert!(path.exists());
        bind(&path).unwrap();
    }
}
