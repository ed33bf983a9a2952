//! Real etcd members for the tests: 1 or 3 on 127.0.0.1, on ports free at start, each with its
//! own data directory, killed, paused and restarted at will, and all gone when the [`Cluster`]
//! is dropped, a failed test included.
//!
//! The binary is etcd 3.5 from `scripts/etcd.sh install` (or `WEAVE_ETCD_BIN`). Without it the
//! tests fail and say how to get it: a skipped store test would pass for the wrong reason.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd::{Client, Timeouts};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Bounds small enough that a failover shows within a test's seconds.
pub const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_millis(500),
    request: Duration::from_secs(2),
    watch_idle: Duration::from_secs(2),
};

/// How long a fresh cluster may take to elect a leader.
const START_WITHIN: Duration = Duration::from_secs(30);

/// The etcd binary: `WEAVE_ETCD_BIN`, else where `scripts/etcd.sh install` puts it.
pub fn etcd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEAVE_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    let dir = std::env::var_os("WEAVE_ETCD_DIR").map_or_else(
        || PathBuf::from("/var/cache/weave-test/etcd"),
        PathBuf::from,
    );
    let bin = dir.join("root/usr/bin/etcd");
    assert!(
        bin.is_file(),
        "etcd 3.5 is not at {}: run `scripts/etcd.sh install` (or set WEAVE_ETCD_BIN)",
        bin.display()
    );
    bin
}

/// An address nothing listens on: a port the kernel just handed out and that was let go.
pub fn dead_endpoint() -> String {
    format!("127.0.0.1:{}", free_ports(1)[0])
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that the kernel hands out n different ports.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Added to a running cluster (`--initial-cluster-state existing`), not one of the first.
    joined: bool,
    child: Option<Child>,
}

/// Running etcd members, one cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    token: String,
    members: Vec<Member>,
}

impl Cluster {
    /// `n` members, up and with a leader. Ports taken by someone else between the pick and
    /// etcd's bind make a member exit: then it starts over on other ports.
    pub async fn start(n: usize) -> Self {
        for _ in 0..3 {
            let mut cluster = Self::spawn(n);
            if cluster.wait_healthy().await {
                return cluster;
            }
            eprintln!("etcd cluster did not come up; logs:\n{}", cluster.logs());
        }
        panic!("no etcd cluster of {n} came up in 3 tries");
    }

    fn spawn(n: usize) -> Self {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let run = format!(
            "t{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("{run}-m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                joined: false,
                child: None,
            })
            .collect();
        let mut cluster = Self {
            bin: etcd_bin(),
            dir: tempfile::Builder::new()
                .prefix("weave-etcd-test-")
                .tempdir()
                .expect("temp dir"),
            token: run,
            members,
        };
        for i in 0..n {
            cluster.spawn_member(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn_member(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .expect("log file");
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        // Drop kills the members, but a test killed outright (nextest's time limit) drops
        // nothing: setpriv has the kernel kill etcd when the thread that started it ends (the
        // test's own thread under #[tokio::test]), so no member outlives its test.
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.bin)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args([
                "--initial-cluster-state",
                if m.joined { "existing" } else { "new" },
            ])
            // Elections in a fraction of a second on loopback, so that a killed leader is
            // replaced within a test's patience.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // Throw-away data: fsync only slows the tests.
            .arg("--unsafe-no-fsync")
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("start setpriv -- {}: {err}", self.bin.display()));
        self.members[i].child = Some(child);
    }

    /// Whether every running member came up and follows a leader within [`START_WITHIN`].
    async fn wait_healthy(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        for i in running {
            let endpoint = self.endpoint(i);
            let client = Client::with_timeouts([&endpoint], TIMEOUTS).expect("endpoint");
            loop {
                if let Some(Some(status)) = self.members[i]
                    .child
                    .as_mut()
                    .map(|c| c.try_wait().ok().flatten())
                {
                    eprintln!("etcd member {} exited: {status}", self.members[i].name);
                    return false;
                }
                if matches!(client.member_status(&endpoint).await, Ok(s) if s.has_leader()) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        true
    }

    /// Member `i`'s client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client endpoint, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Which member serves `endpoint`.
    pub fn index_of(&self, endpoint: &str) -> usize {
        (0..self.members.len())
            .find(|&i| self.endpoint(i) == endpoint)
            .unwrap_or_else(|| panic!("{endpoint} is not a member of this cluster"))
    }

    /// A client of every member, with the tests' [`TIMEOUTS`].
    pub fn client(&self) -> Client {
        Client::with_timeouts(self.endpoints(), TIMEOUTS).expect("endpoints")
    }

    /// Kills member `i` outright (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` (SIGSTOP): its ports accept, nothing answers.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
    }

    /// Lets a paused member `i` go on.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, Signal::SIGCONT);
    }

    fn signal(&self, i: usize, signal: Signal) {
        let child = self.members[i].child.as_ref().expect("member running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, signal).expect("signal etcd");
    }

    /// Starts a killed member `i` again on its data; returns when it follows a leader.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn_member(i);
        assert!(
            self.wait_healthy().await,
            "member {i} did not come back:\n{}",
            self.logs()
        );
    }

    /// Adds a member through the cluster's own API (a learner when `learner`) and starts it;
    /// returns its id once it answers. It is the last member, at index `len - 1`.
    pub async fn grow(&mut self, learner: bool) -> u64 {
        let ports = free_ports(2);
        let name = format!("{}-m{}", self.token, self.members.len());
        let peer_url = format!("http://127.0.0.1:{}", ports[1]);
        let (added, _) = self
            .client()
            .add_member(std::slice::from_ref(&peer_url), learner)
            .await
            .unwrap_or_else(|err| panic!("adding a member at {peer_url}: {err}"));
        self.members.push(Member {
            name,
            client_port: ports[0],
            peer_port: ports[1],
            joined: true,
            child: None,
        });
        let i = self.members.len() - 1;
        self.spawn_member(i);
        let endpoint = self.endpoint(i);
        let client = Client::with_timeouts([&endpoint], TIMEOUTS).expect("endpoint");
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        while client.member_status(&endpoint).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the added member did not answer:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        added.id
    }

    /// The members' logs, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let path = self.dir.path().join(format!("{}.log", m.name));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {}\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // SIGKILL ends a stopped process too; the data dir goes with `dir` after this.
            self.kill(i);
        }
    }
}
