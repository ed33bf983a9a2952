//! `weaveproxy`: a Docker Engine API proxy that real clients cannot tell from the daemon.
//!
//! # Layout
//!
//! A request flows listener ([`listen`], [`server`]) → route ([`route`], in [`forward`]) →
//! interceptor ([`intercept`]) or straight on → upstream ([`upstream`]).
//!
//! - [`config`]: flags → validated [`config::Config`] (pure).
//! - [`listen`]: binding unix and TCP listeners the way Docker's own socket behaves.
//! - [`server`]: accept loops, one task per connection, hijack splicing, graceful shutdown.
//! - [`forward`]: one request to the daemon and its answer back, hop-by-hop rules, upgrades.
//! - [`route`]: which API endpoint a request is for (pure table).
//! - [`upstream`]: the pooled connection to the Docker daemon.
//! - [`docker`]: the proxy's own calls to Docker (bollard over that pool), with typed errors.
//! - [`tls`]: TLS on TCP listeners and to a TCP daemon: which files, loaded into rustls.
//! - [`error`]: the proxy's own failures and their single mapping to Docker-shaped responses.
//! - [`intercept`]: the interceptors, one module each: create, start (answered once attached),
//!   exec create, and the presentation of list and inspect answers.
//! - [`images`]: the image configs creates read, cached by Id, names kept current by image
//!   events.
//! - [`dnscache`]: the router's weaveDNS settings, cached for a second.
//! - [`naming`]: hostnames from names or labels, and weaveDNS settings (pure).
//! - [`cidr`]: the attach-or-leave-alone decision from `WEAVE_CIDR` and the network mode (pure).
//! - [`compose`]: containers on a Compose project's default network, attached beside it (pure).
//! - [`attach`]: attaching started containers (router addresses, `ethwe`), the events watcher
//!   and the start-up sweep.
//! - [`weavecontainer`]: the weave container model: `/w/w`, the weavewait mount, the owner
//!   label, and recognising such a container in Docker's answers (pure).
//! - [`hop`]: hop-by-hop headers, stripped on every path to the daemon (pure).
//! - [`json`]: typed reads of Docker's JSON request bodies, edited in place (pure).
//! - [`weavewait`]: installing the weavewait binaries that containers bind at `/w`.
//! - [`splice`]: hijacked streams between plain sockets, moved by splice(2).
//! - [`body`], [`socket`]: the body and stream types that flow through all of the above.
//! - [`sync`]: locking the shared maps and caches.
//! - [`metrics`]: Prometheus metrics on a loopback `--metrics-addr`.
//! - [`cmd`]: the `weaveproxy` program itself: flags to a running proxy.

pub mod attach;
pub mod body;
pub mod cidr;
pub mod cmd;
pub mod compose;
pub mod config;
pub mod dnscache;
pub mod docker;
pub mod error;
pub mod forward;
pub mod hop;
pub mod images;
pub mod intercept;
pub mod json;
pub mod listen;
pub mod metrics;
pub mod naming;
pub mod route;
pub mod server;
pub mod socket;
pub mod splice;
pub mod sync;
pub mod tls;
pub mod upstream;
pub mod weavecontainer;
pub mod weavewait;
