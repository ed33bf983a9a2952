//! weaveDNS: the names containers register through the HTTP API, and the DNS server that answers
//! for them and forwards every other question to the host's name servers.
//!
//! - [`registry`]: the names (in memory, shared with the HTTP API and the events watcher).
//! - [`server`]: the DNS server over UDP and TCP (hickory), authoritative for the domain.
//! - [`access`]: who may ask (the host and its containers, no one else).
//! - [`resolv`]: the upstream name servers, from the host's `resolv.conf`, less ourselves.

pub mod access;
pub mod registry;
pub mod resolv;
pub mod server;
