//! The one attach sequence, run by the proxy and by `weave attach`/`run`/`start` alike:
//! addresses from the router, the container's `/etc/hosts` on its first attach, `ethwe`, its
//! names in weaveDNS; and the undo of a failed attempt, which gives back only what that attempt
//! took and never touches an `ethwe` that was working before it began (or that another attach
//! of the same container built meanwhile).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use api::naming::{self, Names};
use api::{CidrToken, RouterClient, RouterError, Transport};
use ipnet::Ipv4Net;
use thiserror::Error;
use tracing::{debug, warn};

use crate::rootfs::{self, FileError};
use crate::{NetError, Process};

/// The undo talks to the router too; a router that stopped answering must not hold it longer
/// than this (the router frees a dead container's addresses on its own).
const UNDO_LIMIT: Duration = Duration::from_secs(5);

/// Why an attach failed (its undo has run).
#[derive(Debug, Error)]
pub enum AttachError {
    /// The router refused, was not there, or cancelled.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// Building `ethwe` failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The whole attach took longer than the limit it was given.
    #[error(
        "attaching took longer than {0:?} (--attach-timeout); is the weave router overloaded or stuck?"
    )]
    Timeout(Duration),
}

/// The container to attach.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its full id: the router knows containers by it.
    pub id: &'a str,
    /// Its first process, pinned and checked to be the container's.
    pub process: &'a Process,
    /// What to ask the router for, in order.
    pub tokens: &'a [CidrToken],
    /// How it is known by name.
    pub names: &'a Names,
}

/// How to attach.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bridge `ethwe` is a port of.
    pub bridge: String,
    /// Add the `224.0.0.0/4` route (weavewait's `/w/w` waits for it).
    pub multicast_route: bool,
    /// Write the container's `/etc/hosts` on its first attach.
    pub rewrite_hosts: bool,
    /// Register the container's name in weaveDNS.
    pub register_names: bool,
}

/// What a successful attach did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The addresses the container holds for the tokens asked for.
    pub addrs: Vec<Ipv4Net>,
    /// `false` when `ethwe` was there already (another attach, or an earlier one).
    pub first: bool,
}

/// What an attempt has done so far, for its undo.
#[derive(Debug, Default)]
struct Progress {
    /// `ethwe`'s addresses before the attempt; `None` when it had no `ethwe`.
    before: Option<Vec<Ipv4Net>>,
    /// What the router gave, in order.
    taken: Vec<Ipv4Net>,
    /// The hosts file written, and what it held before.
    hosts: Option<(Written, Vec<u8>)>,
    /// This attempt created the veth.
    created: bool,
    /// Addresses whose name this attempt registered.
    named: Vec<Ipv4Addr>,
}

/// Which copy of the hosts file was written.
#[derive(Debug, Clone)]
enum Written {
    /// The container's own `/etc/hosts`.
    InContainer,
    /// Docker's file on the host (a read-only container's).
    OnHost(PathBuf),
}

/// Attaches `target`, within `limit`; on failure (or when the limit is reached) undoes what
/// this attempt did before returning the error.
///
/// # Errors
/// What went wrong first.
pub async fn attach<T: Transport>(
    router: &RouterClient<T>,
    target: Target<'_>,
    options: &Options,
    limit: Duration,
) -> Result<Done, AttachError> {
    let mut progress = Progress::default();
    let steps = run(router, target, options, &mut progress);
    let result = tokio::time::timeout(limit, steps)
        .await
        .unwrap_or(Err(AttachError::Timeout(limit)));
    match result {
        Ok(done) => Ok(done),
        Err(err) => {
            if tokio::time::timeout(UNDO_LIMIT, undo(router, target, &progress))
                .await
                .is_err()
            {
                warn!(container = %short(target.id), "undoing a failed attach took too long; left to the router's clean-up");
            }
            Err(err)
        }
    }
}

