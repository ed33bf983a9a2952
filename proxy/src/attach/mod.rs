//! Attaching started containers to the weave network: when, for whom, and what happens to a
//! container whose attach failed. The decision is [`plan`] (pure); the attach itself is
//! [`weavenet::sequence`], which `weave attach` runs too.
//!
//! Three paths lead here: a start or restart through the proxy ([`Attacher::on_start_request`],
//! which the client waits for), a start the proxy only hears about from Docker's events
//! ([`Attacher::on_start_event`]), and the sweep over running containers when the proxy starts
//! ([`events`]). The last two attach only this proxy's own containers (see [`crate::weavecontainer::OWNER_LABEL`]).

pub mod events;
pub mod plan;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::RouterClient;

use crate::metrics::Metrics;
use bollard::models::ContainerInspectResponse;
use ipnet::Ipv4Net;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weavenet::Process;

use crate::docker::{DockerClient, DockerError};
use crate::sync::lock;
use crate::weavecontainer::WEAVEWAIT;
use api::CidrError;
use plan::{Plan, Skip};
use weavenet::sequence::{self, short};

/// What a start request waits beyond `--attach-timeout` for the undo of an attach that ran out
/// of time (the undo has a bound of its own).
const UNDO_GRACE: Duration = Duration::from_secs(6);

/// How long a start request waits, once the container is attached, for weavewait to `exec` the
/// container's program (it does so as soon as it sees `ethwe` up: microseconds to milliseconds),
/// and for the daemon to have seen a program that already ended.
const EXEC_WAIT: Duration = Duration::from_secs(1);

/// How long a start request watches, at most, the program it has just seen exec'd, in case it
/// ends at once (`echo`, `ls`, a command that fails); see [`first_moments_over`] for when the
/// watch ends sooner. The daemon answers its own starts some milliseconds after the exec of
/// the container's first process, once it has recorded the container as running, and a
/// program that short has mostly ended by then: a client reading the logs at once finds the
/// output. Through the proxy, that first process is weavewait, so the program's exec comes
/// later and is seen by the proxy at once; without this watch a client would find the output
/// less often through the proxy than direct.
const EXIT_WATCH: Duration = Duration::from_millis(100);

/// CPU time after which a program that has not ended is taken to run: an `echo` needs a
/// fraction of it.
const CPU_GRACE: Duration = Duration::from_millis(2);

/// Where the container's first process stands once it is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// It runs the container's program, past its first moments.
    Running,
    /// It has ended: the program ran (or weavewait gave up).
    Ended,
    /// It still runs weavewait.
    Waiting,
}

