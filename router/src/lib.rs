//! `weaver`: the Weave Net router — its HTTP API, IPAM and their persistence, the `weave` bridge
//! with its firewall rules, the release of addresses of dead containers, and, on a network of
//! several hosts, its part in the mesh (store, blocks, VXLAN flood list, weaveDNS everywhere).
//!
//! # Layout
//! - [`ipam`]: the address allocator (pure): lowest-free allocation, claims, frees, the original's
//!   errors, and the dead marks of containers that stopped (freed after a grace period).
//! - [`store`]: the allocator's state as one JSON file under `--data-dir`, replaced atomically.
//! - [`http_api`]: the HTTP API (axum) serving the `api` crate's paths with the original's
//!   parameters, bodies and status codes, and the [`http_api::Liveness`] seam through which
//!   `check-alive=true` asks Docker.
//! - [`docker`]: the Docker client (`--docker-api`), liveness by inspect, the running containers.
//! - [`events`]: the Docker events watcher (`start`/`die`/`destroy`) and the sweep of dead marks.
//! - [`reclaim`]: the start-up survey of running, attached containers and their addresses.
//! - [`iptables`]: the `FORWARD`/`DOCKER-USER` rules for the bridge, written with the host's iptables.
//! - [`dns`]: weaveDNS itself: the name registry, the DNS server (hickory) and its upstreams.
//! - [`names`]: the weaveDNS part of the HTTP API (`/domain`, `/dns-address`, `/name`).
//! - [`plugin`]: Docker's network and IPAM driver plugin on a unix socket (`-d weave`).
//! - [`mesh`]: a network of several hosts on etcd: peers and their liveness, address blocks, the
//!   VXLAN port's flood list, weaveDNS records both ways, `rmpeer`, and its status texts.
//! - [`metrics`]: Prometheus metrics at `GET /metrics`.
//! - [`cmd`]: the `weaver` program: its flags, start-up, `reset`.
//!
//! The bridge itself is made by the `weavenet` crate.

pub mod cmd;
pub mod dns;
pub mod docker;
pub mod events;
pub mod http_api;
pub mod ipam;
pub mod iptables;
pub mod mesh;
pub mod metrics;
pub mod names;
pub mod plugin;
pub mod reclaim;
pub mod store;
