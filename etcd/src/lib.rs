//! A small etcd v3 client for weave's multi-host router, over etcd's JSON gateway (`/v3/...`,
//! etcd 3.5) and the workspace's hyper: no gRPC stack and no protoc in the build, which keeps
//! the image small (MULTIHOST.md §2.2, §4.11).
//!
//! What the router needs of its store, and what the prototype lacked (MULTIHOST.md §3.5):
//! - [`Client`]: requests go to the endpoint that answered last and fail over round the others
//!   on a refused connection, a timeout or a member without quorum;
//! - KV reads with their revision, puts bound to leases, deletes, and transactions, among them
//!   create-if-absent ([`kv`]);
//! - leases: grant, keepalive (once, or in a task: [`KeepAlive`]), revoke ([`lease`]);
//! - [`Watch`]: events from a revision on, resumed on another member from the last revision + 1
//!   when its stream breaks, and [`Error::Compacted`] when that revision is gone ([`watch`]);
//! - member list and status for `weave status` ([`cluster`]).
//!
//! Every request is bounded by [`Timeouts`]; nothing here waits for ever.
//!
//! The router's pattern for state it mirrors (weaveDNS records, the peer list: MULTIHOST.md
//! §4.3): list, then watch from the list's revision + 1; on [`Error::Compacted`], list again.
//!
//! ```no_run
//! # async fn mirror() -> Result<(), etcd::Error> {
//! use etcd::{Client, Error, Keys};
//!
//! let store = Client::new(["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"])?;
//! let dns = Keys::prefix("/weave/v1/dns/");
//! loop {
//!     let listed = store.get(&dns).await?;
//!     // ... replace the local records with listed.kvs ...
//!     let mut watch = store.watch(dns.clone(), listed.revision + 1).await?;
//!     loop {
//!         match watch.next().await {
//!             Ok(events) => { /* ... apply them ... */ }
//!             Err(Error::Compacted { .. }) => break, // list again
//!             Err(err) => return Err(err), // or wait and call next() again
//!         }
//!     }
//! }
//! # }
//! ```

pub mod client;
pub mod cluster;
mod endpoints;
pub mod error;
pub mod kv;
pub mod lease;
pub mod watch;
mod wire;

pub use client::{Client, Timeouts};
pub use cluster::{Member, Status};
pub use error::Error;
pub use kv::{
    CmpOp, Compare, Created, Deleted, KeyValue, Keys, Op, OpResult, Range, Txn, TxnResult,
};
pub use lease::{KeepAlive, Lease, LeaseId};
pub use watch::{Event, EventKind, Watch};