/// Waits until `process` no longer runs `waiting` (weavewait, as the container names it), at
/// most `limit`; then, if it runs a program, watches that program for at most `watch`, until
/// its first moments are over ([`first_moments_over`]) or it ends.
///
/// weavewait is known by its whole path in the container: the proxy binds its own directory
/// at `/w`, over anything the image has there, so only weavewait is `/w/w`; a program of the
/// container's that is called `w` anywhere else is the program. The path is read with
/// `readlink` of `/proc/<pid>/exe`, and the program's state from `/proc/<pid>/stat` and
/// `schedstat`, which the kernel writes: nothing the container controls is followed.
async fn handover(
    process: &Process,
    waiting: &std::path::Path,
    limit: Duration,
    watch: Duration,
) -> Handover {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(100);
    loop {
        match process.exe() {
            Ok(exe) if exe == waiting => {}
            Ok(_) => break,
            Err(_) => return Handover::Ended,
        }
        if Instant::now() >= deadline {
            return Handover::Waiting;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    let watched = Instant::now() + watch;
    let cpu_at_exec = cpu_time(process);
    loop {
        let state = process.read_proc("stat").ok().and_then(|s| proc_state(&s));
        let ran = cpu_time(process)
            .zip(cpu_at_exec)
            .map(|(now, then)| now.saturating_sub(then));
        // Read after the state: a PID 1 that exits loses its `exe` before it sleeps waiting
        // for the rest of its namespace to end, and before its pidfd tells of the end.
        if process.exe().is_err() {
            return Handover::Ended;
        }
        if first_moments_over(state, ran) || Instant::now() >= watched {
            return Handover::Running;
        }
        // Tokio's timer counts whole milliseconds.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether a program just exec'd has got past its first moments: it waits for something (`S`:
/// input, a timer, a connection, a child; `T`/`t`: stopped), or has run [`CPU_GRACE`] on a CPU
/// without ending. One that is runnable but not yet run (under load), or waits for the disk
/// (`D`, its exec's page-ins), may still be about to print and end.
fn first_moments_over(state: Option<char>, ran: Option<Duration>) -> bool {
    matches!(state, Some('S' | 'T' | 't')) || ran.is_some_and(|ran| ran >= CPU_GRACE)
}

/// The state letter of `/proc/<pid>/stat`: after the command name, which the container
/// chooses and which may hold spaces and parentheses, so read after its last `)`.
fn proc_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The time `process` has run on a CPU: the first field of `/proc/<pid>/schedstat`, in
/// nanoseconds.
fn cpu_time(process: &Process) -> Option<Duration> {
    let schedstat = process.read_proc("schedstat").ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The reason label of a failed attach sequence in the metrics: who failed, not the message.
fn failure_reason(error: &sequence::AttachError) -> &'static str {
    match error {
        sequence::AttachError::Router(api::RouterError::Refused { .. }) => "router_refused",
        sequence::AttachError::Router(api::RouterError::Cancelled { .. }) => "cancelled",
        sequence::AttachError::Router(_) => "router_unreachable",
        sequence::AttachError::Net(_) => "network",
        sequence::AttachError::Timeout(_) => "timeout",
    }
}

/// Why a container could not be attached.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The attach sequence failed: the router refused, was not there or cancelled, `ethwe`
    /// could not be built, or it ran out of time (its undo has run).
    #[error(transparent)]
    Sequence(#[from] sequence::AttachError),
    /// Building `ethwe` failed.
    #[error(transparent)]
    Net(#[from] weavenet::NetError),
    /// The container's `WEAVE_CIDR` does not parse.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// Docker could not be asked about the container.
    #[error("inspecting the container: {0}")]
    Docker(#[from] DockerError),
    /// The container's first process ended between the inspect and the pin.
    #[error("the container's process {0} ended while it was being attached")]
    ProcessEnded(i32),
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
    /// This proxy's identity, as it labels the containers it creates ([`crate::weavecontainer::OWNER_LABEL`]).
    pub owner: String,
}

impl AttachSettings {
    fn options(&self) -> sequence::Options {
        sequence::Options {
            bridge: self.bridge.clone(),
            multicast_route: self.multicast_route,
            rewrite_hosts: self.rewrite_hosts,
            register_names: self.register_names,
        }
    }
}

/// Why an attach is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A client started the container through this proxy: attach it whoever created it.
    Request,
    /// Docker's events, or the sweep: attach only this proxy's own containers, so that two
    /// proxies on one daemon do not both take each container.
    Observed,
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
    docker: DockerClient,
    router: RouterClient,
    settings: AttachSettings,
    /// One lock per container being attached, so the start request and the events watcher never
    /// build its veth twice, while different containers attach in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Container id → the PID that was attached, so the event for a start the proxy has already
    /// handled costs one inspect and nothing more.
    attached: Mutex<HashMap<String, i32>>,
    /// Where attaches are counted.
    metrics: Metrics,
    /// Full ids of containers whose start request is going through the proxy (with a count, as
    /// two clients may start one container at once). The events watcher leaves these to the
    /// request, which alone can tell the client what went wrong.
    starting: Mutex<HashMap<String, usize>>,
    /// Woken whenever a start through the proxy finishes (attached or not).
    start_done: tokio::sync::Notify,
}

impl Attacher {
    /// An attacher asking `router` for addresses and `docker` about containers.
    pub fn new(docker: DockerClient, router: RouterClient, settings: AttachSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                docker,
                router,
                settings,
                locks: Mutex::new(HashMap::new()),
                attached: Mutex::new(HashMap::new()),
                starting: Mutex::new(HashMap::new()),
                start_done: tokio::sync::Notify::new(),
                metrics: Metrics::new(),
            }),
        }
    }

    /// Counts attaches in `metrics` (a new attacher only: before any clone is made).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = metrics;
        }
        self
    }

    /// `--attach-timeout`: the bound on one attach.
    pub fn timeout(&self) -> Duration {
        self.inner.settings.timeout
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
        let id = self.inspect(container).await.ok()?.id?;
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
        let deadline = Instant::now() + timeout;
        let attach = self.attach(container, Trigger::Request, deadline);
        match tokio::time::timeout_at(deadline + UNDO_GRACE, attach).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(failure)) => {
                self.kill_via_docker(container).await;
                Err(failure.error)
            }
            // Docker itself did not answer the inspect in time.
            Err(_) => {
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
        let deadline = Instant::now() + self.inner.settings.timeout;
        match self.attach(id, Trigger::Observed, deadline).await {
            Ok(Outcome::Attached(addrs)) => {
                info!(container = %short(id), ?addrs, "attached (started outside the proxy)");
            }
            Ok(Outcome::AlreadyAttached) => {}
            Ok(Outcome::Skipped(reason)) => debug!(container = %short(id), %reason, "not attached"),
            Err(failure) => {
                warn!(container = %short(id), error = %failure.error, "attach failed; killing its process");
                if let Some(process) = failure.process
                    && let Err(err) = process.kill()
                {
                    warn!(pid = process.pid(), %err, "could not kill the process of a container whose attach failed");
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

    /// Attaches `container` (an id or name) if it is a running weave container (and, unless a
    /// client asked, this proxy's own), giving up at `deadline`; idempotent.
    ///
    /// # Errors
    /// A [`Failure`] after everything the attempt allocated or built has been undone.
    pub async fn attach(
        &self,
        container: &str,
        trigger: Trigger,
        deadline: Instant,
    ) -> Result<Outcome, Failure> {
        let first = self
            .inspect_plan(container, trigger)
            .await
            .map_err(Failure::from)?;
        let Plan::Attach { id, .. } = &first else {
            return Ok(Outcome::from(first));
        };
        let id = id.clone();
        let guard = self.container_lock(&id);
        let plan = match guard.try_lock() {
            Ok(held) => self.attach_locked(first, held, trigger, deadline).await,
            Err(_) => {
                // Someone else was attaching it: what we read before may be stale by now.
                let held = guard.lock().await;
                match self.inspect_plan(&id, trigger).await {
                    Ok(plan) => self.attach_locked(plan, held, trigger, deadline).await,
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
        trigger: Trigger,
        deadline: Instant,
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
        let started = std::time::Instant::now();
        let process = self.pin(&id, pid).await.map_err(Failure::from)?;
        let target = sequence::Target {
            id: &id,
            process: &process,
            tokens: &tokens,
            names: &names,
        };
        let limit = deadline.saturating_duration_since(Instant::now());
        let options = self.inner.settings.options();
        let result = sequence::attach(&self.inner.router, target, &options, limit).await;
        self.inner.metrics.attach(
            result.as_ref().map(|_| ()).map_err(failure_reason),
            started.elapsed(),
        );
        match result {
            Ok(done) => {
                lock(&self.inner.attached).insert(id.clone(), pid);
                debug!(
                    container = %short(&id),
                    pid,
                    addrs = ?done.addrs,
                    first = done.first,
                    micros = started.elapsed().as_micros() as u64,
                    "attached"
                );
                if trigger == Trigger::Request {
                    self.settle(&id, &process).await;
                }
                Ok(Outcome::Attached(done.addrs))
            }
            Err(error) => {
                lock(&self.inner.attached).remove(&id);
                Err(Failure {
                    error: error.into(),
                    process: Some(process),
                })
            }
        }
    }

    /// Pins the container's first process, then asks Docker again that it is still the
    /// container's: a PID can be reused between the inspect that gave it and the pin, never
    /// after.
    async fn pin(&self, id: &str, pid: i32) -> Result<Process, AttachError> {
        let process = Process::pin(pid)?;
        let state = self.inspect(id).await?.state.unwrap_or_default();
        if state.running == Some(true) && state.pid == Some(i64::from(pid)) {
            Ok(process)
        } else {
            Err(AttachError::ProcessEnded(pid))
        }
    }

    async fn inspect_plan(&self, container: &str, trigger: Trigger) -> Result<Plan, AttachError> {
        let settings = &self.inner.settings;
        // A container that ran to its end and was removed (`docker run --rm` of a short
        // command) before this look is simply not running: nothing to attach, no failure.
        let doc = match self.inspect(container).await {
            Err(AttachError::Docker(DockerError::NotFound { .. })) => {
                return Ok(Plan::Skip(Skip::NotRunning));
            }
            other => other?,
        };
        let owner = (trigger == Trigger::Observed).then_some(settings.owner.as_str());
        Ok(plan::plan(
            &doc,
            settings.no_default_ipalloc,
            &settings.weavewait_root,
            owner,
        )?)
    }

    /// Makes the answer to a start request mean what the daemon's does: the container's program
    /// runs, not weavewait about to hand over to it. A program that has already ended, or ends
    /// in its first moments (see [`handover`]), is waited for until the daemon has seen it end, which
    /// it marks only once it has copied the program's output: a client that starts a short
    /// container and reads its logs at once finds them. All of it within [`EXEC_WAIT`], and
    /// in this request's task alone: other requests go on meanwhile.
    async fn settle(&self, id: &str, process: &Process) {
        let deadline = Instant::now() + EXEC_WAIT;
        let weavewait = std::path::Path::new(WEAVEWAIT);
        let handed = handover(process, weavewait, EXEC_WAIT, EXIT_WATCH).await;
        debug!(container = %short(id), ?handed, "start settling");
        match handed {
            Handover::Running => {}
            Handover::Waiting => {
                debug!(container = %short(id), "weavewait has not handed over yet; answering");
            }
            Handover::Ended => {
                let mut pause = Duration::from_millis(1);
                while Instant::now() < deadline {
                    match self.inspect(id).await {
                        Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {}
                        _ => return,
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    async fn inspect(&self, container: &str) -> Result<ContainerInspectResponse, AttachError> {
        Ok(self.inner.docker.inspect_container(container).await?)
    }

    async fn kill_via_docker(&self, container: &str) {
        match self.inner.docker.kill_container(container).await {
            // 409: it is not running (any more), which is what the kill is for.
            Ok(()) | Err(DockerError::Daemon { status: 409, .. }) => {}
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

/// A failed attach, with the container's process when it got that far.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: AttachError,
    /// The container's first process, pinned.
    pub process: Option<Process>,
}

impl From<AttachError> for Failure {
    fn from(error: AttachError) -> Self {
        Self {
            error,
            process: None,
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// `sh -c SCRIPT`, pinned, and the program it runs until it `exec`s (a script of more than
    /// one command, so that the shell does not `exec` its last one on its own); and when it was
    /// spawned.
    fn shell(script: &str) -> (Child, Process, PathBuf, std::time::Instant) {
        let spawned = std::time::Instant::now();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Process::pin(i32::try_from(child.id()).unwrap()).unwrap();
        // Between fork and exec the child still runs this test's own program.
        let me = std::env::current_exe().unwrap();
        let shell = loop {
            let exe = process.exe().unwrap();
            if exe != me {
                break exe;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        (child, process, shell, spawned)
    }

    fn end(mut child: Child) {
        let _ = child.wait();
    }

    #[tokio::test]
    async fn the_handover_is_the_exec_of_the_program_or_the_end() {
        let (child, process, waiting, spawned) = shell("sleep 0.3; exec sleep 0.2");
        let limit = Duration::from_secs(10);
        let no_watch = Duration::ZERO;
        let running = handover(&process, &waiting, limit, no_watch).await;
        assert_eq!(running, Handover::Running);
        assert!(spawned.elapsed() >= Duration::from_millis(300));
        end(child);

        let (child, process, waiting, _) = shell("sleep 0.5; true");
        let ended = handover(&process, &waiting, limit, no_watch).await;
        assert_eq!(ended, Handover::Ended);
        end(child);

        let (mut child, process, waiting, _) = shell("sleep 5; true");
        let short = Duration::from_millis(50);
        let waited = handover(&process, &waiting, short, no_watch).await;
        assert_eq!(waited, Handover::Waiting);
        child.kill().unwrap();
        end(child);
    }

    /// A program that ends at once is an ended one (its output is to be waited for); one that
    /// waits for something, or keeps a CPU busy, runs.
    #[tokio::test]
    async fn a_program_that_ends_at_once_has_ended() {
        let limit = Duration::from_secs(10);
        let cases = [
            ("sleep 0.2; exec true", Handover::Ended),
            ("sleep 0.2; exec sleep 10", Handover::Running),
            ("sleep 0.2; exec yes", Handover::Running),
        ];
        for (script, want) in cases {
            let (mut child, process, waiting, _) = shell(script);
            let got = handover(&process, &waiting, limit, limit).await;
            assert_eq!(got, want, "{script}");
            let _ = child.kill();
            end(child);
        }
    }

    #[test]
    fn first_moments_end_when_the_program_waits_or_has_run() {
        let ms = Duration::from_millis;
        let cases = [
            (Some('S'), Some(ms(0)), true),
            (Some('T'), None, true),
            (Some('t'), None, true),
            (Some('R'), Some(ms(0)), false),
            (Some('R'), Some(CPU_GRACE), true),
            (Some('D'), Some(ms(1)), false),
            (None, None, false),
            (None, Some(ms(5)), true),
        ];
        for (state, ran, want) in cases {
            assert_eq!(first_moments_over(state, ran), want, "{state:?} {ran:?}");
        }
        let stats = [
            ("42 (sleep) S 1 42 42 0 -1", Some('S')),
            ("42 (a) R (b) Z) R 1 42", Some('R')),
            ("42 (x y) D 1", Some('D')),
            ("42 no name", None),
        ];
        for (stat, want) in stats {
            assert_eq!(proc_state(stat), want, "{stat}");
        }
    }

    /// weavewait is known by its whole path in the container (`/w/w`, where the proxy mounts
    /// it), never by its name alone: a container whose own program is called `w` has started.
    #[tokio::test]
    async fn a_program_named_w_is_not_weavewait() {
        let dir = tempfile::tempdir().unwrap();
        let own_w = dir.path().join("w");
        std::fs::create_dir(&own_w).unwrap();
        let program = own_w.join("w");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let mut child = Command::new(&program).arg("5").spawn().unwrap();
        let process = Process::pin(i32::try_from(child.id()).unwrap()).unwrap();
        let weavewait = Path::new(WEAVEWAIT);
        let limit = Duration::from_secs(10);
        // Until the fork has exec'd, the child runs this test's own program.
        let me = std::env::current_exe().unwrap();
        while process.exe().unwrap() == me {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(process.exe().unwrap().file_name(), weavewait.file_name());
        let running = handover(&process, weavewait, limit, Duration::ZERO).await;
        assert_eq!(running, Handover::Running);
        child.kill().unwrap();
        end(child);
    }
}
