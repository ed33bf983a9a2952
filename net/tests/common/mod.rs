//! Test fixtures that own what they create: a uniquely named bridge, "containers" that are
//! `unshare -n sleep` children, and an iptables FORWARD rule. Each is removed in `Drop`, so a
//! failing or panicking test leaves nothing behind. Checks go through `ip`/`nsenter`, a second
//! opinion independent of the netlink code under test.

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A link name unique to this test process: `<prefix><pid><n>`, at most 15 bytes.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id());
    assert!(name.len() <= 15, "{name} is too long for a link name");
    name
}

/// Runs a command; returns whether it succeeded and its stdout.
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `ip ARGS` on the host, which must succeed.
pub fn ip(args: &[&str]) -> String {
    let (ok, out) = run("ip", args);
    assert!(ok, "ip {args:?} failed");
    out
}

/// Whether host link `name` exists.
pub fn host_link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).0
}

/// Deletes the host links the tests made, even when the test failed halfway.
#[derive(Debug)]
pub struct LinkGuard(pub Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = run("ip", &["link", "del", "dev", name]);
        }
    }
}

/// A bridge name reserved for one test; on drop, the bridge and its `vethwepl*` ports go.
#[derive(Debug)]
pub struct BridgeGuard {
    pub name: String,
}

impl BridgeGuard {
    pub fn new() -> Self {
        BridgeGuard {
            name: unique_name("wvn"),
        }
    }
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let (_, ports) = run("ip", &["-o", "link", "show", "master", &self.name]);
        for line in ports.lines() {
            // "12: vethwepl123@if11: <...>"
            if let Some(name) = line.split(": ").nth(1) {
                let name = name.split('@').next().unwrap_or(name);
                if name.starts_with("vethwepl") {
                    let _ = run("ip", &["link", "del", "dev", name]);
                }
            }
        }
        let _ = run("ip", &["link", "del", "dev", &self.name]);
    }
}

/// A process in a network namespace of its own, killed on drop (which frees the namespace and
/// with it `ethwe` and the host end of its veth).
#[derive(Debug)]
pub struct Container {
    child: Child,
    pub pid: i32,
}

impl Container {
    /// Its process, pinned.
    pub fn process(&self) -> weavenet::Process {
        weavenet::Process::pin(self.pid).expect("the container's process runs")
    }

    pub fn start() -> Self {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning unshare -n sleep");
        let pid = i32::try_from(child.id()).unwrap();
        let container = Container { child, pid };
        container.wait_for_own_netns();
        container
    }

    /// `unshare` needs a moment before the child has left our namespace.
    fn wait_for_own_netns(&self) {
        let host = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/net", self.pid))
                && ns != host
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child {} never unshared",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `program args` inside the container's network namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> (bool, String) {
        let pid = self.pid.to_string();
        let mut full = vec!["-t", &pid, "-n", program];
        full.extend_from_slice(args);
        run("nsenter", &full)
    }

    /// `ip ARGS` inside the container, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let (ok, out) = self.exec("ip", args);
        assert!(ok, "ip {args:?} in {} failed", self.pid);
        out
    }

    pub fn has_ethwe(&self) -> bool {
        self.exec("ip", &["link", "show", "dev", "ethwe"]).0
    }

    /// The MAC address of `ethwe`.
    pub fn ethwe_mac(&self) -> String {
        let out = self.ip(&["-o", "link", "show", "dev", "ethwe"]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether");
        words.next().expect("ethwe has a MAC").to_owned()
    }

    /// Kills the process and reaps it; its PID is then free.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `iptables -I FORWARD -i BR -o BR -j ACCEPT` for the life of the guard: Docker's FORWARD policy
/// is DROP and br_netfilter passes bridged frames through it.
#[derive(Debug)]
pub struct ForwardRule {
    bridge: String,
}

impl ForwardRule {
    pub fn allow(bridge: &str) -> Self {
        let (ok, _) = run("iptables", &Self::args("-I", bridge));
        assert!(ok, "inserting the FORWARD rule for {bridge}");
        ForwardRule {
            bridge: bridge.to_owned(),
        }
    }

    fn args<'a>(op: &'a str, bridge: &'a str) -> Vec<&'a str> {
        vec![
            "-w", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
        ]
    }
}

impl Drop for ForwardRule {
    fn drop(&mut self) {
        let _ = run("iptables", &Self::args("-D", &self.bridge));
    }
}

/// Runs `f` on a thread that has entered the network namespace of `pid`.
pub fn in_netns<T: Send + 'static>(pid: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Sends `payload` over UDP from inside `from` to `to_ip` inside `to`, which echoes it back: the
/// host has no `ping`, and this also shows that large datagrams cross unfragmented.
pub fn udp_echo(
    from: i32,
    to: i32,
    to_ip: std::net::Ipv4Addr,
    payload: Vec<u8>,
) -> Result<(), String> {
    use std::net::{SocketAddr, UdpSocket};
    let server_addr = SocketAddr::from((to_ip, 7777));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        in_netns(to, move || -> Result<(), String> {
            let sock = UdpSocket::bind(server_addr).map_err(|e| format!("bind: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = vec![0u8; 65536];
            let (n, peer) = sock
                .recv_from(&mut buf)
                .map_err(|e| format!("server recv: {e}"))?;
            sock.send_to(&buf[..n], peer)
                .map_err(|e| format!("server send: {e}"))?;
            Ok(())
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(3))
        .map_err(|_| "server did not start".to_owned())?;
    let client = in_netns(from, move || -> Result<(), String> {
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("client bind: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(&payload, server_addr)
            .map_err(|e| format!("client send: {e}"))?;
        let mut buf = vec![0u8; 65536];
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("client recv: {e}"))?;
        if buf[..n] == payload[..] {
            Ok(())
        } else {
            Err("echo differs".to_owned())
        }
    });
    let served = server.join().unwrap();
    client.and(served)
}

pub fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

/// A network namespace made for one test (`ip netns add`), deleted on drop, which destroys every
/// link in it and takes the host ends of veths along. Stands in for a host or a container of a
/// multi-host test: the namespaces are the hosts' private networks, so each test can use the
/// same link names and addresses as the others.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace `vx-<pid>-<n>-<role>`, with IPv6 off: its router solicitations and
    /// multicast reports would otherwise fly between the hosts at moments of their own and teach
    /// MACs back while a test checks what was flushed.
    pub fn new(role: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("vx-{}-{n}-{role}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.run(|| {
            for knob in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
                std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        });
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// `bridge -n NAME ARGS`, which must succeed.
    pub fn bridge(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        let (ok, out) = run("bridge", &full);
        assert!(ok, "bridge {full:?} failed");
        out
    }

    /// Runs `work` on a thread that has entered this namespace (a socket it opens stays in the
    /// namespace, whichever thread uses it later).
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    work()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs the future `work` makes to completion inside this namespace, on a runtime of its own
    /// (the library's netlink sockets open in the namespace of the thread that calls it).
    pub fn block_on<F: std::future::Future>(&self, work: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
