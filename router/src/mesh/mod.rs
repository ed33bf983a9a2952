//! The router's part in a weave network of several hosts (MULTIHOST.md §4): its record and
//! liveness in the store, the address blocks it claims there, the other peers' VXLAN endpoints
//! kept as the bridge's flood list, and weaveDNS records mirrored both ways.
//!
//! The store is etcd v3 (the `etcd` crate); the data plane is the kernel's VXLAN port on the
//! `weave` bridge ([`DataPlane`]). Nothing here is needed for traffic to flow once set up: with
//! the store gone, containers keep talking and allocation goes on inside the blocks already
//! owned, and every mirror catches up when the store is back.

pub mod discovery;
pub mod growth;
pub mod http;
mod kernel;
pub mod keys;
pub mod local_store;
mod mirror;
mod names;
mod peers;
pub mod probe;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use etcd::{Client, Created, Keys};
use ipnet::Ipv4Net;

use crate::dns::registry::Registry;
use crate::http_api::{ApiState, BlockClaim, BlockSource, BoxFuture};
use keys::{BlockOwner, NetConfig, PeerRecord};

pub use kernel::KernelVxlan;
pub use peers::flood_list;

/// Who this peer is and how it joins.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store's client endpoints, `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// The peer's name: unique and stable (a MAC address, as Weave Net's).
    pub name: String,
    /// The host's name, for people.
    pub nickname: String,
    /// This host's underlay address: where the others send its VXLAN traffic.
    pub vtep: Ipv4Addr,
    pub mtu: u32,
    /// How long after its last keepalive this peer is shown unreachable to the others.
    pub lease_ttl: std::time::Duration,
    pub net: NetConfig,
}

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(
        "the store's network settings differ from this peer's (store: range {} blocks /{} VNI {} \
         port {}; here: range {} blocks /{} VNI {} port {}): launch with the same \
         --ipalloc-range and VXLAN port as the other peers",
        .stored.range, .stored.block_len, .stored.vni, .stored.port,
        .ours.range, .ours.block_len, .ours.vni, .ours.port
    )]
    ConfigMismatch { stored: NetConfig, ours: NetConfig },
    #[error("the store holds unreadable network settings at {key}")]
    BadConfig { key: String },
    #[error(transparent)]
    Store(#[from] etcd::Error),
}

/// Why `weave rmpeer` refused.
#[derive(Debug, thiserror::Error)]
pub enum RmPeerError {
    #[error("unknown peer {0}")]
    Unknown(String),
    #[error("peer {0} is alive; stop it first, or use --force")]
    Alive(String),
    #[error("a peer cannot remove itself; use `weave reset` on its host")]
    Itself,
    #[error("the store cannot be reached: {0}")]
    Store(#[from] etcd::Error),
}

/// What `weave rmpeer` took over.
#[derive(Debug, Clone)]
pub struct TakenOver {
    /// The removed peer, as `name(nickname)`.
    pub peer: String,
    pub blocks: Vec<Ipv4Net>,
}

/// Keeps the flood list of the VXLAN port: the seam between the mesh and the kernel.
pub trait DataPlane: Send + Sync + fmt::Debug {
    /// Makes the flood list exactly `vteps`.
    fn set_flood<'a>(&'a self, vteps: &'a [Ipv4Addr]) -> BoxFuture<'a, Result<(), String>>;
}

/// What this peer knows of the network: the store's copy, as of the last change seen.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every peer, this one included.
    pub peers: BTreeMap<String, PeerRecord>,
    /// The peers whose lease is live.
    pub alive: BTreeSet<String>,
    /// Every claimed block and its owner.
    pub blocks: BTreeMap<Ipv4Net, String>,
    /// Why the store cannot be reached, while it cannot.
    pub store_error: Option<String>,
    /// The store's health as last asked (every few seconds): members, leader, revision.
    pub store_health: Option<String>,
}

/// The running mesh: cheap to clone.
#[derive(Debug, Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Client,
    config: Config,
    view: Mutex<View>,
    dataplane: Arc<dyn DataPlane>,
}

