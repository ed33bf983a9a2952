//! The store's member on this host: the one-member store a router makes when another host asks
//! to join it and it has none, and the members added later as hosts join (`growth`). Each is
//! etcd in the `weavestore` container, run from the router's own image (etcd is in it), its
//! data in `<data-dir>/store`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use tokio::sync::{Mutex, Notify};

use super::discovery::{self, StoreEndpoints};

/// The store's container.
pub const CONTAINER: &str = "weavestore";
/// The label weave's containers carry, and this one's value of it.
const ROLE_LABEL: &str = "works.weave.role";
const ROLE: &str = "store";
/// The store's data, in the data directory.
pub const DATA_DIR: &str = "store";
/// Where etcd is in the image.
const ETCD_BIN: &str = "/usr/bin/etcd";
/// etcd's own ports.
pub const CLIENT_PORT: u16 = 2379;
pub const MEMBER_PORT: u16 = 2380;
/// How long a new store may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Why no store could be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalStoreError {
    #[error(
        "this router was started without --store-image, so it cannot run a store for the peers \
         that ask: launch it with `weave launch`"
    )]
    NoImage,
    #[error("starting the {CONTAINER} container: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("the store on this host did not answer within {READY_WITHIN:?}: {0}")]
    NotReady(String),
    #[error(transparent)]
    File(Box<discovery::DiscoveryError>),
    #[error("removing the data of an earlier store, {0}: {1}")]
    Stale(PathBuf, std::io::Error),
}

/// Makes the store once, on the first peer's request, and says so to whoever waits to start
/// again on it.
#[derive(Debug)]
pub struct LocalStore {
    docker: Docker,
    image: Option<String>,
    data_dir: PathBuf,
    name: String,
    made: Mutex<Option<Vec<String>>>,
    /// Notified once the store is made and `store.json` written: the router then starts again,
    /// joined.
    rejoin: Arc<Notify>,
}

impl LocalStore {
    pub fn new(
        docker: Docker,
        image: Option<String>,
        data_dir: &Path,
        name: String,
        rejoin: Arc<Notify>,
    ) -> Self {
        Self {
            docker,
            image,
            data_dir: data_dir.to_owned(),
            name,
            made: Mutex::new(None),
            rejoin,
        }
    }

    /// The endpoints of the store made or adopted, if any yet.
    pub async fn made(&self) -> Option<Vec<String>> {
        self.made.lock().await.clone()
    }

    /// Joins the store at `endpoints`, found through a peer, instead of making one: kept in
    /// `store.json`, then the router starts again on it. A store already made or adopted wins.
    ///
    /// # Errors
    /// When `store.json` cannot be written.
    pub async fn adopt(&self, endpoints: Vec<String>) -> Result<Vec<String>, LocalStoreError> {
        let mut made = self.made.lock().await;
        if let Some(endpoints) = &*made {
            return Ok(endpoints.clone());
        }
        self.keep(&endpoints)?;
        tracing::info!(store = %endpoints.join(","), "found the network's store through a peer; starting again, joined");
        *made = Some(endpoints.clone());
        discovery::schedule_rejoin(&self.rejoin);
        Ok(endpoints)
    }

    fn keep(&self, endpoints: &[String]) -> Result<(), LocalStoreError> {
        discovery::save(
            &self.data_dir,
            &StoreEndpoints {
                endpoints: endpoints.to_vec(),
            },
        )
        .map_err(|err| LocalStoreError::File(Box::new(err)))
    }

    /// The store's endpoints, made at `addr` (this host's address as the asking peer reached
    /// it) on the first call; later calls get the same.
    ///
    /// # Errors
    /// When the container cannot be started or etcd does not answer.
    pub async fn make(&self, addr: Ipv4Addr) -> Result<Vec<String>, LocalStoreError> {
        let mut made = self.made.lock().await;
        if let Some(endpoints) = &*made {
            return Ok(endpoints.clone());
        }
        let image = self.image.clone().ok_or(LocalStoreError::NoImage)?;
        let member = MemberSpec {
            name: &self.name,
            addr,
            initial_cluster: format!("{}={}", self.name, member_url(addr)),
            existing: false,
        };
        let endpoint = client_url(addr);
        let endpoints = vec![endpoint.clone()];
        start_member(&self.docker, &image, &self.data_dir, &member, async {
            wait_ready(&endpoint).await?;
            self.keep(&endpoints)
        })
        .await?;
        tracing::info!(store = %endpoints.join(","), "made a store on this host for the peers that ask; starting again, joined");
        *made = Some(endpoints.clone());
        // After the answer is on its way: the asking peer needs it before this router restarts.
        discovery::schedule_rejoin(&self.rejoin);
        Ok(endpoints)
    }
}

/// The URL etcd's members reach the one at `addr` on.
pub fn member_url(addr: Ipv4Addr) -> String {
    format!("http://{addr}:{MEMBER_PORT}")
}

/// The URL clients reach the member at `addr` on.
pub fn client_url(addr: Ipv4Addr) -> String {
    format!("http://{addr}:{CLIENT_PORT}")
}

/// One etcd member to run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec<'a> {
    /// Its name: the peer's.
    pub name: &'a str,
    /// This host's address, where the other members and the clients reach it.
    pub addr: Ipv4Addr,
    /// `name=url,...` of every member, this one included.
    pub initial_cluster: String,
    /// Whether it joins a cluster that runs (added first through the cluster's API), rather
    /// than starting a new one.
    pub existing: bool,
}