async fn run<T: Transport>(
    router: &RouterClient<T>,
    target: Target<'_>,
    options: &Options,
    progress: &mut Progress,
) -> Result<Done, AttachError> {
    progress.before = crate::container_interface(target.process)
        .await?
        .map(|ethwe| ethwe.addrs);
    for token in target.tokens {
        let cidr = router.address(target.id, token).await?;
        progress.taken.push(cidr);
    }
    let addrs = progress.taken.clone();
    let first = progress.before.is_none();
    // Only on the first attach: a container that has `ethwe` keeps the file it has (its
    // program may have changed it since). Before `ethwe` is up: weavewait lets the program run
    // as soon as it is, and it must find its own name on the weave address.
    if first && options.rewrite_hosts {
        progress.hosts = write_hosts(target, &addrs).await;
    }
    let attached = crate::attach(&crate::AttachRequest {
        process: target.process,
        bridge: &options.bridge,
        cidrs: &addrs,
        multicast_route: options.multicast_route,
    })
    .await?;
    progress.created = attached.created;
    if options.register_names {
        let names = target.names;
        let all = std::iter::once(&names.fqdn)
            .chain(&names.aliases)
            .filter(|name| !name.is_empty());
        for name in all {
            for cidr in &addrs {
                router
                    .register_name(target.id, cidr.addr(), name, true)
                    .await?;
                if !progress.named.contains(&cidr.addr()) {
                    progress.named.push(cidr.addr());
                }
            }
        }
    }
    Ok(Done {
        addrs,
        first: attached.created,
    })
}

/// Writes the container's hosts file; a file that cannot be written is only reported: Docker's
/// own still names the container, and a start is not worth losing over the weave line.
async fn write_hosts(target: Target<'_>, addrs: &[Ipv4Net]) -> Option<(Written, Vec<u8>)> {
    let ips: Vec<Ipv4Addr> = addrs.iter().map(Ipv4Net::addr).collect();
    let names = target.names;
    let contents = naming::hosts_file(&names.fqdn, &ips, &names.extra_hosts).into_bytes();
    let id = short(target.id);
    match rootfs::replace_in_container(target.process, "etc/hosts", contents.clone()).await {
        Ok(previous) => {
            debug!(container = %id, "wrote /etc/hosts");
            return Some((Written::InContainer, previous));
        }
        // A `--read-only` container's `/etc/hosts` is a read-only mount of Docker's file.
        Err(err) if err.is_read_only() => {
            if let Some(path) = &names.hosts_path {
                match rootfs::replace_on_host(path.clone(), contents).await {
                    Ok(previous) => return Some((Written::OnHost(path.clone()), previous)),
                    Err(err) => report(id, &err),
                }
            } else {
                report(id, &err);
            }
        }
        Err(err) => report(id, &err),
    }
    None
}

fn report(id: &str, err: &FileError) {
    warn!(container = %id, %err, "not writing the container's /etc/hosts; it keeps Docker's");
}

/// Gives back what a failed attempt took. The veth goes only if this attempt created it; an
/// address goes only if the container held it neither before the attempt nor on its `ethwe`
/// now (another attach of the same container may have finished meanwhile, with the same
/// addresses: the router gives one container the same address in a subnet every time).
async fn undo<T: Transport>(router: &RouterClient<T>, target: Target<'_>, progress: &Progress) {
    let id = short(target.id);
    let kept: Vec<Ipv4Net> = if progress.created {
        if let Err(err) = crate::detach(target.process).await {
            warn!(container = %id, %err, "could not remove the veth of a failed attach");
        }
        Vec::new()
    } else {
        match crate::container_addrs(target.process).await {
            Ok(addrs) => addrs,
            // The process is gone, and its namespace with it; the router frees what a dead
            // container held.
            Err(_) => progress.before.clone().unwrap_or_default(),
        }
    };
    let before = progress.before.as_deref().unwrap_or_default();
    for cidr in &progress.taken {
        let held = |n: &Ipv4Net| n.addr() == cidr.addr();
        if before.iter().any(held) || kept.iter().any(held) {
            continue;
        }
        if progress.named.contains(&cidr.addr())
            && let Err(err) = router.deregister_name(target.id, cidr.addr(), None).await
        {
            warn!(container = %id, %err, "could not remove a name of a failed attach");
        }
        if let Err(err) = router.release_addr(target.id, cidr.addr()).await {
            warn!(container = %id, %err, "could not free an address of a failed attach");
        }
    }
    // The file goes back to what it was only when the container is left without weave.
    if let Some((written, previous)) = &progress.hosts
        && kept.is_empty()
    {
        let restored = match written {
            Written::InContainer => {
                rootfs::replace_in_container(target.process, "etc/hosts", previous.clone()).await
            }
            Written::OnHost(path) => rootfs::replace_on_host(path.clone(), previous.clone()).await,
        };
        if let Err(err) = restored {
            warn!(container = %id, %err, "could not restore /etc/hosts after a failed attach");
        }
    }
}

/// The 12-character id Docker shows.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
