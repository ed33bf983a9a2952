//! The weave router's HTTP API contract, written once for everyone who speaks it: the router
//! serves [`route`]'s paths, and the proxy, the `weave` command and the tests call them through
//! [`Call`] and [`RouterClient`]. Beside it, the facts these parts share about containers:
//! `WEAVE_CIDR`'s tokens ([`cidr`]), Docker-style addresses ([`docker_addr`]) and the client
//! opened on one ([`docker`]), and a container's names and hosts file ([`naming`]).
//!
//! No server and no policy here: what to do with an answer is the caller's business.

pub mod cidr;
pub mod client;
pub mod docker;
pub mod docker_addr;
pub mod naming;
pub mod route;
pub mod status;

pub use cidr::{CidrError, CidrToken};
pub use client::{Answer, DnsInfo, HttpTransport, RouterClient, RouterError, Transport};
pub use docker_addr::DockerAddr;
pub use route::{Call, ErrorKind};