impl Mesh {
    /// A mesh for `config`; nothing is contacted yet.
    ///
    /// # Errors
    /// [`MeshError::Store`] for bad endpoints.
    pub fn new(config: Config, dataplane: Arc<dyn DataPlane>) -> Result<Self, MeshError> {
        let store = Client::new(&config.endpoints)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                config,
                view: Mutex::default(),
                dataplane,
            }),
        })
    }

    /// This peer's settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store client.
    pub fn store(&self) -> &Client {
        &self.inner.store
    }

    /// A copy of what this peer knows of the network.
    pub fn view(&self) -> View {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, View> {
        self.inner
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the network's settings if the store has none, and refuses to go on when it has
    /// others.
    ///
    /// # Errors
    /// [`MeshError::ConfigMismatch`], [`MeshError::BadConfig`], or [`MeshError::Store`] when the
    /// store cannot be reached (the caller may go on and check later).
    pub async fn check_config(&self) -> Result<(), MeshError> {
        let ours = &self.inner.config.net;
        match self
            .inner
            .store
            .create(keys::config(), keys::write(ours), None)
            .await?
        {
            Created::Created { .. } => Ok(()),
            Created::Exists(kv) => match keys::read::<NetConfig>(&kv.value) {
                Some(stored) if stored == *ours => Ok(()),
                Some(stored) => Err(MeshError::ConfigMismatch {
                    stored,
                    ours: ours.clone(),
                }),
                None => Err(MeshError::BadConfig {
                    key: keys::config(),
                }),
            },
        }
    }

    /// Starts the tasks that keep this peer registered and alive, the flood list and the
    /// other peers' weaveDNS records in step with the store, and this peer's records in it.
    pub fn start(&self, registry: Option<Registry>, state: ApiState) {
        let probes = SocketAddrV4::new(
            self.inner.config.vtep,
            probe::probe_port(self.inner.config.net.port),
        );
        tokio::spawn(async move {
            if let Err(err) = probe::serve(probes).await {
                tracing::error!(%probes, error = %err, "cannot answer the probes of `weave status connections`");
            }
        });
        tokio::spawn(peers::register(self.clone()));
        tokio::spawn(peers::watch_store_health(self.clone()));
        tokio::spawn(peers::follow(self.clone(), state));
        if let Some(registry) = registry {
            tokio::spawn(names::publish(self.clone(), registry.clone()));
            tokio::spawn(names::follow(self.clone(), registry));
        }
    }

    /// Claims the first block of `candidates` no peer owns (or one this peer already owns).
    ///
    /// # Errors
    /// [`etcd::Error`] when the store cannot be reached.
    pub async fn claim_block(&self, candidates: &[Ipv4Net]) -> Result<BlockClaim, etcd::Error> {
        let me = self.inner.config.name.as_str();
        let listed = self.inner.store.get(&Keys::prefix(keys::blocks())).await?;
        let owners: BTreeMap<Ipv4Net, String> = listed
            .kvs
            .iter()
            .filter_map(|kv| {
                let owner = keys::read::<BlockOwner>(&kv.value)?;
                Some((keys::parse_block(&kv.key)?, owner.peer))
            })
            .collect();
        let mut last_owner = None;
        for &block in candidates {
            if let Some(owner) = owners.get(&block) {
                if owner == me {
                    return Ok(BlockClaim::Ours(block));
                }
                last_owner = Some(owner.clone());
                continue;
            }
            let value = keys::write(&BlockOwner {
                peer: me.to_owned(),
            });
            match self
                .inner
                .store
                .create(keys::block(block), value, None)
                .await?
            {
                Created::Created { .. } => {
                    tracing::info!(%block, "claimed address block");
                    self.lock().blocks.insert(block, me.to_owned());
                    return Ok(BlockClaim::Ours(block));
                }
                Created::Exists(kv) => {
                    let owner = keys::read::<BlockOwner>(&kv.value).map(|o| o.peer);
                    // A retried request whose first try had landed.
                    if owner.as_deref() == Some(me) {
                        return Ok(BlockClaim::Ours(block));
                    }
                    last_owner = owner;
                }
            }
        }
        Ok(match (candidates, last_owner) {
            ([block], Some(owner)) => BlockClaim::Taken {
                block: *block,
                owner: self.describe(&owner),
            },
            _ => BlockClaim::NoneFree,
        })
    }

    /// `name(nickname)`, as Weave Net shows a peer.
    pub fn describe(&self, name: &str) -> String {
        status::describe(&self.lock(), name)
    }

    /// `weave rmpeer`: in one transaction, this peer takes over every block of `who` (a name or
    /// a nickname), and its record, liveness mark and weaveDNS records go. Refused while its
    /// lease is alive, unless `force`.
    ///
    /// # Errors
    /// [`RmPeerError`].
    pub async fn remove_peer(&self, who: &str, force: bool) -> Result<TakenOver, RmPeerError> {
        let me = self.inner.config.name.clone();
        let store = &self.inner.store;
        let peers = store.get(&Keys::prefix(keys::peers())).await?;
        let records: BTreeMap<String, PeerRecord> = peers
            .kvs
            .iter()
            .filter_map(|kv| {
                let name = keys::name_under(&kv.key, &keys::peers())?;
                Some((name.to_owned(), keys::read::<PeerRecord>(&kv.value)?))
            })
            .collect();
        let name = records
            .iter()
            .find(|(name, peer)| name.as_str() == who || peer.nickname == who)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| RmPeerError::Unknown(who.to_owned()))?;
        if name == me {
            return Err(RmPeerError::Itself);
        }
        let shown = match records.get(&name) {
            Some(peer) => format!("{name}({})", peer.nickname),
            None => name.clone(),
        };
        // A block written between the read and the transaction fails the transaction, which
        // is then tried again from a fresh read.
        for _ in 0..3 {
            let listed = store.get(&Keys::prefix(keys::blocks())).await?;
            let theirs: Vec<(Ipv4Net, i64)> = listed
                .kvs
                .iter()
                .filter(|kv| keys::read::<BlockOwner>(&kv.value).is_some_and(|o| o.peer == name))
                .filter_map(|kv| Some((keys::parse_block(&kv.key)?, kv.mod_revision)))
                .collect();
            let mut txn = etcd::Txn::new();
            if !force {
                txn = txn.when(etcd::Compare::absent(keys::alive(&name)));
            }
            let owner = keys::write(&BlockOwner { peer: me.clone() });
            for (block, revision) in &theirs {
                txn = txn
                    .when(etcd::Compare::mod_revision(
                        keys::block(*block),
                        etcd::CmpOp::Equal,
                        *revision,
                    ))
                    .then(etcd::Op::put(keys::block(*block), &owner));
            }
            txn = txn
                .then(etcd::Op::Delete(Keys::key(keys::peer(&name))))
                .then(etcd::Op::Delete(Keys::key(keys::alive(&name))))
                .then(etcd::Op::Delete(Keys::prefix(keys::dns_of(&name))))
                .otherwise(etcd::Op::Get(Keys::key(keys::alive(&name))));
            let result = store.txn(txn).await?;
            if result.succeeded {
                self.remove_member_of(&name).await;
                let blocks: Vec<Ipv4Net> = theirs.iter().map(|(b, _)| *b).collect();
                let mut view = self.lock();
                for block in &blocks {
                    view.blocks.insert(*block, me.clone());
                }
                return Ok(TakenOver {
                    peer: shown,
                    blocks,
                });
            }
            let alive =
                matches!(result.results.first(), Some(etcd::OpResult::Get(r)) if !r.kvs.is_empty());
            if alive && !force {
                return Err(RmPeerError::Alive(shown));
            }
        }
        Err(RmPeerError::Store(etcd::Error::Unavailable {
            call: "/v3/kv/txn",
            tried: vec![("rmpeer".to_owned(), "its blocks kept changing".to_owned())],
        }))
    }

    /// Removes the store member that the removed peer `name` ran, if any (a store weave grew,
    /// `growth`): a dead member counts against the quorum until it is gone. Best effort: the
    /// peer itself is already removed.
    async fn remove_member_of(&self, name: &str) {
        let store = &self.inner.store;
        let member = match store.members().await {
            Ok(members) => members.into_iter().find(|m| m.name == name),
            Err(err) => {
                tracing::warn!(peer = name, error = %err, "rmpeer: cannot list the store's members");
                return;
            }
        };
        if let Some(member) = member {
            match store.remove_member(member.id).await {
                Ok(()) => {
                    tracing::info!(peer = name, member = %format!("{:x}", member.id), "rmpeer: removed the peer's store member")
                }
                Err(err) => {
                    tracing::warn!(peer = name, error = %err, "rmpeer: the peer's store member stays")
                }
            }
        }
    }
}

impl BlockSource for Mesh {
    fn claim<'a>(&'a self, candidates: Vec<Ipv4Net>) -> BoxFuture<'a, Result<BlockClaim, String>> {
        Box::pin(async move {
            self.claim_block(&candidates)
                .await
                .map_err(|err| err.to_string())
        })
    }
}
