//! `bench-mesh`: the control plane of a weave network of many hosts (issue 13), measured on
//! namespace hosts ([`weave_tests::hosts`]); run by `scripts/bench-mesh.sh`.
//!
//! `--hosts N` hosts on one underlay, the first three running the etcd cluster, every one a
//! router joined to it. Then:
//!
//! 1. **Joins.** A host is added and its router started; each other host's VXLAN flood list is
//!    read over netlink from inside its namespace until it holds the new endpoint, and the
//!    containers on a few sampled hosts (`--ping-from`) ping a container on the new host until
//!    it answers. Times are from the router's spawn.
//! 2. **Names.** A name is registered on one host (`PUT /name/<id>/<ip>`) and every other
//!    host's `GET /name` is polled until it lists it. Times are from the request.
//! 3. **Store.** What a container start writes: an address (`POST /ip/<id>`) and a name, spread
//!    over the hosts; the store's revision, database size and keys before and after.
//!
//! Results are markdown tables on stdout, progress on stderr. Nothing asserts on time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sched::{CloneFlags, setns};
use weave_tests::hosts::{Container, Hosts};
use weave_tests::http;
use weave_tests::image::busybox_binary;

/// Store members: three, whatever the host count (MULTIHOST.md §4.8).
const MEMBERS: usize = 3;
/// The VXLAN port's link, at the default port.
const VXLAN_PORT: u16 = 6789;
/// How often a flood list or ping is tried again.
const POLL: Duration = Duration::from_millis(10);
/// How often each host's `GET /name` is asked again: dozens of hosts asked every 10 ms took
/// the two cores from the routers being measured.
const NAME_POLL: Duration = Duration::from_millis(50);
/// Past this a change counts as not arrived, and the run reports it.
const PATIENCE: Duration = Duration::from_secs(30);
/// The window over which the idle store's writes and lease keepalives are counted.
const IDLE_WINDOW: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Args {
    hosts: usize,
    joins: usize,
    names: usize,
    containers: usize,
    /// Hosts whose container pings each new host's (0: none).
    ping: usize,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut parsed = Self {
            hosts: 32,
            joins: 8,
            names: 50,
            containers: 100,
            ping: 4,
        };
        while let Some(flag) = args.next() {
            let value: usize = args
                .next()
                .with_context(|| format!("{flag} needs a number"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))?;
            match flag.as_str() {
                "--hosts" => parsed.hosts = value,
                "--joins" => parsed.joins = value,
                "--names" => parsed.names = value,
                "--containers" => parsed.containers = value,
                "--ping-from" => parsed.ping = value,
                _ => bail!(
                    "unknown flag {flag}; use --hosts N --joins N --names N --containers N --ping-from N"
                ),
            }
        }
        ensure!(
            parsed.hosts >= MEMBERS,
            "--hosts must be at least {MEMBERS}"
        );
        // The underlay is one /24, the hosts numbered from .1.
        ensure!(
            parsed.hosts + parsed.joins <= 250,
            "at most 250 hosts fit the underlay"
        );
        Ok(parsed)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("bench-mesh: {err:#}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-mesh: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<String> {
    let mut out = String::new();
    let load_before = load_average();
    let started = Instant::now();
    eprintln!(
        "bench-mesh: {} hosts ({MEMBERS} with a store member)",
        args.hosts
    );
    let mut hosts = Hosts::new(args.hosts, MEMBERS);
    // The routers' debug logging would be load of its own, on the cores being measured.
    hosts.set_log_level("info");
    let mut ready = Vec::new();
    for i in 0..args.hosts {
        let t = Instant::now();
        hosts.start_weaver(i, &[]);
        ready.push(t.elapsed());
    }
    eprintln!(
        "bench-mesh: {} routers up in {:.1} s",
        args.hosts,
        started.elapsed().as_secs_f64()
    );
    let store_ns = hosts.hosts[0].ns.clone();
    let store_at = format!("{}:2379", hosts.hosts[0].addr);
    let members: Vec<String> = hosts.hosts[..MEMBERS]
        .iter()
        .map(|h| format!("{}:2379", h.addr))
        .collect();
    // Every host sees every other before anything is timed.
    wait_for_full_mesh(&hosts, args.hosts)?;

    let idle = measure_idle(&store_ns, &store_at, &members)?;

    let mut sources = Vec::new();
    // A few hosts spread over the first ones, not all: every ping is an `ip netns exec` and a
    // process, and dozens of them at once took the two cores from what was measured.
    for k in 0..args.ping.min(args.hosts) {
        let i = k * args.hosts / args.ping.min(args.hosts);
        sources.push(hosts.container(i, &format!("src{i}")));
    }
    let mut joins = Vec::new();
    for j in 0..args.joins {
        let join = time_join(&mut hosts, &sources)?;
        eprintln!(
            "bench-mesh: join {}/{}: flood lists after {}, pings after {}",
            j + 1,
            args.joins,
            ms(join.flood_everywhere),
            join.ping_everywhere.map_or("-".to_owned(), ms)
        );
        joins.push(join);
    }
    let total = hosts.hosts.len();

    let mut names = Vec::new();
    for k in 0..args.names {
        let name = time_name(&hosts, k)?;
        names.push(name);
    }
    eprintln!("bench-mesh: {} names timed", args.names);

    let store = measure_store(&hosts, &store_ns, &store_at, args.containers)?;
    let load_after = load_average();

    writeln!(
        out,
        "### Multi-host control plane: {} hosts, {} joined during the run, {MEMBERS} etcd members\n",
        args.hosts, args.joins
    )?;
    writeln!(
        out,
        "Load average (1, 5, 15 min): before {load_before}, after {load_after}; {} cores; \
         run took {:.0} s.\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        started.elapsed().as_secs_f64()
    )?;
    report_joins(&mut out, &joins, args.hosts, total)?;
    report_names(&mut out, &names, total)?;
    report_idle(&mut out, &idle, args.hosts)?;
    report_store(&mut out, &store)?;
    writeln!(
        out,
        "Router start until `GET /status` answers, the first {} hosts: p50 {}, p99 {}.",
        args.hosts,
        ms(percentile(&ready, 50)),
        ms(percentile(&ready, 99))
    )?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Inside a host's namespace

/// Runs `work` on a new thread inside the network namespace `ns`, with a runtime of its own:
/// `setns` moves only the calling thread, and a netlink or TCP socket belongs to the namespace
/// of the thread that opens it.
fn in_netns<T, F, Fut>(ns: &str, work: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {}", path.display()))?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?
                .block_on(work())
        })
        .context("spawning a thread")
}

