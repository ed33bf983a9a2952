//! Opening a Docker client (bollard) on a [`DockerAddr`], the one way the router and `weave` do
//! it: the API version negotiated down to the daemon's (Docker 20.10 speaks 1.41; current
//! daemons refuse nothing older than their minimum, so pinning an old version is never right).

use bollard::Docker;
use thiserror::Error;

use crate::DockerAddr;

/// Seconds to wait for the head of a Docker response; streams (events) are not limited by it.
const RESPONSE_TIMEOUT_SECS: u64 = 30;

/// The daemon did not answer.
#[derive(Debug, Error)]
#[error("cannot reach Docker at {addr}: {source}")]
pub struct ConnectError {
    pub addr: String,
    #[source]
    pub source: bollard::errors::Error,
}

/// A client for `addr`, its API version negotiated with the daemon.
///
/// # Errors
/// When the daemon does not answer.
pub async fn connect(addr: &DockerAddr) -> Result<Docker, ConnectError> {
    let connect_error = |source| ConnectError {
        addr: addr.to_string(),
        source,
    };
    let docker = match addr {
        DockerAddr::Unix(path) => Docker::connect_with_unix(
            &path.to_string_lossy(),
            RESPONSE_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        DockerAddr::Tcp(host_port) => Docker::connect_with_http(
            host_port,
            RESPONSE_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
    }
    .map_err(connect_error)?;
    docker.negotiate_version().await.map_err(connect_error)
}