/// Runs `member` in the `weavestore` container, on empty data, and waits for `ready`; on any
/// failure the container is removed again.
///
/// # Errors
/// When the container cannot be started, or `ready` fails.
pub async fn start_member(
    docker: &Docker,
    image: &str,
    data_dir: &Path,
    member: &MemberSpec<'_>,
    ready: impl Future<Output = Result<(), LocalStoreError>>,
) -> Result<(), LocalStoreError> {
    // A store left by an earlier, unfinished try would hold the ports, and its data would
    // make etcd ignore the flags of the new member.
    let _ = docker
        .remove_container(
            CONTAINER,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let data = data_dir.join(DATA_DIR);
    match std::fs::remove_dir_all(&data) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(LocalStoreError::Stale(data, err));
        }
        _ => {}
    }
    let options = CreateContainerOptionsBuilder::new().name(CONTAINER).build();
    let body = container(image, data_dir, member);
    let created = docker.create_container(Some(options), body).await?;
    let started = async {
        docker.start_container(&created.id, None).await?;
        ready.await
    };
    if let Err(err) = started.await {
        // A member nobody will use must not keep running (its restart policy would bring it
        // back with the host) nor hold the ports for the next try.
        let _ = docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        return Err(err);
    }
    Ok(())
}

/// Waits until etcd at `endpoint` has a leader.
///
/// # Errors
/// [`LocalStoreError::NotReady`] past [`READY_WITHIN`].
pub async fn wait_ready(endpoint: &str) -> Result<(), LocalStoreError> {
    let client =
        etcd::Client::new([endpoint]).map_err(|err| LocalStoreError::NotReady(err.to_string()))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let last = match client.status().await {
            Ok(status) if status.has_leader() => return Ok(()),
            Ok(_) => "no leader yet".to_owned(),
            Err(err) => err.to_string(),
        };
        if Instant::now() > deadline {
            return Err(LocalStoreError::NotReady(last));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `weavestore` container: the etcd member named after this peer, on the host's network
/// at its address (and loopback), restarted with the host like the router.
fn container(image: &str, data_dir: &Path, member: &MemberSpec<'_>) -> ContainerCreateBody {
    let data = data_dir.join(DATA_DIR).display().to_string();
    ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(vec![ETCD_BIN.to_owned()]),
        cmd: Some(etcd_args(member, &data)),
        labels: Some(HashMap::from([(ROLE_LABEL.to_owned(), ROLE.to_owned())])),
        host_config: Some(HostConfig {
            network_mode: Some("host".to_owned()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            binds: Some(vec![format!("{data}:{data}")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// etcd's flags for `member`, keeping its data in `data`. Revisions are compacted beyond the
/// last 10,000: the watches resume within that, and a store that is never compacted grows
/// until etcd refuses writes at its quota.
fn etcd_args(member: &MemberSpec<'_>, data: &str) -> Vec<String> {
    let client = client_url(member.addr);
    let peer = member_url(member.addr);
    [
        "--name",
        member.name,
        "--data-dir",
        data,
        "--listen-client-urls",
        &format!("{client},http://127.0.0.1:{CLIENT_PORT}"),
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &member.initial_cluster,
        "--initial-cluster-state",
        if member.existing { "existing" } else { "new" },
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "10000",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value given after `name` in `args`.
    fn flag_value<'a>(args: &'a [String], name: &str) -> &'a str {
        let at = args.iter().position(|a| a == name).unwrap();
        args[at + 1].as_str()
    }

    #[test]
    fn the_store_is_one_member_at_the_address_it_was_asked_on() {
        let member = MemberSpec {
            name: "aa:bb",
            addr: Ipv4Addr::new(10, 0, 0, 1),
            initial_cluster: "aa:bb=http://10.0.0.1:2380".to_owned(),
            existing: false,
        };
        let args = etcd_args(&member, "/var/lib/weave/store");
        let flag = |name: &str| flag_value(&args, name);
        assert_eq!(flag("--name"), "aa:bb");
        assert_eq!(flag("--data-dir"), "/var/lib/weave/store");
        assert_eq!(
            flag("--listen-client-urls"),
            "http://10.0.0.1:2379,http://127.0.0.1:2379"
        );
        assert_eq!(flag("--advertise-client-urls"), "http://10.0.0.1:2379");
        assert_eq!(flag("--initial-cluster"), "aa:bb=http://10.0.0.1:2380");
        assert_eq!(flag("--initial-cluster-state"), "new");
    }

    #[test]
    fn a_member_added_to_a_running_store_joins_the_existing_cluster() {
        let member = MemberSpec {
            name: "cc:dd",
            addr: Ipv4Addr::new(10, 0, 0, 2),
            initial_cluster: "aa:bb=http://10.0.0.1:2380,cc:dd=http://10.0.0.2:2380".to_owned(),
            existing: true,
        };
        let args = etcd_args(&member, "/var/lib/weave/store");
        let flag = |name: &str| flag_value(&args, name);
        assert_eq!(
            flag("--initial-advertise-peer-urls"),
            "http://10.0.0.2:2380"
        );
        assert_eq!(flag("--initial-cluster"), member.initial_cluster);
        assert_eq!(flag("--initial-cluster-state"), "existing");
    }

    #[test]
    fn the_container_runs_etcd_on_the_hosts_network_with_its_data_kept() {
        let member = MemberSpec {
            name: "aa:bb",
            addr: Ipv4Addr::new(10, 0, 0, 1),
            initial_cluster: "aa:bb=http://10.0.0.1:2380".to_owned(),
            existing: false,
        };
        let body = container(
            "weaveworks/weaveexec:1",
            Path::new("/var/lib/weave"),
            &member,
        );
        assert_eq!(body.entrypoint.unwrap(), vec![ETCD_BIN.to_owned()]);
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(
            hc.binds.unwrap(),
            vec!["/var/lib/weave/store:/var/lib/weave/store".to_owned()]
        );
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
    }
}
