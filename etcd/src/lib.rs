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
