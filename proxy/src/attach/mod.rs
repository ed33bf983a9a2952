//! Attaching started containers to the weave network: addresses from the router, `ethwe` from
//! netlink, one container at a time, and clean-up when it fails. The decision is [`plan`] (pure);
//! this module is its I/O.
//!
//! Three paths lead here: a start or restart through the proxy ([`Attacher::on_start_request`],
//! which the client waits for), a start the proxy only hears about from Docker's events
//! ([`Attacher::on_start_event`]), and the sweep over running containers when the proxy starts
//! ([`events`]).

pub mod events;
pub mod hosts;
pub mod plan;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::cidr::CidrError;
use crate::naming;
use crate::upstream::Upstream;
use crate::weaveapi::{RouterClient, RouterError};
use plan::{Plan, Skip};

/// Why a container could not be attached.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The router refused, was not there, or cancelled.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// Building `ethwe` failed.
    #[error(transparent)]
    Net(#[from] weavenet::NetError),
    /// The container's `WEAVE_CIDR` does not parse.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// Docker could not be asked about the container.
    #[error("inspecting the container: {0}")]
    Docker(String),
    /// The whole attach took longer than `--attach-timeout`.
    #[error(
        "attaching took longer than {0:?} (--attach-timeout); is the weave router overloaded or stuck?"
    )]
    Timeout(Duration),
}

/// How attaching is configured.
#[derive(Debug, Clone)]
pub struct AttachSettings {
    /// The bridge containers join (`--weave-bridge`).
    pub bridge: String,
    /// Add the `224.0.0.0/4` route (not with `--no-multicast-route`).
    pub multicast_route: bool,
    /// `--no-default-ipalloc`.
    pub no_default_ipalloc: bool,
    /// The bound on an attach a client waits for (`--attach-timeout`).
    pub timeout: Duration,
    /// Where this proxy installs weavewait: only containers whose `/w` comes from here are its.
    pub weavewait_root: PathBuf,
    /// Write `/etc/hosts` with the weave addresses first (not with `--no-rewrite-hosts`).
    pub rewrite_hosts: bool,
    /// Register the container's name with weaveDNS (not with `--without-dns`).
    pub register_names: bool,
}

/// What an attach did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container has `ethwe` with these addresses.
    Attached(Vec<Ipv4Net>),
    /// The container was attached already, with this PID, by another path.
    AlreadyAttached,
    /// The container is not for the weave network, or not running.
    Skipped(Skip),
}

/// Attaches containers; cheap to clone, shared by the request handlers and the events watcher.
#[derive(Debug, Clone)]
pub struct Attacher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstream: Upstream,
    router: RouterClient,
    settings: AttachSettings,
    /// One lock per container being attached, so the start request and the events watcher never
    /// build its veth twice, while different containers attach in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Container id → the PID that was attached, so the event for a start the proxy has already
    /// handled costs one inspect and nothing more.
    attached: Mutex<HashMap<String, i32>>,
    /// Full ids of containers whose start request is going through the proxy (with a count, as
    /// two clients may start one container at once). The events watcher leaves these to the
    /// request, which alone can tell the client what went wrong.
    starting: Mutex<HashMap<String, usize>>,
    /// Woken whenever a start through the proxy finishes (attached or not).
    start_done: tokio::sync::Notify,
}

