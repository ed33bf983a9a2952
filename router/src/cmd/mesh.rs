//! Joining a network of several hosts at start-up: who this peer is, where its VXLAN port
//! listens, the store's settings checked before anything is allocated, and, on the peer port,
//! finding a store through other hosts or making one for them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use ipnet::Ipv4Net;

use crate::mesh::discovery::{self, Answerer};
use crate::mesh::keys::NetConfig;
use crate::mesh::local_store::LocalStore;
use crate::mesh::{self, KernelVxlan, Mesh, MeshError};

use super::MeshArgs;

/// The file in the data directory that keeps a generated peer name.
const NAME_FILE: &str = "peername";

/// How long start-up waits for the store to check the network's settings; past that the router
/// starts anyway and the mesh catches up when the store answers.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// The mesh for `args` on the store at `endpoints`, its VXLAN port made on `bridge`; `None`
/// without a store.
pub(super) async fn join(
    args: &MeshArgs,
    endpoints: &[String],
    data_dir: &Path,
    bridge: &str,
    mtu: u32,
    range: Ipv4Net,
) -> Result<Option<Mesh>> {
    if endpoints.is_empty() {
        return Ok(None);
    }
    let name = peer_name(args, data_dir)?;
    let nickname = match &args.nickname {
        Some(nick) => nick.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name")?
            .to_string_lossy()
            .into_owned(),
    };
    let vtep = match args.advertise_addr {
        Some(addr) => addr,
        None => source_address(&endpoints[0]).await?,
    };
    let mut spec = weavenet::VxlanSpec::new(bridge, vtep, mtu);
    spec.port = args.vxlan_port;
    spec.name = weavenet::vxlan_name(args.vxlan_port);
    let created = weavenet::ensure_vxlan(&spec)
        .await
        .with_context(|| format!("setting up the VXLAN port {} on {bridge}", spec.name))?;
    tracing::info!(link = %spec.name, %vtep, port = spec.port, created, "VXLAN port ready");
    let config = mesh::Config {
        endpoints: endpoints.to_vec(),
        name,
        nickname,
        vtep,
        mtu,
        lease_ttl: Duration::from_secs(args.peer_ttl),
        net: NetConfig {
            range,
            block_len: args.ipalloc_block_len.max(range.prefix_len()),
            vni: spec.vni,
            port: spec.port,
        },
    };
    let mesh = Mesh::new(config, Arc::new(KernelVxlan { link: spec.name }))?;
    match tokio::time::timeout(CHECK_WITHIN, mesh.check_config()).await {
        Ok(Ok(())) => {}
        Ok(Err(MeshError::Store(err))) => {
            tracing::warn!(error = %err, "the store does not answer; starting with the blocks this peer owns");
        }
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => tracing::warn!(
            "the store did not answer within {CHECK_WITHIN:?}; starting with the blocks this peer owns"
        ),
    }
    Ok(Some(mesh))
}

/// This peer's name: `--name`, else the one kept in the data directory.
pub(super) fn peer_name(args: &MeshArgs, data_dir: &Path) -> Result<String> {
    match &args.name {
        Some(name) => Ok(name.clone()),
        None => kept_name(data_dir),
    }
}

/// Serves the peer port (`--peer-addr`) until `stop`, and while alone with `--peer`s asks them
/// for a store in the background. Either way, once a store is found or made here, `rejoin` is
/// notified: the router then starts again on it.
pub(super) async fn discover(
    args: &MeshArgs,
    mesh: Option<&Mesh>,
    docker: &bollard::Docker,
    data_dir: &Path,
    rejoin: &Arc<tokio::sync::Notify>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let local = match mesh {
        Some(_) => None,
        None => Some(Arc::new(LocalStore::new(
            docker.clone(),
            args.store_image.clone(),
            data_dir,
            peer_name(args, data_dir)?,
            rejoin.clone(),
        ))),
    };
    if let Some(addr) = args.peer_addr {
        let answerer = match &local {
            Some(store) => Answerer::Alone {
                store: store.clone(),
                peers: args.peers.clone(),
            },
            None => Answerer::Joined(
                mesh.map(|mesh| mesh.config().endpoints.clone())
                    .unwrap_or_default(),
            ),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on the peer port {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "peer port listening");
        discovery::serve(listener, answerer, stop);
    }
    if let Some(local) = local.filter(|_| !args.peers.is_empty()) {
        let peers = args.peers.clone();
        tokio::spawn(async move {
            let endpoints = discovery::find(&peers).await;
            // Through the local store, so that a peer asking meanwhile is told the same store.
            if let Err(err) = local.adopt(endpoints).await {
                tracing::error!(error = %err, "keeping the store found");
            }
        });
    }
    Ok(())
}

/// The peer name kept in the data directory, if one was made there.
pub(super) fn kept_peer_name(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(NAME_FILE)).ok()?;
    Some(text.trim().to_owned()).filter(|name| !name.is_empty())
}

/// The peer name kept in the data directory, made (a random, locally administered MAC
/// address, as Weave Net's names look) at the first start.
fn kept_name(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(NAME_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let mut mac = [0u8; 6];
    mac.iter_mut().for_each(|b| *b = fastrand::u8(..));
    mac[0] = (mac[0] & 0xfe) | 0x02;
    let name = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&path, format!("{name}\n")))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(name)
}

/// The local address the kernel would send from to reach `endpoint` (`host:port` or
/// `http://host:port`): the address peers reach this host at, unless told otherwise.
async fn source_address(endpoint: &str) -> Result<Ipv4Addr> {
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let target: SocketAddr = tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("resolving store endpoint {endpoint}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("store endpoint {endpoint} has no IPv4 address"))?;
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").context("opening a UDP socket")?;
    socket
        .connect(target)
        .with_context(|| format!("finding a route to {target}"))?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(addr) if !addr.is_loopback() => Ok(addr),
        other => bail!(
            "this host reaches the store at {endpoint} from {other}, which other hosts cannot \
             reach it at: give --advertise-addr"
        ),
    }
}
