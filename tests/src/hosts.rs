//! Hosts of a multi-host weave network on one machine (MULTIHOST.md §4.10): each host a network
//! namespace on a shared underlay bridge, with an etcd member and a `weaver` of its own;
//! "containers" are network namespaces with an `ethwe` on their host's bridge. Everything is
//! named after the test process and a counter, and deleted on drop, a failed test included.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::image::busybox_binary;
use crate::wait::poll;
use crate::weaver::Weaver;

/// The underlay's network: TEST-NET-2, which this machine's own interfaces do not use.
const UNDERLAY: &str = "198.51.100";
/// How long a fresh etcd cluster may take to elect a leader.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

/// Runs `ip ARGS`, panicking with its error output when it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A host: its namespace, underlay address, store member and router.
#[derive(Debug)]
pub struct Host {
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The underlay link's name inside the namespace (down = the host is cut off).
    pub uplink: String,
    etcd: Option<Child>,
    pub weaver: Option<Weaver>,
}

/// A "container": a namespace with an `ethwe` on a host's bridge and an address from its router.
#[derive(Debug, Clone)]
pub struct Container {
    pub ns: String,
    pub id: String,
    pub addr: Ipv4Addr,
}

/// A set of hosts on one underlay.
#[derive(Debug)]
pub struct Hosts {
    tag: String,
    underlay: String,
    pub hosts: Vec<Host>,
    containers: Vec<Container>,
    members: usize,
    dir: TempDir,
    counter: u32,
    /// `--log-level` for the routers started from now on; the harness's default when `None`.
    log_level: Option<String>,
}

impl Hosts {
    /// `n` hosts on an underlay, the first `members` of them running an etcd member each (one
    /// cluster), up and with a leader. No routers yet: see [`Hosts::start_weaver`].
    pub fn new(n: usize, members: usize) -> Self {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "wm{:x}r{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let underlay = format!("{tag}u");
        let mut hosts = Self {
            underlay: underlay.clone(),
            tag,
            hosts: Vec::new(),
            containers: Vec::new(),
            members,
            dir: tempfile::Builder::new()
                .prefix("weave-hosts-")
                .tempdir()
                .expect("temp dir"),
            counter: 0,
            log_level: None,
        };
        ip(&["netns", "add", &underlay]);
        ip(&["-n", &underlay, "link", "add", "ul", "type", "bridge"]);
        ip(&["-n", &underlay, "link", "set", "ul", "up"]);
        for i in 0..n {
            hosts.add_host(i);
        }
        for i in 0..members {
            hosts.start_etcd(i, "new");
        }
        hosts.wait_for_store();
        hosts
    }

    /// One more host on the underlay, without a store member or router: its index. A host
    /// added later is how a benchmark times a peer joining (the underlay's /24 holds 254).
    pub fn push_host(&mut self) -> usize {
        let i = self.hosts.len();
        self.add_host(i);
        i
    }

    /// The routers started from now on log at `level` (`info`, `warn`): at scale, the default
    /// debug logging of every router is load of its own.
    pub fn set_log_level(&mut self, level: &str) {
        self.log_level = Some(level.to_owned());
    }

