//! How a host finds the store of the network it joins (`weave launch HOST`, `weave connect
//! HOST`): the peer port where every router says which store it uses, and where a router that
//! is still alone makes one on its host first; the asking; and `store.json`, which keeps the
//! answer in the data directory so that restarts join the same store.
//!
//! Weave Net's idiom is kept: any host of the network may be named, whichever came first, and
//! a host launched alone is joined later the same way. The first host to be asked becomes the
//! store's host (one etcd member in the `weavestore` container); the hosts that ask are its
//! clients.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::client::{HttpTransport, RouterClient};
use api::{Call, route};
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::local_store::{LocalStore, LocalStoreError};

/// Weave Net's control port, where peers find each other.
pub const PEER_PORT: u16 = 6783;

/// The file in the data directory that keeps the store's endpoints.
pub const FILE_NAME: &str = "store.json";

/// What the peer port answers, and what `store.json` holds: the store's client endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEndpoints {
    pub endpoints: Vec<String>,
}

/// Why the store could not be found or kept.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0}")]
    Peer(String),
    #[error("{peer} answered something that is not a list of store endpoints: {body}")]
    Garbled { peer: String, body: String },
    #[error("{peer} has no store to give: {message}")]
    Refused { peer: String, message: String },
    #[error("{action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a store file: {source}")]
    BadFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Local(#[from] LocalStoreError),
    #[error(
        "this router was launched with --store-endpoints, which connect and forget do not \
         change: launch it again with other endpoints"
    )]
    Fixed,
    #[error(
        "forgetting {peer} would leave this host no store to use; `weave reset` takes it out \
         of the network"
    )]
    LastStore { peer: String },
}

/// `store.json` in `data_dir`, if there is one.
///
/// # Errors
/// When it cannot be read or is not a store file.
pub fn load(data_dir: &Path) -> Result<Option<StoreEndpoints>, DiscoveryError> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| DiscoveryError::BadFile { path, source }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiscoveryError::File {
            action: "reading",
            path,
            source,
        }),
    }
}

/// Writes `store.json` in `data_dir` (whole or not at all: through a rename).
///
/// # Errors
/// When it cannot be written.
pub fn save(data_dir: &Path, store: &StoreEndpoints) -> Result<(), DiscoveryError> {
    let path = data_dir.join(FILE_NAME);
    let tmp = path.with_extension("json.tmp");
    let mut bytes = serde_json::to_vec_pretty(store)
        .unwrap_or_else(|_| unreachable!("a list of strings always serialises"));
    bytes.push(b'\n');
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| DiscoveryError::File {
            action: "writing",
            path,
            source,
        })
}

/// Removes `store.json` from `data_dir`; whether there was one.
///
/// # Errors
/// When it is there but cannot be removed.
pub fn remove(data_dir: &Path) -> Result<bool, DiscoveryError> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DiscoveryError::File {
            action: "removing",
            path,
            source,
        }),
    }
}

/// `peer` as `host:port` on the peer port: a bare host (or IPv4 address) gets [`PEER_PORT`].
pub fn peer_addr(peer: &str) -> String {
    let peer = peer.trim();
    if peer.contains(':') {
        peer.to_owned()
    } else {
        format!("{peer}:{PEER_PORT}")
    }
}

/// The host part of an endpoint or peer: `http://10.0.0.1:2379` and `10.0.0.1:6783` are both
/// `10.0.0.1`.
pub fn host_of(endpoint: &str) -> &str {
    let rest = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    }
}

/// `current` with the endpoints of `found` added, each once, in order.
pub fn merged(current: &[String], found: &[String]) -> Vec<String> {
    let mut all = current.to_vec();
    for endpoint in found {
        if !all.contains(endpoint) {
            all.push(endpoint.clone());
        }
    }
    all
}

/// `current` without the endpoints on `host`.
pub fn without_host(current: &[String], host: &str) -> Vec<String> {
    current
        .iter()
        .filter(|endpoint| host_of(endpoint) != host)
        .cloned()
        .collect()
}

