//! `weaver reset`, which undoes what start-up set up, and the internal `__host-exec` that runs
//! the host's own iptables from a container.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::iptables::{self, HostIptables};
use crate::store;
use anyhow::{Context as _, Result, bail};

use super::ResetArgs;

/// `weaver reset`: removes the iptables rules, the bridge with its container ports, and the saved
/// allocations, printing each thing removed. Whatever is already gone is skipped.
pub(crate) async fn reset(args: &ResetArgs) -> Result<()> {
    let bridge = args.bridge.weave_bridge.as_str();
    let mut problems = Vec::new();

    let helper = std::env::current_exe().context("finding weaver's own binary")?;
    // The rules about the Docker bridge named, and about docker0 as well: a router that could
    // not ask Docker, or an earlier one on a daemon with the default bridge, named that one.
    let mut docker_bridges = vec![iptables::DOCKER_BRIDGE];
    if let Some(name) = args.bridge.docker_bridge.as_deref()
        && name != iptables::DOCKER_BRIDGE
    {
        docker_bridges.insert(0, name);
    }
    let mut removed = Ok(Vec::new());
    for docker_bridge in docker_bridges {
        let firewall =
            HostIptables::new(&args.host.host_root, &helper).with_docker_bridge(docker_bridge);
        // The ports `weave launch` gives.
        let input = iptables::input_rules(
            bridge,
            docker_bridge,
            iptables::HostPorts {
                peer: crate::mesh::discovery::PEER_PORT,
                store: (
                    crate::mesh::local_store::CLIENT_PORT,
                    crate::mesh::local_store::MEMBER_PORT,
                ),
                vxlan: weavenet::DEFAULT_VXLAN_PORT,
            },
        );
        let these = match firewall.remove(bridge).await {
            Ok(mut these) => firewall.remove_input(&input).await.map(|more| {
                these.extend(more);
                these
            }),
            Err(err) => Err(err),
        };
        removed = match (removed, these) {
            (Ok(mut all), Ok(these)) => {
                all.extend(these);
                Ok(all)
            }
            (Err(err), _) | (_, Err(err)) => Err(err),
        };
    }
    match removed {
        Ok(removed) => {
            for rule in removed {
                println!("removed iptables rule: {rule}");
            }
        }
        Err(err) if err.is_missing_binary() => {}
        Err(err) => problems.push(format!("removing the iptables rules: {err}")),
    }

    match weavenet::delete_bridge(bridge).await {
        Ok(true) => println!("removed bridge {bridge}"),
        Ok(false) => {}
        Err(err) => problems.push(format!("removing bridge {bridge}: {err}")),
    }

    // Before its endpoints go: this host's member leaves the store, so that the others' quorum
    // no longer counts it.
    if let Err(err) = leave_store(&args.data.data_dir).await {
        problems.push(err);
    }

    // The store's endpoints and, below, the data of the store this host ran (`weave reset` has
    // removed its container first): a host reset leaves its network.
    match crate::mesh::discovery::remove(&args.data.data_dir) {
        Ok(true) => println!(
            "removed {}",
            args.data
                .data_dir
                .join(crate::mesh::discovery::FILE_NAME)
                .display()
        ),
        Ok(false) => {}
        Err(err) => problems.push(err.to_string()),
    }

    let store_data = args.data.data_dir.join(crate::mesh::local_store::DATA_DIR);
    match std::fs::remove_dir_all(&store_data) {
        Ok(()) => println!("removed {}", store_data.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => problems.push(format!("removing {}: {err}", store_data.display())),
    }

    let saved = args.data.data_dir.join(store::FILE_NAME);
    for path in [saved.clone(), saved.with_extension("json.tmp")] {
        match std::fs::remove_file(&path) {
            Ok(()) if path == saved => println!("removed {}", path.display()),
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                problems.push(format!("removing {}: {err}", path.display()));
            }
            _ => {}
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        bail!("reset incomplete: {}", problems.join("; "))
    }
}

/// How long a member's removal is tried: etcd refuses it ("unhealthy cluster") until the
/// others have been connected for a few seconds.
const LEAVE_WITHIN: Duration = Duration::from_secs(15);

/// Removes this host's member (named after its peer) from the store in `store.json`, unless it
/// is the store's only member (the store then ends with it).
async fn leave_store(data_dir: &Path) -> Result<(), String> {
    let Ok(Some(saved)) = crate::mesh::discovery::load(data_dir) else {
        return Ok(());
    };
    let Some(me) = super::mesh::kept_peer_name(data_dir) else {
        return Ok(());
    };
    let store = etcd::Client::new(&saved.endpoints).map_err(|err| err.to_string())?;
    let deadline = tokio::time::Instant::now() + LEAVE_WITHIN;
    loop {
        let tried = async {
            let members = store.members().await?;
            match members.iter().find(|m| m.name == me) {
                Some(m) if members.len() > 1 => store.remove_member(m.id).await.map(|()| true),
                _ => Ok(false),
            }
        };
        match tried.await {
            Ok(true) => {
                println!("removed this host's member from the store");
                return Ok(());
            }
            Ok(false) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "removing this host's member from the store ({}): {err}",
                    saved.endpoints.join(",")
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `weaver __host-exec ROOT PROGRAM ARGS...`: chroot into ROOT and exec PROGRAM (found on the
/// host's PATH). Runs before any thread is started; returns only on failure (exit 127).
pub(crate) fn host_exec(root: &Path, program: &OsString, args: &[OsString]) -> ExitCode {
    let cstring = |s: &OsString| CString::new(s.as_bytes());
    let argv: Result<Vec<CString>, _> = std::iter::once(program).chain(args).map(cstring).collect();
    let result = argv
        .map_err(|err| format!("bad argument: {err}"))
        .and_then(|argv| {
            nix::unistd::chroot(root).map_err(|err| format!("chroot {}: {err}", root.display()))?;
            nix::unistd::chdir("/").map_err(|err| format!("chdir /: {err}"))?;
            nix::unistd::execvp(&argv[0], &argv)
                .map_err(|err| format!("exec {}: {err}", program.to_string_lossy()))
        });
    let Err(err) = result;
    eprintln!("weaver {}: {err}", iptables::HOST_EXEC);
    ExitCode::from(127)
}
