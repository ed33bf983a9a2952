//! `weaver reset`, which undoes what start-up set up, and the internal `__host-exec` that runs
//! the host's own iptables from a container.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::ExitCode;

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
    let firewall = HostIptables::new(&args.host.host_root, &helper);
    let input = iptables::input_rules(
        bridge,
        crate::mesh::discovery::PEER_PORT,
        (
            crate::mesh::local_store::CLIENT_PORT,
            crate::mesh::local_store::MEMBER_PORT,
        ),
    );
    let removed = match firewall.remove(bridge).await {
        Ok(mut removed) => firewall.remove_input(&input).await.map(|more| {
            removed.extend(more);
            removed
        }),
        Err(err) => Err(err),
    };
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