/// Asks the router at `peer` (`host[:port]`, port [`PEER_PORT`] by default) which store it
/// uses; a router still alone makes one on its host first, unless `may_make` is false (a
/// router asking its own peers on behalf of another).
///
/// # Errors
/// When it cannot be reached or has none to give.
pub async fn ask(peer: &str, may_make: bool) -> Result<Vec<String>, DiscoveryError> {
    let addr = peer_addr(peer);
    let client = RouterClient::over(HttpTransport::new(&addr));
    let path = if may_make {
        route::PEER_STORE.to_owned()
    } else {
        format!("{}?make=false", route::PEER_STORE)
    };
    let answer = client
        .call(&Call::new(axum::http::Method::POST, path, &[]))
        .await
        .map_err(|err| DiscoveryError::Peer(err.to_string()))?;
    if !answer.is_success() {
        return Err(DiscoveryError::Refused {
            peer: addr,
            message: answer.message(),
        });
    }
    match serde_json::from_str::<StoreEndpoints>(&answer.body) {
        Ok(found) if !found.endpoints.is_empty() => Ok(found.endpoints),
        _ => Err(DiscoveryError::Garbled {
            peer: addr,
            body: answer.body,
        }),
    }
}

/// What this router answers on the peer port.
#[derive(Debug, Clone)]
pub enum Answerer {
    /// It is in a network: the endpoints it uses.
    Joined(Vec<String>),
    /// It is not yet: asked, it looks for a store through its own `peers` (`weave launch
    /// HOST...`), and makes one on its host when there is none to find (see [`decide`]).
    Alone {
        store: Arc<LocalStore>,
        peers: Vec<String>,
    },
}

/// What a router that is not on a network yet does when a peer asks it for a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Make one on this host.
    Make,
    /// Say "not yet": the asker tries again later, or elsewhere.
    NotYet,
}

/// The rule that keeps two hosts from each making a store. `may_make` is false when the asker
/// only relays (it asks its own peers for someone else). A router launched alone makes the store
/// when asked: that is the `host2$ weave launch host1` case. A router that is looking for a
/// store itself (it was given peers, none of which had one) makes it only for an asker at a
/// higher address. So of two hosts launched naming each other, exactly the lower makes the
/// store and the higher becomes its client, whichever asks first.
fn decide(may_make: bool, has_peers: bool, here: Ipv4Addr, asker: std::net::IpAddr) -> Decision {
    let outranks = match asker {
        std::net::IpAddr::V4(asker) => here < asker,
        std::net::IpAddr::V6(_) => true,
    };
    if may_make && (!has_peers || outranks) {
        Decision::Make
    } else {
        Decision::NotYet
    }
}

/// A peer-port connection's local address (the address the asking peer reaches this host at,
/// and so the one a store made here must advertise) and the asker's.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connected<IncomingStream<'_, TcpListener>> for Arrival {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let local = stream
            .io()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        Self {
            local,
            remote: *stream.remote_addr(),
        }
    }
}

/// Serves the peer port on `listener` until `stop` resolves.
pub fn serve(
    listener: TcpListener,
    answerer: Answerer,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let app = axum::Router::new()
        .route(route::PEER_STORE, axum::routing::post(store))
        .with_state(answerer)
        .into_make_service_with_connect_info::<Arrival>();
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %err, "peer port server");
        }
    });
}

#[derive(Debug, Deserialize)]
struct StoreQuery {
    make: Option<bool>,
}