impl Attacher {
    /// An attacher asking `router` for addresses and Docker at `upstream` about containers.
    pub fn new(upstream: Upstream, router: RouterClient, settings: AttachSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream,
                router,
                settings,
                locks: Mutex::new(HashMap::new()),
                attached: Mutex::new(HashMap::new()),
                starting: Mutex::new(HashMap::new()),
                start_done: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The router's address, for messages.
    pub fn router_addr(&self) -> &str {
        self.inner.router.addr()
    }

    /// Before a start or restart of `container` is forwarded: marks it as starting through the
    /// proxy until the returned guard is dropped, so the `start` event it causes does not race
    /// the request's own attach. `None` when Docker does not know the container (the daemon
    /// then answers the start with its own error).
    pub async fn begin_start(&self, container: &str) -> Option<Starting> {
        let doc = self.inspect(container).await.ok()?;
        let id = doc.get("Id")?.as_str()?.to_owned();
        *lock(&self.inner.starting).entry(id.clone()).or_default() += 1;
        Some(Starting {
            attacher: self.clone(),
            id,
        })
    }

    /// After the daemon accepted `POST /containers/{container}/start` (or `/restart`): attach
    /// within the timeout. On failure the container is killed (as `docker kill`, so a restart
    /// policy does not bring it back into the same failure) and nothing it was given is kept.
    ///
    /// # Errors
    /// What went wrong; the caller tells the client.
    pub async fn on_start_request(&self, container: &str) -> Result<Outcome, AttachError> {
        let timeout = self.inner.settings.timeout;
        match tokio::time::timeout(timeout, self.attach(container)).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(failure)) => {
                self.kill_via_docker(container).await;
                Err(failure.error)
            }
            Err(_) => {
                // The attach was dropped half-way: undo what it did (under the lock it held),
                // then stop the container.
                if let Ok(Plan::Attach { id, pid, .. }) = self.inspect_plan(container).await {
                    self.undo_locked(&id, pid).await;
                }
                self.kill_via_docker(container).await;
                Err(AttachError::Timeout(timeout))
            }
        }
    }

    /// A container started without the proxy (restart policy, `docker start` on the daemon, a
    /// daemon restart). On failure its PID is killed, not the container: `docker kill` would
    /// count as a manual stop and disable the restart policy that should try again.
    pub async fn on_start_event(&self, id: &str) {
        if lock(&self.inner.starting).contains_key(id) {
            debug!(container = %short(id), "started through the proxy; the request attaches it");
            return;
        }
        match self.attach(id).await {
            Ok(Outcome::Attached(addrs)) => {
                info!(container = %short(id), ?addrs, "attached (started outside the proxy)");
            }
            Ok(Outcome::AlreadyAttached) => {}
            Ok(Outcome::Skipped(reason)) => debug!(container = %short(id), %reason, "not attached"),
            Err(failure) => {
                warn!(container = %short(id), error = %failure.error, "attach failed; killing its process");
                if let Some(pid) = failure.pid {
                    kill_pid(pid);
                }
            }
        }
    }

    /// Waits until no start of the container with full id `id` is going through the proxy, for
    /// at most the attach timeout: an inspect right after `docker run -d` then sees `ethwe`.
    pub async fn wait_for_start(&self, id: &str) {
        let wait = async {
            loop {
                let done = self.inner.start_done.notified();
                if !lock(&self.inner.starting).contains_key(id) {
                    return;
                }
                done.await;
            }
        };
        let _ = tokio::time::timeout(self.inner.settings.timeout, wait).await;
    }

    /// Forgets a removed container.
    pub fn forget(&self, id: &str) {
        lock(&self.inner.attached).remove(id);
    }

    /// Attaches `container` (an id or name) if it is a running weave container; idempotent.
    ///
    /// # Errors
    /// A [`Failure`] after everything the attempt allocated or built has been undone.
    pub async fn attach(&self, container: &str) -> Result<Outcome, Failure> {
        let first = self.inspect_plan(container).await.map_err(Failure::from)?;
        let Plan::Attach { id, .. } = &first else {
            return Ok(Outcome::from(first));
        };
        let id = id.clone();
        let guard = self.container_lock(&id);
        let plan = match guard.try_lock() {
            Ok(held) => self.attach_locked(first, held).await,
            Err(_) => {
                // Someone else was attaching it: what we read before may be stale by now.
                let held = guard.lock().await;
                match self.inspect_plan(&id).await {
                    Ok(plan) => self.attach_locked(plan, held).await,
                    Err(error) => Err(Failure::from(error)),
                }
            }
        };
        drop(guard);
        self.release_lock(&id);
        plan
    }

    async fn attach_locked(
        &self,
        plan: Plan,
        _held: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Outcome, Failure> {
        let Plan::Attach {
            id,
            pid,
            tokens,
            names,
        } = plan
        else {
            return Ok(Outcome::from(plan));
        };
        if lock(&self.inner.attached).get(&id) == Some(&pid) {
            debug!(container = %short(&id), pid, "already attached");
            return Ok(Outcome::AlreadyAttached);
        }
        let settings = &self.inner.settings;
        let started = std::time::Instant::now();
        let mut addrs = Vec::with_capacity(tokens.len());
        let result = async {
            for token in &tokens {
                addrs.push(self.inner.router.address(&id, token).await?);
            }
            if settings.rewrite_hosts {
                // Before `ethwe` is up: weavewait lets the program run as soon as it is.
                let ips: Vec<_> = addrs.iter().map(Ipv4Net::addr).collect();
                let contents = naming::hosts_file(&names.fqdn, &ips, &names.extra_hosts);
                match hosts::write(pid, names.hosts_path.as_deref(), &contents) {
                    Ok(path) => {
                        debug!(container = %short(&id), path = %path.display(), "wrote /etc/hosts")
                    }
                    // Docker's own file still names the container; a start is not worth losing
                    // over the weave line.
                    Err(err) => warn!(
                        container = %short(&id),
                        path = %hosts::path(pid).display(),
                        %err,
                        "could not write the container's /etc/hosts; it keeps Docker's"
                    ),
                }
            }
            weavenet::attach(&weavenet::AttachRequest {
                pid,
                bridge: &settings.bridge,
                cidrs: &addrs,
                multicast_route: settings.multicast_route,
            })
            .await?;
            if settings.register_names && !names.fqdn.is_empty() {
                for cidr in &addrs {
                    self.inner
                        .router
                        .register_name(&id, cidr.addr(), &names.fqdn)
                        .await?;
                }
            }
            Ok::<_, AttachError>(())
        }
        .await;
        match result {
            Ok(()) => {
                lock(&self.inner.attached).insert(id.clone(), pid);
                debug!(
                    container = %short(&id),
                    pid,
                    ?addrs,
                    micros = started.elapsed().as_micros() as u64,
                    "attached"
                );
                Ok(Outcome::Attached(addrs))
            }
            Err(error) => {
                self.undo(&id, pid).await;
                Err(Failure {
                    error,
                    pid: Some(pid),
                })
            }
        }
    }

    /// Frees the container's addresses and removes its veth; failures are only logged, since
    /// the router also frees the addresses of dead containers and the kernel removes a veth
    /// whose namespace is gone.
    async fn undo(&self, id: &str, pid: i32) {
        lock(&self.inner.attached).remove(id);
        if let Err(err) = self.inner.router.release(id).await {
            warn!(container = %short(id), %err, "could not free the addresses of a failed attach");
        }
        if self.inner.settings.register_names
            && let Err(err) = self.inner.router.deregister_names(id).await
        {
            warn!(container = %short(id), %err, "could not remove the names of a failed attach");
        }
        if let Err(err) = weavenet::detach(pid).await {
            warn!(container = %short(id), pid, %err, "could not remove the veth of a failed attach");
        }
    }

    async fn undo_locked(&self, id: &str, pid: i32) {
        let guard = self.container_lock(id);
        let held = guard.lock().await;
        self.undo(id, pid).await;
        drop(held);
        drop(guard);
        self.release_lock(id);
    }

    async fn inspect_plan(&self, container: &str) -> Result<Plan, AttachError> {
        let settings = &self.inner.settings;
        // A container that ran to its end and was removed (`docker run --rm` of a short
        // command) before this look is simply not running: nothing to attach, no failure.
        let doc = match self.inspect(container).await {
            Err(AttachError::Docker(reason)) if reason.starts_with("404") => {
                return Ok(Plan::Skip(Skip::NotRunning));
            }
            other => other?,
        };
        Ok(plan::plan(
            &doc,
            settings.no_default_ipalloc,
            &settings.weavewait_root,
        )?)
    }

    async fn inspect(&self, container: &str) -> Result<serde_json::Value, AttachError> {
        let (status, body) = self
            .inner
            .upstream
            .get(&format!("/containers/{container}/json"))
            .await
            .map_err(|err| AttachError::Docker(err.to_string()))?;
        if !status.is_success() {
            return Err(AttachError::Docker(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim_end()
            )));
        }
        serde_json::from_slice(&body).map_err(|err| AttachError::Docker(err.to_string()))
    }

    async fn kill_via_docker(&self, container: &str) {
        match self
            .inner
            .upstream
            .post(&format!("/containers/{container}/kill"))
            .await
        {
            Ok((status, _)) if status.is_success() || status.as_u16() == 409 => {}
            Ok((status, body)) => warn!(
                container,
                %status,
                body = %String::from_utf8_lossy(&body).trim_end(),
                "could not stop a container whose attach failed"
            ),
            Err(err) => warn!(container, %err, "could not stop a container whose attach failed"),
        }
    }

    fn container_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.inner.locks).entry(id.to_owned()).or_default())
    }

    /// Drops the lock entry once nobody holds or waits for it, so the map stays small.
    fn release_lock(&self, id: &str) {
        let mut locks = lock(&self.inner.locks);
        if locks.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(id);
        }
    }
}

/// A start request in progress; see [`Attacher::begin_start`].
#[derive(Debug)]
pub struct Starting {
    attacher: Attacher,
    id: String,
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut starting = lock(&self.attacher.inner.starting);
        if let Some(count) = starting.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                starting.remove(&self.id);
            }
        }
        drop(starting);
        self.attacher.inner.start_done.notify_waiters();
    }
}

/// A failed attach, with the PID it was for when it got that far.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: AttachError,
    /// The container's PID, when known.
    pub pid: Option<i32>,
}

impl From<AttachError> for Failure {
    fn from(error: AttachError) -> Self {
        Self { error, pid: None }
    }
}

impl From<Plan> for Outcome {
    fn from(plan: Plan) -> Self {
        match plan {
            Plan::Skip(reason) => Self::Skipped(reason),
            Plan::Attach { .. } => Self::AlreadyAttached,
        }
    }
}

fn kill_pid(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
        warn!(pid, %err, "could not kill the process of a container whose attach failed");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; the maps stay consistent regardless.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The 12-character id Docker shows.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
