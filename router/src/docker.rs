//! What the router asks Docker: connecting (`--docker-api`), whether a container runs
//! (`check-alive=true`), which containers run and with which PID and name (reclaim and resync),
//! and where containers reach the host (weaveDNS's default address).
//!
//! Every call negotiates down to the daemon's API version (Docker 20.10 speaks 1.41; current
//! daemons refuse nothing older than their minimum, so pinning an old version is never right).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use api::{DockerAddr, naming};
use bollard::Docker;
use bollard::models::ContainerState;
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
};

use crate::http_api::{BoxFuture, Liveness};

/// Why Docker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker at {addr}: {source}; is dockerd running?")]
    Connect {
        addr: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker: {0}")]
    Api(#[from] bollard::errors::Error),
}

/// A client for `addr`, its API version negotiated with the daemon.
///
/// # Errors
/// [`DockerError::Connect`] when the daemon does not answer.
pub async fn connect(addr: &DockerAddr) -> Result<Docker, DockerError> {
    api::docker::connect(addr)
        .await
        .map_err(|err| DockerError::Connect {
            addr: err.addr,
            source: err.source,
        })
}

/// Whether a container in `state` counts as running for IPAM, as in the original: running and
/// not in a restart loop.
pub fn is_running(state: Option<&ContainerState>) -> bool {
    state.is_some_and(|s| s.running == Some(true) && s.restarting != Some(true))
}

/// Whether `err` is Docker's "No such container".
fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `check-alive=true` asks Docker once: not running, restarting, or no such container cancels.
#[derive(Debug, Clone)]
pub struct DockerLiveness {
    docker: Docker,
}

impl DockerLiveness {
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }
}

impl Liveness for DockerLiveness {
    fn is_alive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => is_running(inspect.state.as_ref()),
                Err(err) if is_not_found(&err) => false,
                Err(err) => {
                    // Cancelling would make the proxy stop a container that may be fine; a Docker
                    // hiccup is no evidence that it died.
                    tracing::warn!(%id, error = %err, "cannot inspect container; assuming it runs");
                    true
                }
            }
        })
    }
}

/// A running container and the PID of its process (its network namespace is that PID's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    pub pid: i32,
    /// `Config.Hostname`, dotted with `Config.Domainname` when that is set: its name in weaveDNS.
    pub fqdn: String,
}

/// Full ids of the containers running now.
///
/// # Errors
/// [`DockerError::Api`] when Docker does not answer.
pub async fn running_ids(docker: &Docker) -> Result<HashSet<String>, DockerError> {
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(false).build(),
        ))
        .await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// The running containers with their PIDs (one inspect each: the list does not carry PIDs). A
/// container that stops in between is left out.
///
/// # Errors
/// [`DockerError::Api`] when Docker does not answer.
pub async fn running_containers(docker: &Docker) -> Result<Vec<RunningContainer>, DockerError> {
    let mut running = Vec::new();
    for id in running_ids(docker).await? {
        let inspect = match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(err) if is_not_found(&err) => continue,
            Err(err) => return Err(err.into()),
        };
        let pid = inspect
            .state
            .as_ref()
            .filter(|s| is_running(Some(s)))
            .and_then(|s| s.pid)
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|&pid| pid > 0);
        if let Some(pid) = pid {
            let config = inspect.config.as_ref();
            let fqdn = naming::fqdn(
                config
                    .and_then(|c| c.hostname.as_deref())
                    .unwrap_or_default(),
                config
                    .and_then(|c| c.domainname.as_deref())
                    .unwrap_or_default(),
            );
            running.push(RunningContainer { id, pid, fqdn });
        }
    }
    Ok(running)
}

/// The address of Docker's default `bridge` network on the host (`docker0`'s): where containers
/// reach the host, so where weaveDNS listens by default. The network's gateway when Docker
/// names one, else the first address of its bridge interface. `None` when there is neither.
///
/// # Errors
/// [`DockerError::Api`] when Docker does not answer.
pub async fn bridge_gateway(docker: &Docker) -> Result<Option<Ipv4Addr>, DockerError> {
    let network = match docker
        .inspect_network("bridge", None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) => network,
        Err(err) if is_not_found(&err) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let named = network
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|config| config.gateway)
        .find_map(|gateway| gateway.parse().ok());
    if named.is_some() {
        return Ok(named);
    }
    // Docker 20.10 often leaves the gateway out of the default network's IPAM config.
    let interface = bridge_name_of(network.options.as_ref());
    Ok(weavenet::host_addrs(interface)
        .await
        .ok()
        .flatten()
        .and_then(|addrs| addrs.first().map(|net| net.addr())))
}

/// The name of the bridge of Docker's default network, from its options; `docker0` when it
/// names none.
fn bridge_name_of(options: Option<&HashMap<String, String>>) -> &str {
    options
        .and_then(|o| o.get("com.docker.network.bridge.name"))
        .map_or(crate::iptables::DOCKER_BRIDGE, String::as_str)
}

/// The name of the bridge of Docker's default network (`docker0` unless dockerd was started
/// with another `--bridge`); `docker0` when Docker cannot say.
pub async fn bridge_name(docker: &Docker) -> String {
    match docker
        .inspect_network("bridge", None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) => bridge_name_of(network.options.as_ref()).to_owned(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot ask Docker for its bridge's name; assuming docker0");
            crate::iptables::DOCKER_BRIDGE.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bridge_is_named_by_its_network_or_docker0() {
        let named = HashMap::from([(
            "com.docker.network.bridge.name".to_owned(),
            "dbr".to_owned(),
        )]);
        assert_eq!(bridge_name_of(Some(&named)), "dbr");
        assert_eq!(bridge_name_of(Some(&HashMap::new())), "docker0");
        assert_eq!(bridge_name_of(None), "docker0");
    }

    #[test]
    fn running_means_running_and_not_restarting() {
        let state = |running, restarting| ContainerState {
            running,
            restarting,
            ..ContainerState::default()
        };
        let cases = [
            (Some(state(Some(true), Some(false))), true),
            (Some(state(Some(true), None)), true),
            (Some(state(Some(true), Some(true))), false),
            (Some(state(Some(false), Some(false))), false),
            (Some(state(None, None)), false),
            (None, false),
        ];
        for (state, want) in cases {
            assert_eq!(is_running(state.as_ref()), want, "{state:?}");
        }
    }
}