async fn store(
    State(answerer): State<Answerer>,
    ConnectInfo(arrival): ConnectInfo<Arrival>,
    axum::extract::Query(query): axum::extract::Query<StoreQuery>,
) -> Response {
    let (store, peers) = match answerer {
        Answerer::Joined(endpoints) => return found(endpoints),
        Answerer::Alone { store, peers } => (store, peers),
    };
    if let Some(endpoints) = store.made().await {
        return found(endpoints);
    }
    let here = match arrival.local.ip() {
        std::net::IpAddr::V4(addr) if !addr.is_loopback() && !addr.is_unspecified() => addr,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "asked at {other}, an address other hosts cannot reach this one at: name \
                     this host by its address on the network between the hosts"
                ),
            );
        }
    };
    let may_make = query.make.unwrap_or(true);
    if may_make {
        // A store one of our own peers already has is the network's: relay it, and join it.
        for peer in &peers {
            if let Ok(endpoints) = ask(peer, false).await {
                return match store.adopt(endpoints).await {
                    Ok(endpoints) => found(endpoints),
                    Err(err) => refuse(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
                };
            }
        }
    }
    match decide(may_make, !peers.is_empty(), here, arrival.remote.ip()) {
        Decision::NotYet => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this router is not on a network yet; ask again".to_owned(),
        ),
        Decision::Make => match store.make(here).await {
            Ok(endpoints) => found(endpoints),
            Err(err) => {
                tracing::error!(error = %err, "making a store for a peer that asked");
                refuse(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
        },
    }
}

fn found(endpoints: Vec<String>) -> Response {
    axum::Json(StoreEndpoints { endpoints }).into_response()
}

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}

impl IntoResponse for DiscoveryError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Peer(_) | Self::Garbled { .. } | Self::Refused { .. } => StatusCode::BAD_GATEWAY,
            Self::Fixed | Self::LastStore { .. } => StatusCode::CONFLICT,
            Self::File { .. } | Self::BadFile { .. } | Self::Local(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        refuse(status, self.to_string())
    }
}

/// What `weave connect` and `weave forget` change: `store.json`, then the router starts again
/// on it.
#[derive(Debug, Clone)]
pub struct Control {
    pub data_dir: PathBuf,
    /// The store came from `--store-endpoints`, which `store.json` does not override.
    pub fixed: bool,
    pub rejoin: Arc<tokio::sync::Notify>,
}

impl Control {
    /// The endpoints in `store.json`; none when there is no such file.
    fn current(&self) -> Result<Vec<String>, DiscoveryError> {
        Ok(load(&self.data_dir)?
            .map(|saved| saved.endpoints)
            .unwrap_or_default())
    }

    /// Keeps `endpoints` in `store.json`, then has the router start again on them.
    fn switch(&self, endpoints: &[String]) -> Result<(), DiscoveryError> {
        save(
            &self.data_dir,
            &StoreEndpoints {
                endpoints: endpoints.to_vec(),
            },
        )?;
        schedule_rejoin(&self.rejoin);
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct PeerQuery {
    peer: String,
}

/// `POST /connect?peer=HOST` and `POST /forget?peer=HOST` on the router's HTTP API.
pub fn control_router(control: Control) -> axum::Router {
    axum::Router::new()
        .route(route::CONNECT, axum::routing::post(connect))
        .route(route::FORGET, axum::routing::post(forget))
        .with_state(control)
}

async fn connect(
    State(control): State<Control>,
    axum::extract::Query(query): axum::extract::Query<PeerQuery>,
) -> Result<String, DiscoveryError> {
    if control.fixed {
        return Err(DiscoveryError::Fixed);
    }
    let found = ask(&query.peer, true).await?;
    let current = control.current()?;
    let endpoints = merged(&current, &found);
    if endpoints == current {
        return Ok(format!(
            "already using the store of {} ({})\n",
            query.peer,
            found.join(",")
        ));
    }
    control.switch(&endpoints)?;
    Ok(format!(
        "store {}: the router starts again on it\n",
        endpoints.join(",")
    ))
}

async fn forget(
    State(control): State<Control>,
    axum::extract::Query(query): axum::extract::Query<PeerQuery>,
) -> Result<String, DiscoveryError> {
    if control.fixed {
        return Err(DiscoveryError::Fixed);
    }
    let current = control.current()?;
    let mut endpoints = without_host(&current, host_of(&query.peer));
    // A host may be named by a name where the endpoints hold its address.
    if let Ok(addrs) = tokio::net::lookup_host(peer_addr(&query.peer)).await {
        for addr in addrs {
            endpoints = without_host(&endpoints, &addr.ip().to_string());
        }
    }
    if endpoints == current {
        return Ok(format!(
            "{} is not one of the store's endpoints\n",
            query.peer
        ));
    }
    if endpoints.is_empty() {
        return Err(DiscoveryError::LastStore { peer: query.peer });
    }
    control.switch(&endpoints)?;
    Ok(format!(
        "forgot {}: store {}; the router starts again on it\n",
        query.peer,
        endpoints.join(",")
    ))
}

/// Asks the router to start again once the answer is on its way.
pub fn schedule_rejoin(rejoin: &Arc<tokio::sync::Notify>) {
    let rejoin = rejoin.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        rejoin.notify_one();
    });
}

