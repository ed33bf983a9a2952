//! `weaver`: the single-host Weave Net router — its HTTP API, IPAM and their persistence.
//!
//! # Layout
//! - [`ipam`]: the address allocator (pure): lowest-free allocation, claims, frees, the original's errors.
//! - [`store`]: the allocator's state as one JSON file under `--data-dir`, replaced atomically.
//! - [`api`]: the HTTP API (axum) with the original's paths, parameters, bodies and status codes, and
//!   the [`api::Liveness`] seam through which `check-alive=true` will ask Docker.
//!
//! Not built yet: the `weave` bridge, iptables rules, the Docker events watcher that releases the
//! addresses of dead containers, and weaveDNS.

pub mod api;
pub mod ipam;
pub mod store;
