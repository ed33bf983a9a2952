//! The one test harness of the workspace, used by `tests/tests` and every crate's own tests: the
//! target daemon, the proxy and router under test, the test image, cleanup, polling and the HTTP
//! client.
//!
//! Every test talks to a real Docker daemon. Which one is chosen by `WEAVE_TEST_DOCKER`
//! (`unix:///path`), defaulting to the machine's own `/var/run/docker.sock`; CI runs the whole
//! suite once against Docker 20.10 and once against Docker 26 (see `scripts/test.sh`).
//!
//! Everything a test creates carries the label `weave-test=<run id>` and a name starting with
//! `wvt-<run id>-`, and is removed by a [`Scope`] guard even when the test panics. Routers
//! ([`Weaver`]) get a bridge, port and data directory of their own and are reset on drop.

pub mod cli;
pub mod daemon;
pub mod dockerhosts;
pub mod engine;
pub mod hosts;
pub mod http;
pub mod image;
pub mod netns;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod scope;
pub mod skip;
pub mod wait;
pub mod weave;
pub mod weaver;

pub use cli::{Docker, Output};
pub use daemon::{DockerRelay, target_daemon};
pub use image::test_image;
pub use proxy::Proxy;
pub use scope::Scope;
pub use wait::{eventually, holds_for, poll};
pub use weaver::{WeaveHost, Weaver, WeaverBuilder};