/// Keeps asking `peers` in turn until one gives a store; returns its endpoints. Each round waits
/// longer, up to half a minute, as Weave Net kept trying to connect to the peers it was given.
pub async fn find(peers: &[String]) -> Vec<String> {
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        for peer in peers {
            match ask(peer, true).await {
                Ok(endpoints) => {
                    tracing::info!(%peer, store = %endpoints.join(","), "found the network's store");
                    return endpoints;
                }
                Err(err) => tracing::warn!(%peer, error = %err, "no store from this peer yet"),
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_get_the_peer_port_unless_they_name_one() {
        for (given, wanted) in [
            ("host1", "host1:6783"),
            ("10.0.0.1", "10.0.0.1:6783"),
            ("10.0.0.1:7000", "10.0.0.1:7000"),
            ("host1:7000", "host1:7000"),
            (" host1 ", "host1:6783"),
        ] {
            assert_eq!(peer_addr(given), wanted, "{given}");
        }
    }

    #[test]
    fn of_two_hosts_looking_for_a_store_only_the_lower_makes_it() {
        let low = Ipv4Addr::new(10, 0, 0, 1);
        let high = Ipv4Addr::new(10, 0, 0, 2);
        // (may_make, has_peers, here, asker) -> decision
        let cases = [
            (true, false, high, low, Decision::Make),
            (true, true, low, high, Decision::Make),
            (true, true, high, low, Decision::NotYet),
            (false, false, low, high, Decision::NotYet),
            (false, true, low, high, Decision::NotYet),
        ];
        for (may_make, has_peers, here, asker, wanted) in cases {
            assert_eq!(
                decide(may_make, has_peers, here, asker.into()),
                wanted,
                "may_make {may_make} has_peers {has_peers} here {here} asker {asker}"
            );
        }
    }

    #[test]
    fn endpoints_are_matched_by_host() {
        assert_eq!(host_of("http://10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(host_of("10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(host_of("https://store.example/"), "store.example");
        assert_eq!(host_of("host1"), "host1");
        let current = vec![
            "http://10.0.0.1:2379".to_owned(),
            "http://10.0.0.2:2379".to_owned(),
        ];
        assert_eq!(
            merged(
                &current,
                &[
                    "http://10.0.0.2:2379".to_owned(),
                    "http://10.0.0.3:2379".to_owned()
                ]
            ),
            vec![
                "http://10.0.0.1:2379".to_owned(),
                "http://10.0.0.2:2379".to_owned(),
                "http://10.0.0.3:2379".to_owned()
            ]
        );
        assert_eq!(
            without_host(&current, "10.0.0.1"),
            vec!["http://10.0.0.2:2379".to_owned()]
        );
    }

    #[test]
    fn the_file_keeps_the_endpoints_and_goes_away_on_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let store = StoreEndpoints {
            endpoints: vec!["http://10.0.0.1:2379".to_owned()],
        };
        save(dir.path(), &store).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(store));
        assert!(remove(dir.path()).unwrap());
        assert!(!remove(dir.path()).unwrap());
        std::fs::write(dir.path().join(FILE_NAME), "not json").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(DiscoveryError::BadFile { .. })
        ));
    }
}
