//! weaveDNS names for containers on the plugin's networks.
//!
//! `Join` names only an endpoint, not its container; Docker knows which container it is once
//! the join is done. So after a `Join` the container is looked up in `GET /networks/{id}` (its
//! `Containers`, keyed by container id, carry the endpoint id, the name and the address) and
//! registered under its name and its aliases on the network in the weave domain, and under its
//! hostname when that is in the domain, as a proxy-attached container is. The names are the container's, so the events
//! watcher removes them when it dies or is removed; `ReleaseAddress` removes those of an address
//! that leaves (`docker network disconnect`). At start-up the names of containers already on
//! the plugin's networks are registered again: the registry lives in memory only.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use api::naming;
use bollard::Docker;
use bollard::models::EndpointResource;
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListNetworksOptions,
};

use crate::dns::registry::Registry;

/// How long after a `Join` the container may take to show up on its network.
const FIND_PATIENCE: Duration = Duration::from_secs(10);
/// How often it is looked for meanwhile.
const FIND_EVERY: Duration = Duration::from_millis(50);

/// A container on one of the plugin's networks, as the network lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub container_id: String,
    pub name: String,
    pub addr: Ipv4Addr,
}

/// The member whose endpoint is `endpoint_id`, from a network's `Containers`; `None` until it
/// is listed under its container's id with an IPv4 address.
pub fn find_endpoint(
    containers: &HashMap<String, EndpointResource>,
    endpoint_id: &str,
) -> Option<Member> {
    containers
        .iter()
        .find(|(_, e)| e.endpoint_id.as_deref() == Some(endpoint_id))
        .and_then(|(id, e)| member(id, e))
}

/// Every member of a network that has an IPv4 address.
pub fn members(containers: &HashMap<String, EndpointResource>) -> Vec<Member> {
    let mut all: Vec<Member> = containers
        .iter()
        .filter_map(|(id, e)| member(id, e))
        .collect();
    all.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    all
}

/// Docker lists an endpoint whose container it has not linked yet (while the container starts)
/// under `ep-<endpoint id>`: no container id to register a name under.
const UNLINKED_PREFIX: &str = "ep-";

fn member(id: &str, endpoint: &EndpointResource) -> Option<Member> {
    if id.starts_with(UNLINKED_PREFIX) {
        return None;
    }
    let addr = endpoint.ipv4_address.as_deref()?;
    let addr = addr.split('/').next()?.parse().ok()?;
    Some(Member {
        container_id: id.to_owned(),
        name: endpoint.name.clone().unwrap_or_default(),
        addr,
    })
}

/// What the container itself says about its names on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// `Config.Hostname`, dotted with `Config.Domainname` when set.
    pub fqdn: String,
    /// Its aliases on the network (`--network-alias`, Compose's service names).
    pub aliases: Vec<String>,
}

/// The names to register for the container `member`: `<name>.<domain>`, each alias in the
/// domain (not the short container id Docker adds as one), and its hostname when that lies in
/// the domain (the registry keeps only those). Each once, in that order.
pub fn names_for(member: &Member, naming: &Naming, domain: &str) -> Vec<String> {
    let domain = domain.trim_end_matches('.');
    let mut names: Vec<String> = Vec::new();
    let mut push = |name: String| {
        if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    };
    let name = member.name.trim_start_matches('/');
    if !name.is_empty() {
        push(format!("{name}.{domain}"));
    }
    for alias in &naming.aliases {
        if !alias.is_empty() && !member.container_id.starts_with(alias.as_str()) {
            push(format!("{alias}.{domain}"));
        }
    }
    push(naming.fqdn.trim_end_matches('.').to_owned());
    names
}

/// Registers the plugin's containers in weaveDNS.
#[derive(Debug, Clone)]
pub struct Names {
    docker: Docker,
    registry: Registry,
}

impl Names {
    /// Names looked up through `docker`, kept in `registry`.
    pub fn new(docker: Docker, registry: Registry) -> Self {
        Self { docker, registry }
    }

    /// Forgets the names on `addr` (its endpoint left).
    pub fn forget(&self, addr: Ipv4Addr) -> usize {
        self.registry.remove(None, Some(addr), None)
    }

