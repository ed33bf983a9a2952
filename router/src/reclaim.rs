//! The start-up survey: which containers run, and which addresses the attached ones carry.
//!
//! At start the saved allocations may be stale in both directions: containers were removed while
//! the router was down, or the saved file is gone while containers still have their `ethwe`. The
//! truth is on the host: a running container whose `vethwepl<pid>` is a port of our bridge keeps
//! the addresses on its `ethwe`. [`survey`] gathers that; [`crate::ipam::Allocator::reclaim`]
//! decides what it means.

use std::collections::{HashMap, HashSet};

use bollard::Docker;
use ipnet::Ipv4Net;

use crate::docker::{self, DockerError};

/// Why the survey failed.
#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("listing the ports of bridge {bridge}: {source}")]
    Net {
        bridge: String,
        #[source]
        source: weavenet::NetError,
    },
}

/// What runs on the host now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Full ids of the running containers.
    pub running: HashSet<String>,
    /// Running containers attached to the bridge, with the addresses on their `ethwe`.
    pub attached: Vec<(String, Vec<Ipv4Net>)>,
    /// The attached containers' names (`Hostname.Domainname`), for weaveDNS.
    pub names: Vec<(String, String)>,
}

/// Surveys the running containers and those attached to `bridge`.
///
/// # Errors
/// When Docker or netlink cannot be asked. A container that stops in between is skipped.
pub async fn survey(docker: &Docker, bridge: &str) -> Result<Survey, SurveyError> {
    let running = docker::running_ids(docker).await?;
    let pids: HashSet<i32> = weavenet::attached_pids(bridge)
        .await
        .map_err(|source| SurveyError::Net {
            bridge: bridge.to_owned(),
            source,
        })?
        .into_iter()
        .collect();
    let mut attached = Vec::new();
    let mut names = Vec::new();
    if !pids.is_empty() {
        let by_pid: HashMap<i32, docker::RunningContainer> = docker::running_containers(docker)
            .await?
            .into_iter()
            .map(|c| (c.pid, c))
            .collect();
        for pid in pids {
            let Some(docker::RunningContainer { id, fqdn, .. }) = by_pid.get(&pid) else {
                tracing::debug!(pid, "veth on the bridge belongs to no running container");
                continue;
            };
            // Pinned: a PID reused since Docker was asked reads nothing rather than another's.
            let addrs = match weavenet::Process::pin(pid) {
                Ok(process) => weavenet::container_addrs(&process).await,
                Err(err) => Err(err),
            };
            match addrs {
                Ok(cidrs) if !cidrs.is_empty() => {
                    names.push((id.clone(), fqdn.clone()));
                    attached.push((id.clone(), cidrs));
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(container = %id, pid, error = %err, "cannot read the addresses of an attached container");
                }
            }
        }
    }
    attached.sort();
    names.sort();
    Ok(Survey {
        running,
        attached,
        names,
    })
}