    fn add_host(&mut self, i: usize) {
        let ns = format!("{}h{i}", self.tag);
        let addr: Ipv4Addr = format!("{UNDERLAY}.{}", i + 1).parse().expect("an address");
        ip(&["netns", "add", &ns]);
        // Pushed before anything else can fail, so that drop deletes the namespace.
        self.hosts.push(Host {
            ns: ns.clone(),
            addr,
            uplink: "u0".to_owned(),
            etcd: None,
            weaver: None,
        });
        let far = format!("{}p{i}", self.tag);
        ip(&[
            "-n",
            &self.underlay,
            "link",
            "add",
            &far,
            "type",
            "veth",
            "peer",
            "name",
            "u0",
            "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &self.underlay,
            "link",
            "set",
            &far,
            "master",
            "ul",
            "up",
        ]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "u0"]);
        ip(&["-n", &ns, "link", "set", "u0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }

    /// The store's client endpoints, `a:2379,b:2379,...`.
    pub fn endpoints(&self) -> String {
        self.hosts[..self.members]
            .iter()
            .map(|h| format!("{}:2379", h.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn initial_cluster(&self) -> String {
        self.hosts[..self.members]
            .iter()
            .enumerate()
            .map(|(i, h)| format!("m{i}=http://{}:2380", h.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts host `i`'s etcd member (`state` is `new` for the first start, `existing` after).
    pub fn start_etcd(&mut self, i: usize, state: &str) {
        let cluster = self.initial_cluster();
        let host = &self.hosts[i];
        let a = host.addr;
        let log = std::fs::File::create(self.dir.path().join(format!("etcd{i}.log"))).expect("log");
        // The kernel kills the member when the test thread that started it ends, so that a test
        // killed outright leaves none behind.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.ns,
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
            ])
            .arg(etcd_bin())
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("etcd{i}")))
            .args(["--listen-client-urls", &format!("http://{a}:2379")])
            .args(["--advertise-client-urls", &format!("http://{a}:2379")])
            .args(["--listen-peer-urls", &format!("http://{a}:2380")])
            .args(["--initial-advertise-peer-urls", &format!("http://{a}:2380")])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-token", &self.tag])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.hosts[i].etcd = Some(child);
    }

    /// Kills host `i`'s etcd member (its data stays, for [`Hosts::start_etcd`] `existing`).
    pub fn kill_etcd(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].etcd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the store has a leader (asked from host 0's namespace).
    pub fn wait_for_store(&self) {
        let ns = self.hosts[0].ns.clone();
        let addr = self.hosts[0].addr;
        let healthy = poll(STORE_PATIENCE, || store_healthy(&ns, addr).then_some(()));
        assert!(
            healthy.is_some(),
            "the etcd cluster was not healthy within {STORE_PATIENCE:?}; member 0's log:\n{}",
            self.etcd_log(0)
        );
    }

    /// Starts host `i`'s router, joined to the store, with weaveDNS on its underlay address.
    pub fn start_weaver(&mut self, i: usize, extra: &[&str]) {
        let endpoints = self.endpoints();
        self.start_weaver_with_endpoints(i, &endpoints, extra);
    }

    /// [`Hosts::start_weaver`] with the store endpoints given.
    pub fn start_weaver_with_endpoints(&mut self, i: usize, endpoints: &str, extra: &[&str]) {
        let host = &self.hosts[i];
        let socket = self.dir.path().join(format!("weaver{i}.sock"));
        let mut builder = Weaver::builder()
            .netns(&host.ns)
            .listen(socket.to_str().expect("UTF-8 temp path"))
            .range("10.40.0.0/16")
            .dns_listen(&format!("{}:53", host.addr))
            .arg("--store-endpoints")
            .arg(endpoints)
            .arg("--nickname")
            .arg(&format!("host{i}"));
        if let Some(level) = &self.log_level {
            builder = builder.log_level(level);
        }
        for a in extra {
            builder = builder.arg(a);
        }
        self.hosts[i].weaver = Some(builder.start());
    }

    /// Host `i`'s router.
    pub fn weaver(&self, i: usize) -> &Weaver {
        self.hosts[i]
            .weaver
            .as_ref()
            .expect("the host's router runs")
    }

    /// Host `i`'s router, to stop or restart.
    pub fn weaver_mut(&mut self, i: usize) -> &mut Weaver {
        self.hosts[i]
            .weaver
            .as_mut()
            .expect("the host's router runs")
    }

    /// A container on host `i`: an address from its router (`POST /ip/<id>`), a namespace with
    /// `ethwe` on the router's bridge, and the name `name.weave.local` registered.
    pub fn container(&mut self, i: usize, name: &str) -> Container {
        self.counter += 1;
        let ns = format!("{}c{}", self.tag, self.counter);
        let id = format!("{}{}", name, self.counter);
        let (status, cidr) = self.weaver(i).request("POST", &format!("/ip/{id}"), "");
        assert_eq!(status, 200, "allocating on host {i}: {cidr}");
        let addr: Ipv4Addr = cidr
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("an address");
        let host_ns = self.hosts[i].ns.clone();
        let bridge = self.weaver(i).bridge().to_owned();
        ip(&["netns", "add", &ns]);
        let container = Container {
            ns: ns.clone(),
            id: id.clone(),
            addr,
        };
        self.containers.push(container.clone());
        let veth = format!("v{}", self.counter);
        ip(&[
            "-n", &host_ns, "link", "add", &veth, "mtu", "1376", "type", "veth", "peer", "name",
            "ethwe", "mtu", "1376", "netns", &ns,
        ]);
        ip(&[
            "-n", &host_ns, "link", "set", &veth, "master", &bridge, "up",
        ]);
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "ethwe"]);
        ip(&["-n", &ns, "link", "set", "ethwe", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let (status, body) = self.weaver(i).request(
            "PUT",
            &format!("/name/{id}/{addr}"),
            &format!("fqdn={name}.weave.local."),
        );
        assert_eq!(status, 204, "registering {name} on host {i}: {body}");
        container
    }

    /// Whether `from` gets an answer to one ping of `to` within 2 s.
    pub fn ping(&self, from: &Container, to: Ipv4Addr) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &from.ns])
            .arg(busybox_binary())
            .args(["ping", "-c", "1", "-W", "2", &to.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// What weaveDNS on host `i` answers for `name` (A records), asked on that host.
    pub fn lookup(&self, i: usize, name: &str) -> Vec<Ipv4Addr> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .arg(busybox_binary())
            .args(["nslookup", name, &self.hosts[i].addr.to_string()])
            .output()
            .expect("nslookup runs");
        let text = String::from_utf8_lossy(&out.stdout);
        // busybox prints the server first ("Server: a", "Address: a:53"), then the answers.
        text.split("Name:")
            .skip(1)
            .flat_map(|answer| answer.lines())
            .filter_map(|line| line.trim().strip_prefix("Address:"))
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    }

    /// Takes host `i`'s underlay link down (`false`) or up: a partition and its healing.
    pub fn set_link(&self, i: usize, up: bool) {
        let host = &self.hosts[i];
        ip(&[
            "-n",
            &host.ns,
            "link",
            "set",
            &host.uplink,
            if up { "up" } else { "down" },
        ]);
        if up {
            // The address's route went with the link.
            let _ = Command::new("ip")
                .args([
                    "-n",
                    &host.ns,
                    "addr",
                    "add",
                    &format!("{}/24", host.addr),
                    "dev",
                    &host.uplink,
                ])
                .output();
        }
    }

    /// Host `i`'s etcd log, for a failure message.
    pub fn etcd_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("etcd{i}.log"))).unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Routers first (their reset runs in their namespace), then the stores, then the
        // namespaces, which take every link in them along.
        for host in &mut self.hosts {
            host.weaver = None;
        }
        for i in 0..self.hosts.len() {
            self.kill_etcd(i);
        }
        for c in &self.containers {
            let _ = Command::new("ip").args(["netns", "del", &c.ns]).status();
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.underlay])
            .status();
    }
}

/// Whether the etcd member at `addr:2379` says it is healthy (it has a leader), asked from the
/// network namespace `ns`.
///
/// Asked over a socket opened by a thread inside the namespace, which keeps the connection open
/// until etcd answers: a client that closes its side after the request (busybox `nc` at the end
/// of its input) cancels etcd's linearizable read, and a member still settling after its start
/// then answers `"health":"false"` to every such try.
pub fn store_healthy(ns: &str, addr: Ipv4Addr) -> bool {
    let Ok(netns) = std::fs::File::open(format!("/run/netns/{ns}")) else {
        return false;
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    return false;
                }
                let target = std::net::SocketAddr::from((addr, 2379));
                let Ok(mut stream) =
                    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
                else {
                    return false;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if stream
                    .write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
                    .is_err()
                {
                    return false;
                }
                let mut answer = String::new();
                let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
                answer.contains("\"health\":\"true\"")
            })
            .join()
            .unwrap_or(false)
    })
}

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