fn joined<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a watcher thread panicked"))?
}

/// Polls the flood list of the host whose namespace the caller is in until `done` holds for
/// it: the time since `since`. A missing link is "not yet": a new host's router makes it.
async fn flood_until(since: Instant, done: impl Fn(&[Ipv4Addr]) -> bool) -> Result<Duration> {
    let link = weavenet::vxlan_name(VXLAN_PORT);
    let mut last_error = None;
    loop {
        match weavenet::flood_entries(&link).await {
            Ok(entries) if done(&entries) => return Ok(since.elapsed()),
            Ok(_) => {}
            Err(err) => last_error = Some(err.to_string()),
        }
        if since.elapsed() > PATIENCE {
            bail!(
                "the flood list of {link} was not as expected within {PATIENCE:?} (last error: {})",
                last_error.as_deref().unwrap_or("none")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every host's flood list holds all `n - 1` others.
fn wait_for_full_mesh(hosts: &Hosts, n: usize) -> Result<()> {
    let since = Instant::now();
    let watchers = hosts.hosts[..n]
        .iter()
        .map(|h| in_netns(&h.ns, move || flood_until(since, move |e| e.len() >= n - 1)))
        .collect::<Result<Vec<_>>>()?;
    for w in watchers {
        joined(w).context("waiting for every host to know every other")?;
    }
    eprintln!("bench-mesh: full mesh of {n} after {}", ms(since.elapsed()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. A peer joining

#[derive(Debug)]
struct Join {
    /// Until its `GET /status` answered.
    ready: Duration,
    /// Per other host, until its flood list held the new endpoint.
    flood: Vec<Duration>,
    flood_everywhere: Duration,
    /// Until the new host's own flood list held every other.
    own_flood: Duration,
    /// Per pinging host, until its container's ping of the new host's container was answered.
    ping: Vec<Duration>,
    ping_everywhere: Option<Duration>,
    /// Until the container on it was made (address, namespace, name), when pinged.
    made: Option<Duration>,
    /// The other hosts whose container got no answer within [`PATIENCE`].
    unanswered: Vec<String>,
}

fn time_join(hosts: &mut Hosts, sources: &[Container]) -> Result<Join> {
    let i = hosts.push_host();
    let vtep = hosts.hosts[i].addr;
    let mut monitors = hosts.hosts[..i]
        .iter()
        .map(|h| FloodMonitor::start(&h.ns, move |e| e.contains(&vtep)))
        .collect::<Result<Vec<_>>>()?;
    monitors.push(FloodMonitor::start(&hosts.hosts[i].ns, move |e| {
        e.len() >= i
    })?);
    // Time for the monitors to subscribe before there is anything to see.
    std::thread::sleep(Duration::from_millis(200));
    let since = Instant::now();
    hosts.start_weaver(i, &[]);
    let ready = since.elapsed();
    let mut ping = Vec::new();
    let mut ping_everywhere = None;
    let mut unanswered = Vec::new();
    let mut made = None;
    if !sources.is_empty() {
        let target = hosts.container(i, &format!("dst{i}"));
        made = Some(since.elapsed());
        let busybox = busybox_binary();
        let answers = std::thread::scope(|s| {
            let pingers: Vec<_> = sources
                .iter()
                .map(|from| s.spawn(|| ping_until(&from.ns, target.addr, &busybox, since)))
                .collect();
            pingers
                .into_iter()
                .map(|p| {
                    p.join()
                        .map_err(|_| anyhow::anyhow!("a ping thread panicked"))?
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for (from, answer) in sources.iter().zip(answers) {
            match answer {
                Some(t) => ping.push(t),
                None => unanswered.push(from.ns.clone()),
            }
        }
        ping_everywhere = ping.iter().max().copied().filter(|_| unanswered.is_empty());
    }
    while !monitors.iter().all(FloodMonitor::finished) && since.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = monitors
        .into_iter()
        .map(FloodMonitor::stop)
        .collect::<Vec<_>>();
    let own_flood = seen
        .pop()
        .flatten()
        .with_context(|| format!("{vtep} did not add every host within {PATIENCE:?}"))?
        .saturating_duration_since(since);
    let flood = seen
        .into_iter()
        .map(|t| t.map(|t| t.saturating_duration_since(since)))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("not every host added {vtep} within {PATIENCE:?}"))?;
    Ok(Join {
        ready,
        flood_everywhere: flood.iter().max().copied().unwrap_or_default(),
        flood,
        own_flood,
        ping,
        ping_everywhere,
        made,
        unanswered,
    })
}

/// `bridge monitor fdb` in a host's namespace: the kernel's own notice of each flood entry
/// added. Polling netlink from dozens of hosts every few milliseconds was load enough to slow
/// the joins it timed.
#[derive(Debug)]
struct FloodMonitor {
    child: Child,
    /// When the flood list first met the condition; `None` when the monitor ended first.
    seen: JoinHandle<Option<Instant>>,
}

impl FloodMonitor {
    fn start(
        ns: &str,
        done: impl Fn(&BTreeSet<Ipv4Addr>) -> bool + Send + 'static,
    ) -> Result<Self> {
        let mut child = Command::new("bridge")
            .args(["-n", ns, "monitor", "fdb"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running bridge monitor fdb")?;
        let stdout = child.stdout.take().context("the monitor's output")?;
        let link = format!("dev {}", weavenet::vxlan_name(VXLAN_PORT));
        let seen = std::thread::spawn(move || {
            let mut vteps = BTreeSet::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.ok()?;
                if line.starts_with("Deleted") || !line.contains(&link) {
                    continue;
                }
                let dst = line
                    .split_whitespace()
                    .skip_while(|w| *w != "dst")
                    .nth(1)
                    .and_then(|a| a.parse().ok());
                if let Some(dst) = dst {
                    vteps.insert(dst);
                    if done(&vteps) {
                        return Some(Instant::now());
                    }
                }
            }
            None
        });
        Ok(Self { child, seen })
    }

    fn finished(&self) -> bool {
        self.seen.is_finished()
    }

    fn stop(mut self) -> Option<Instant> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.join().ok().flatten()
    }
}

/// Pings `to` from the namespace `ns` until it answers: the time since `since`, or `None` when
/// it did not within [`PATIENCE`].
fn ping_until(ns: &str, to: Ipv4Addr, busybox: &Path, since: Instant) -> Result<Option<Duration>> {
    loop {
        let answered = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(busybox)
            .args(["ping", "-c", "1", "-W", "1", &to.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running ping")?
            .success();
        if answered {
            return Ok(Some(since.elapsed()));
        }
        if since.elapsed() > PATIENCE {
            // What the source's kernel knows of the target, to tell ARP from the rest.
            let neigh = Command::new("ip")
                .args(["-n", ns, "neigh", "show", &to.to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            eprintln!(
                "bench-mesh: {to} did not answer a ping from {ns} within {PATIENCE:?} (neighbour: {neigh:?})"
            );
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A name registered

#[derive(Debug)]
struct NameTimes {
    /// The `PUT` itself.
    put: Duration,
    /// Per other host, until its `GET /name` listed it.
    hosts: Vec<Duration>,
    everywhere: Duration,
}

fn time_name(hosts: &Hosts, k: usize) -> Result<NameTimes> {
    let n = hosts.hosts.len();
    let origin = k % n;
    let fqdn = format!("bench{k}.weave.local.");
    let id = format!("benchname{k}");
    // Beyond every block the hosts claim in this run: a name needs no address of its own.
    let addr = Ipv4Addr::new(10, 40, 255, u8::try_from(k % 250 + 1).unwrap_or(1));
    let listed = format!("\"{fqdn}\"");
    let since = Instant::now();
    let times = std::thread::scope(|s| {
        let watchers: Vec<_> = (0..n)
            .filter(|&h| h != origin)
            .map(|h| {
                let addr = hosts.weaver(h).addr().to_owned();
                let listed = &listed;
                s.spawn(move || names_until(&addr, listed, since))
            })
            .collect();
        let (status, body) = http::request(
            hosts.weaver(origin).addr(),
            "PUT",
            &format!("/name/{id}/{addr}"),
            &format!("fqdn={fqdn}"),
        )
        .context("registering a name")?;
        let put = since.elapsed();
        ensure!(status == 204, "PUT /name/{id}/{addr}: {status} {body}");
        let hosts = watchers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a watcher thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()?;
        Ok::<_, anyhow::Error>((put, hosts))
    })?;
    let (put, hosts) = times;
    Ok(NameTimes {
        put,
        everywhere: hosts.iter().max().copied().unwrap_or_default(),
        hosts,
    })
}

/// Polls the router at `addr` until `GET /name` lists `listed` (a quoted name): the time since
/// `since`.
fn names_until(addr: &str, listed: &str, since: Instant) -> Result<Duration> {
    loop {
        let reply = http::Request::get("/name")
            .header("Accept", "application/json")
            .send(addr)
            .with_context(|| format!("GET /name from {addr}"))?;
        ensure!(
            reply.status == 200,
            "GET /name from {addr}: {}",
            reply.status
        );
        if reply.body.contains(listed) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > PATIENCE {
            bail!("{listed} was not listed by {addr} within {PATIENCE:?}");
        }
        std::thread::sleep(NAME_POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The store

/// The store at one moment: its revision and size, and weave's keys by kind.
#[derive(Debug, Clone)]
struct Snapshot {
    revision: i64,
    db_size: i64,
    /// Per kind of key (`peers`, `alive`, `ipam/blocks`, `dns`, ...): keys, and bytes of key
    /// and value.
    keys: BTreeMap<String, (usize, usize)>,
}

impl Snapshot {
    fn count(&self, kind: &str) -> usize {
        self.keys.get(kind).map_or(0, |k| k.0)
    }

    fn total(&self) -> (usize, usize) {
        self.keys
            .values()
            .fold((0, 0), |(k, b), (k2, b2)| (k + k2, b + b2))
    }
}

fn snapshot(ns: &str, endpoint: &str) -> Result<Snapshot> {
    let endpoint = endpoint.to_owned();
    joined(in_netns(ns, move || async move {
        let store = etcd::Client::new([&endpoint])?;
        let status = store.status().await?;
        let listed = store.get(&etcd::Keys::prefix("/weave/v1/")).await?;
        let mut keys: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for kv in &listed.kvs {
            let rest = kv.key.strip_prefix(b"/weave/v1/").unwrap_or(&kv.key);
            let rest = String::from_utf8_lossy(rest);
            // `ipam/blocks/x` is a kind of its own; the rest are kinds by their first segment.
            let kind = if rest.starts_with("ipam/") {
                rest.splitn(3, '/').take(2).collect::<Vec<_>>().join("/")
            } else {
                rest.split('/').next().unwrap_or_default().to_owned()
            };
            let entry = keys.entry(kind).or_default();
            entry.0 += 1;
            entry.1 += kv.key.len() + kv.value.len();
        }
        Ok(Snapshot {
            revision: status.revision,
            db_size: status.db_size,
            keys,
        })
    })?)
}

/// The idle store: writes and lease keepalives over [`IDLE_WINDOW`].
#[derive(Debug)]
struct Idle {
    revisions: i64,
    keepalives: f64,
    window: Duration,
    before: Snapshot,
}

fn measure_idle(ns: &str, endpoint: &str, members: &[String]) -> Result<Idle> {
    eprintln!("bench-mesh: counting the idle store's writes and keepalives for {IDLE_WINDOW:?}");
    let before = snapshot(ns, endpoint)?;
    let kept_before = keepalives(ns, members)?;
    let t = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let kept_after = keepalives(ns, members)?;
    let window = t.elapsed();
    let after = snapshot(ns, endpoint)?;
    Ok(Idle {
        revisions: after.revision - before.revision,
        keepalives: kept_after - kept_before,
        window,
        before,
    })
}

/// Lease keepalives received, summed over the members: the counter in each member's
/// `/metrics` (the JSON gateway's keepalives reach etcd's gRPC service as messages on the
/// `LeaseKeepAlive` stream).
fn keepalives(ns: &str, members: &[String]) -> Result<f64> {
    let members = members.to_vec();
    joined(in_netns(ns, move || async move {
        let mut sum = 0.0;
        for member in &members {
            let text = metrics(member).await?;
            sum += text
                .lines()
                .filter(|l| {
                    l.starts_with("grpc_server_msg_received_total")
                        && l.contains("grpc_method=\"LeaseKeepAlive\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(sum)
    })?)
}

async fn metrics(member: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(member)
        .await
        .with_context(|| format!("connecting to {member}"))?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {member}\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

#[derive(Debug)]
struct Store {
    containers: usize,
    before: Snapshot,
    after: Snapshot,
    /// Per container: the address and the name requests.
    start: Vec<Duration>,
}

/// Starts `n` containers' worth of control-plane work over the hosts (what a container start
/// asks of the router: an address and a name), and reads the store before and after.
fn measure_store(hosts: &Hosts, ns: &str, endpoint: &str, n: usize) -> Result<Store> {
    let before = snapshot(ns, endpoint)?;
    let mut start = Vec::new();
    for k in 0..n {
        let weaver = hosts.weaver(k % hosts.hosts.len());
        let id = format!("benchct{k}");
        let t = Instant::now();
        let (status, cidr) = http::request(weaver.addr(), "POST", &format!("/ip/{id}"), "")
            .context("allocating an address")?;
        ensure!(status == 200, "POST /ip/{id}: {status} {cidr}");
        let addr = cidr.split('/').next().unwrap_or_default();
        let (status, body) = http::request(
            weaver.addr(),
            "PUT",
            &format!("/name/{id}/{addr}"),
            &format!("fqdn=ct{k}.weave.local."),
        )
        .context("registering a name")?;
        ensure!(status == 204, "PUT /name/{id}/{addr}: {status} {body}");
        start.push(t.elapsed());
    }
    // The routers write their names to the store after answering: wait for the last.
    let want = before.count("dns") + n;
    let since = Instant::now();
    let after = loop {
        let now = snapshot(ns, endpoint)?;
        if now.count("dns") >= want {
            break now;
        }
        ensure!(
            since.elapsed() < PATIENCE,
            "the store holds {} names, not {want}, after {PATIENCE:?}",
            now.count("dns")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Store {
        containers: n,
        before,
        after,
        start,
    })
}

// ---------------------------------------------------------------------------------------------
// Reports

fn report_joins(out: &mut String, joins: &[Join], first: usize, last: usize) -> Result<()> {
    if joins.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "#### A new peer reachable from all ({} joins, hosts {} to {}; from its router's spawn)\n",
        joins.len(),
        first + 1,
        last
    )?;
    writeln!(out, "| measure | p50 | p99 | max |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    let row = |out: &mut String, what: &str, d: &[Duration]| -> Result<()> {
        writeln!(
            out,
            "| {what} | {} | {} | {} |",
            ms(percentile(d, 50)),
            ms(percentile(d, 99)),
            ms(d.iter().max().copied().unwrap_or_default())
        )?;
        Ok(())
    };
    let ready: Vec<_> = joins.iter().map(|j| j.ready).collect();
    let every: Vec<_> = joins.iter().map(|j| j.flood_everywhere).collect();
    let each: Vec<_> = joins.iter().flat_map(|j| j.flood.clone()).collect();
    let own: Vec<_> = joins.iter().map(|j| j.own_flood).collect();
    row(out, "router answers `GET /status`", &ready)?;
    row(
        out,
        "its endpoint in one other host's flood list (per host and join)",
        &each,
    )?;
    row(
        out,
        "its endpoint in **every** other host's flood list",
        &every,
    )?;
    row(out, "every other host in its own flood list", &own)?;
    let pings: Vec<_> = joins.iter().filter_map(|j| j.ping_everywhere).collect();
    let unanswered: usize = joins.iter().map(|j| j.unanswered.len()).sum();
    if unanswered > 0 {
        writeln!(
            out,
            "| pings not answered within {PATIENCE:?} (host and join) | {unanswered} of {} | | |",
            unanswered + joins.iter().map(|j| j.ping.len()).sum::<usize>()
        )?;
    }
    if !pings.is_empty() {
        let made: Vec<_> = joins.iter().filter_map(|j| j.made).collect();
        row(
            out,
            "a container on it made (address, namespace, `ethwe`, name)",
            &made,
        )?;
        let each: Vec<_> = joins.iter().flat_map(|j| j.ping.clone()).collect();
        row(
            out,
            "a container on it answers a ping from one sampled host's container (per host and join; includes making the container)",
            &each,
        )?;
        row(
            out,
            "a container on it answers **every** sampled host's container",
            &pings,
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn report_names(out: &mut String, names: &[NameTimes], hosts: usize) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "#### A new name resolving everywhere ({} names, each on one host, watched on the {} others; from the `PUT`)\n",
        names.len(),
        hosts - 1
    )?;
    writeln!(out, "| measure | p50 | p99 | max |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    let put: Vec<_> = names.iter().map(|n| n.put).collect();
    let each: Vec<_> = names.iter().flat_map(|n| n.hosts.clone()).collect();
    let every: Vec<_> = names.iter().map(|n| n.everywhere).collect();
    for (what, d) in [
        ("`PUT /name` answered", &put),
        ("listed by one other host (per host and name)", &each),
        ("listed by **every** other host", &every),
    ] {
        writeln!(
            out,
            "| {what} | {} | {} | {} |",
            ms(percentile(d, 50)),
            ms(percentile(d, 99)),
            ms(d.iter().max().copied().unwrap_or_default())
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn report_idle(out: &mut String, idle: &Idle, hosts: usize) -> Result<()> {
    let secs = idle.window.as_secs_f64();
    writeln!(out, "#### The idle store ({hosts} routers, {secs:.0} s)\n")?;
    writeln!(out, "| measure | value |")?;
    writeln!(out, "|---|---:|")?;
    writeln!(
        out,
        "| writes (revisions) per second | {:.2} |",
        idle.revisions as f64 / secs
    )?;
    writeln!(
        out,
        "| lease keepalives per second, all members | {:.1} ({:.3} per host) |",
        idle.keepalives / secs,
        idle.keepalives / secs / hosts as f64
    )?;
    let (keys, bytes) = idle.before.total();
    writeln!(
        out,
        "| weave's keys, and their bytes (key + value) | {keys}, {bytes} B |"
    )?;
    writeln!(
        out,
        "| etcd database size (`dbSize`) | {} KiB |",
        idle.before.db_size / 1024
    )?;
    writeln!(out)?;
    Ok(())
}

fn report_store(out: &mut String, store: &Store) -> Result<()> {
    let n = store.containers;
    if n == 0 {
        return Ok(());
    }
    let (b, a) = (&store.before, &store.after);
    writeln!(
        out,
        "#### Per container started ({n} containers, one address and one name each, round-robin over the hosts)\n"
    )?;
    writeln!(out, "| measure | before | after | per container |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    writeln!(
        out,
        "| store revision (one per write) | {} | {} | {:.2} |",
        b.revision,
        a.revision,
        (a.revision - b.revision) as f64 / n as f64
    )?;
    writeln!(
        out,
        "| etcd database size (`dbSize`, KiB) | {} | {} | {:.0} B |",
        b.db_size / 1024,
        a.db_size / 1024,
        (a.db_size - b.db_size) as f64 / n as f64
    )?;
    let kinds: std::collections::BTreeSet<&String> = b.keys.keys().chain(a.keys.keys()).collect();
    for kind in kinds {
        let (kb, bb) = b.keys.get(kind).copied().unwrap_or_default();
        let (ka, ba) = a.keys.get(kind).copied().unwrap_or_default();
        writeln!(
            out,
            "| `{kind}` keys (bytes) | {kb} ({bb} B) | {ka} ({ba} B) | {:.2} ({:.0} B) |",
            (ka as f64 - kb as f64) / n as f64,
            (ba as f64 - bb as f64) / n as f64
        )?;
    }
    let (tb, tbb) = b.total();
    let (ta, tab) = a.total();
    writeln!(
        out,
        "| all of weave's keys (bytes) | {tb} ({tbb} B) | {ta} ({tab} B) | {:.2} ({:.0} B) |",
        (ta as f64 - tb as f64) / n as f64,
        (tab as f64 - tbb as f64) / n as f64
    )?;
    writeln!(
        out,
        "\nThe two requests of a start (`POST /ip/<id>`, `PUT /name/<id>/<ip>`): p50 {}, p99 {}.\n",
        ms(percentile(&store.start, 50)),
        ms(percentile(&store.start, 99))
    )?;
    Ok(())
}

/// The `p`th percentile (nearest rank) of `d`; zero when empty.
fn percentile(d: &[Duration], p: usize) -> Duration {
    let mut sorted = d.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn load_average() -> String {
    let mut text = String::new();
    match File::open("/proc/loadavg").and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "unknown".to_owned(),
    }
}