    /// Registers the container of `endpoint_id` once Docker lists it on `network_id`. Gives up
    /// quietly (a debug line) when it does not show up in time: the container may have failed to
    /// start.
    pub async fn register_endpoint(&self, network_id: &str, endpoint_id: &str) {
        let deadline = tokio::time::Instant::now() + FIND_PATIENCE;
        loop {
            match self.network_containers(network_id).await {
                Ok(containers) => {
                    if let Some(found) = find_endpoint(&containers, endpoint_id) {
                        self.register(network_id, &found).await;
                        return;
                    }
                }
                Err(err) => {
                    tracing::debug!(network = %network_id, error = %err, "[plugin] cannot inspect the network");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(endpoint = %endpoint_id, "[plugin] endpoint's container not found; no name registered");
                return;
            }
            tokio::time::sleep(FIND_EVERY).await;
        }
    }

    /// Registers every container on the networks of driver `driver` (after a restart).
    pub async fn restore(&self, driver: &str) {
        let filters = HashMap::from([("driver".to_owned(), vec![driver.to_owned()])]);
        let networks = match self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
        {
            Ok(networks) => networks,
            Err(err) => {
                tracing::warn!(error = %err, "[plugin] cannot list the plugin's networks; their names are not restored");
                return;
            }
        };
        for network in networks {
            // The driver filter matches by substring; keep exactly ours.
            if network.driver.as_deref() != Some(driver) {
                continue;
            }
            let Some(id) = network.id else { continue };
            match self.network_containers(&id).await {
                Ok(containers) => {
                    for found in members(&containers) {
                        self.register(&id, &found).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(network = %id, error = %err, "[plugin] cannot inspect a network; its names are not restored")
                }
            }
        }
    }

    async fn network_containers(
        &self,
        network_id: &str,
    ) -> Result<HashMap<String, EndpointResource>, bollard::errors::Error> {
        let network = self
            .docker
            .inspect_network(network_id, None::<InspectNetworkOptions>)
            .await?;
        Ok(network.containers.unwrap_or_default())
    }

    /// Registers `found`, a container on network `network_id`.
    async fn register(&self, network_id: &str, found: &Member) {
        let naming = match self
            .docker
            .inspect_container(&found.container_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                let aliases = inspect
                    .network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_values()
                    .find(|e| e.network_id.as_deref() == Some(network_id))
                    .and_then(|e| e.aliases)
                    .unwrap_or_default();
                Naming {
                    fqdn: naming::fqdn(
                        config.hostname.as_deref().unwrap_or_default(),
                        config.domainname.as_deref().unwrap_or_default(),
                    ),
                    aliases,
                }
            }
            Err(err) => {
                tracing::debug!(container = %found.container_id, error = %err, "[plugin] cannot inspect the container; only its name is registered");
                Naming::default()
            }
        };
        for name in names_for(found, &naming, self.registry.domain()) {
            if self.registry.add(&found.container_id, found.addr, &name) {
                tracing::info!(container = %found.container_id, addr = %found.addr, %name, "[plugin] name registered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(endpoint_id: &str, name: &str, addr: Option<&str>) -> EndpointResource {
        EndpointResource {
            name: Some(name.to_owned()),
            endpoint_id: Some(endpoint_id.to_owned()),
            ipv4_address: addr.map(str::to_owned),
            ..EndpointResource::default()
        }
    }

    #[test]
    fn the_endpoint_is_found_by_id_once_it_has_an_address() {
        let containers = HashMap::from([
            ("c1".to_owned(), endpoint("e1", "one", Some("10.32.0.1/12"))),
            ("c2".to_owned(), endpoint("e2", "two", None)),
            ("c3".to_owned(), endpoint("e3", "three", Some("bogus"))),
            (
                "ep-e4".to_owned(),
                endpoint("e4", "four", Some("10.32.0.4/12")),
            ),
        ]);
        assert_eq!(
            find_endpoint(&containers, "e1"),
            Some(Member {
                container_id: "c1".to_owned(),
                name: "one".to_owned(),
                addr: Ipv4Addr::new(10, 32, 0, 1),
            })
        );
        assert_eq!(find_endpoint(&containers, "e2"), None);
        assert_eq!(find_endpoint(&containers, "e3"), None);
        assert_eq!(
            find_endpoint(&containers, "e4"),
            None,
            "not linked to its container yet"
        );
        assert_eq!(find_endpoint(&containers, "e9"), None);
        assert_eq!(members(&containers).len(), 1);
    }

    #[test]
    fn names_are_the_container_name_its_aliases_and_its_hostname_in_the_domain() {
        let id = "0123456789abcdef0123";
        let cases: &[(&str, &str, &[&str], &[&str])] = &[
            (
                "web",
                "0123456789ab",
                &[],
                &["web.weave.local", "0123456789ab"],
            ),
            ("/web", "web.weave.local", &[], &["web.weave.local"]),
            ("web", "WEB.weave.local.", &[], &["web.weave.local"]),
            (
                "web",
                "db.weave.local",
                &[],
                &["web.weave.local", "db.weave.local"],
            ),
            ("web", "", &[], &["web.weave.local"]),
            ("", "db.weave.local", &[], &["db.weave.local"]),
            (
                "proj_web_1",
                "0123456789ab",
                &["web", "0123456789ab", "front", "WEB"],
                &[
                    "proj_web_1.weave.local",
                    "web.weave.local",
                    "front.weave.local",
                    "0123456789ab",
                ],
            ),
        ];
        for (name, fqdn, aliases, want) in cases {
            let member = Member {
                container_id: id.to_owned(),
                name: (*name).to_owned(),
                addr: Ipv4Addr::new(10, 32, 0, 1),
            };
            let naming = Naming {
                fqdn: (*fqdn).to_owned(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            };
            assert_eq!(
                names_for(&member, &naming, "weave.local."),
                *want,
                "{name} {fqdn} {aliases:?}"
            );
        }
    }
}
