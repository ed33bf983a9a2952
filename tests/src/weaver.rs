//! The `weaver` router under test, on a bridge, port and data directory of its own, reset on drop;
//! [`WeaveHost`], a router with a proxy attaching containers to it; and the host-side checks of
//! what a router leaves behind (its bridge, its iptables rules, `weaver reset`). The one router
//! harness: the router crate's own tests and the end-to-end suite both use it.
//!
//! Many tests run at once against one daemon, so each router gets a bridge named after the test
//! process (`wvt<pid>b<n>`) and a free TCP port (or a socket path the test gives). Their address
//! ranges may overlap: the bridges are separate layer-2 segments and carry no address of their
//! own.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use crate::cli::Docker;
use crate::daemon::target_daemon;
use crate::http;
use crate::netns::host_link;
use crate::proxy::{Proxy, built};
use crate::wait::{eventually, poll};

/// How long a router may take to answer `GET /status` with 200 after it starts.
const READY_PATIENCE: Duration = Duration::from_secs(30);
/// How long a router gets to exit after SIGTERM before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// The `weaver` binary cargo built beside this test (`WEAVER_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEAVER_BIN") {
        return PathBuf::from(path);
    }
    built("weaver")
}

/// A bridge name unique to this process and call, within the kernel's 15 bytes: "wvt", the pid
/// in hex (at most 6), "b" and a small counter.
pub fn unique_bridge() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let bridge = format!(
        "wvt{:x}b{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    assert!(bridge.len() <= 15, "{bridge} is too long for a link name");
    bridge
}

/// `weaver reset` for `bridge` and the data directory `data`: its output.
pub fn reset(bridge: &str, data: &Path) -> Output {
    Command::new(binary())
        .args(["reset", "--weave-bridge", bridge, "--data-dir"])
        .arg(data)
        .args(["--docker-bridge", &docker_bridge()])
        .stdin(Stdio::null())
        .output()
        .expect("weaver reset runs")
}

/// The bridge of the test daemon's default network (`docker0`, or what its `--bridge` names),
/// which the router names in its rules, so `weaver reset` must be told it.
pub fn docker_bridge() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let out = Docker::daemon().run(&[
            "network",
            "inspect",
            "bridge",
            "--format",
            r#"{{index .Options "com.docker.network.bridge.name"}}"#,
        ]);
        match out.stdout.trim() {
            name if out.code == 0 && !name.is_empty() && name != "<no value>" => name.to_owned(),
            _ => "docker0".to_owned(),
        }
    })
    .clone()
}

/// `iptables -S` of the filter table's `DOCKER-USER` and `FORWARD` chains, where the router puts
/// its rules.
pub fn forward_rules() -> String {
    let mut all = String::new();
    for chain in ["DOCKER-USER", "FORWARD"] {
        let out = Command::new("iptables")
            .args(["-w", "-S", chain])
            .output()
            .expect("iptables runs");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// How a [`Weaver`] is started; [`Weaver::builder`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WeaverBuilder {
    listen: Option<String>,
    docker_api: Option<String>,
    range: String,
    default_subnet: Option<String>,
    mtu: Option<u32>,
    dns: DnsMode,
    log_level: String,
    /// Docker's network plugin under this name; `None` for `--no-plugin`, since many routers
    /// run at once and a plugin name is one per daemon.
    plugin: Option<String>,
    extra: Vec<String>,
    netns: Option<String>,
}

/// Where a test router's weaveDNS listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DnsMode {
    /// `--no-dns`: most tests run many routers at once, and only one can have `docker0:53`.
    Off,
    /// On port 53 of an address of its own, put on its bridge before it starts: containers
    /// reach it through their default route to the host, as they reach `docker0`'s address.
    OwnAddress,
    /// Weave Net's default, Docker's bridge address; tests using it must run one at a time.
    DockerBridge,
    /// `--dns-listen-address` as given.
    At(String),
}

impl WeaverBuilder {
    /// Runs the router (and its reset) inside the network namespace `name`, as a host of a
    /// multi-host test. Its API must then be a socket path ([`WeaverBuilder::listen`]): a TCP
    /// port in the namespace is out of the test's reach.
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// `--ipalloc-range` (default `10.32.0.0/12`, Weave Net's own).
    pub fn range(mut self, cidr: &str) -> Self {
        cidr.clone_into(&mut self.range);
        self
    }

    /// `--ipalloc-default-subnet`.
    pub fn default_subnet(mut self, cidr: &str) -> Self {
        self.default_subnet = Some(cidr.to_owned());
        self
    }

    /// `--mtu` of the bridge.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// weaveDNS on an address of this router's own (see [`Weaver::dns_addr`]).
    pub fn dns(mut self) -> Self {
        self.dns = DnsMode::OwnAddress;
        self
    }

    /// weaveDNS on `addr` (`--dns-listen-address`), e.g. port 0 of some address for a test
    /// that asks the router where it listens.
    pub fn dns_listen(mut self, addr: &str) -> Self {
        self.dns = DnsMode::At(addr.to_owned());
        self
    }

    /// `--http-addr`: a unix socket path or `host:port` (default: a free port on 127.0.0.1).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.to_owned());
        self
    }

    /// `--docker-api` (default: the daemon under test).
    pub fn docker_api(mut self, url: &str) -> Self {
        self.docker_api = Some(url.to_owned());
        self
    }

    /// weaveDNS where `weave launch` puts it: port 53 of Docker's bridge address. Only one such
    /// router can run at a time.
    pub fn dns_on_docker_bridge(mut self) -> Self {
        self.dns = DnsMode::DockerBridge;
        self
    }

    /// `--log-level` (tests log at debug; a benchmark does not want a line per query).
    pub fn log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.log_level);
        self
    }

    /// Serves Docker's network plugin as `name` (socket `/run/docker/plugins/<name>.sock`); by
    /// default test routers run with `--no-plugin`. Give a name unique to the test run.
    pub fn plugin(mut self, name: &str) -> Self {
        self.plugin = Some(name.to_owned());
        self
    }

    /// Any other flag.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_owned());
        self
    }

    /// Starts the router and waits until `GET /status` answers 200.
    pub fn start(self) -> Weaver {
        let dir = tempfile::Builder::new()
            .prefix("weaver-test")
            .tempdir()
            .expect("a temporary directory");
        let bridge = unique_bridge();
        let addr = self.listen.unwrap_or_else(free_tcp_addr);
        let data = dir.path().join("data");
        let mut args = vec![
            "--http-addr".to_owned(),
            addr.clone(),
            "--docker-api".to_owned(),
            self.docker_api.unwrap_or_else(target_daemon),
            "--weave-bridge".to_owned(),
            bridge.clone(),
            "--ipalloc-range".to_owned(),
            self.range,
            "--data-dir".to_owned(),
            data.to_str().expect("temp paths are UTF-8").to_owned(),
            "--log-level".to_owned(),
            self.log_level,
        ];
        if let Some(subnet) = self.default_subnet {
            args.extend(["--ipalloc-default-subnet".to_owned(), subnet]);
        }
        if let Some(mtu) = self.mtu {
            args.extend(["--mtu".to_owned(), mtu.to_string()]);
        }
        match self.plugin {
            Some(name) => args.extend(["--plugin-name".to_owned(), name]),
            None => args.push("--no-plugin".to_owned()),
        }
        let dns_addr = match self.dns {
            DnsMode::Off => {
                args.push("--no-dns".to_owned());
                None
            }
            DnsMode::OwnAddress => {
                let ip = own_dns_address(&bridge);
                args.extend(["--dns-listen-address".to_owned(), format!("{ip}:53")]);
                Some(ip)
            }
            DnsMode::DockerBridge => None,
            DnsMode::At(listen) => {
                args.extend(["--dns-listen-address".to_owned(), listen]);
                None
            }
        };
        args.extend(self.extra);
        let mut weaver = Weaver {
            netns: self.netns,
            binary: binary(),
            child: None,
            dir,
            data,
            bridge,
            addr,
            args,
            dns_addr,
        };
        // Constructed before it runs, so a router that fails to start is still reset on drop.
        weaver.spawn();
        weaver
    }
}

/// A running `weaver` with its own bridge, TCP port and data directory.
///
/// Dropping it stops the process and runs `weaver reset`, which removes the bridge, the iptables
/// rules and the state, even when the test panicked.
#[derive(Debug)]
pub struct Weaver {
    netns: Option<String>,
    binary: PathBuf,
    child: Option<Child>,
    dir: TempDir,
    data: PathBuf,
    bridge: String,
    addr: String,
    args: Vec<String>,
    dns_addr: Option<String>,
}

impl Weaver {
    /// A router with the defaults: range `10.32.0.0/12`, the bridge's default MTU.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Defaults to adjust before [`WeaverBuilder::start`].
    pub fn builder() -> WeaverBuilder {
        WeaverBuilder {
            listen: None,
            docker_api: None,
            range: "10.32.0.0/12".to_owned(),
            default_subnet: None,
            mtu: None,
            dns: DnsMode::Off,
            log_level: "router=debug,weaver=debug,info".to_owned(),
            plugin: None,
            extra: Vec::new(),
            netns: None,
        }
    }

    /// The HTTP API's `host:port` (or socket path), for `--router-addr` / `WEAVE_HTTP_ADDR`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The bridge this router owns.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The data directory (`--data-dir`), kept across [`Weaver::restart`].
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The process id of the running router.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weaver.log")
    }

    /// Everything the router has logged so far, over all its runs.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the log file opens");
        let child = self
            .command()
            .args(&self.args)
            .env_remove("RUST_LOG")
            .env_remove("WEAVE_HTTP_ADDR")
            .env_remove("WEAVE_BRIDGE")
            .env_remove("WEAVE_MTU")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.binary.display()));
        self.child = Some(child);
        eventually(
            "weaver to answer GET /status with 200",
            READY_PATIENCE,
            || {
                let child = self.child.as_mut().expect("just spawned");
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("weaver exited with {status}:\n{}", self.log());
                }
                let (status, _) = http::request(&self.addr, "GET", "/status", "").ok()?;
                (status == 200).then_some(())
            },
        );
    }

    /// The router's binary, entered into its network namespace when it has one (`ip netns
    /// exec` execs it: the child's pid is the router's).
    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.binary);
                cmd
            }
            None => Command::new(&self.binary),
        }
    }

    /// Stops the router (SIGTERM, then SIGKILL after a grace period), keeping its bridge and
    /// data directory for [`Weaver::restart`]. Whether it exited 0 after the SIGTERM (true when
    /// it was not running).
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if let Some(status) = poll(STOP_PATIENCE, || child.try_wait().ok().flatten()) {
            return status.success();
        }
        eprintln!("weaver did not exit {STOP_PATIENCE:?} after SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Stops the router if it runs, then starts it again with the same flags, bridge, port and
    /// data directory, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// One request to the router's API: status and body. `form` is sent url-encoded when
    /// not empty, as Weave Net's clients do.
    pub fn request(&self, method: &str, path: &str, form: &str) -> (u16, String) {
        http::request(&self.addr, method, path, form)
            .unwrap_or_else(|e| panic!("{method} {path} to weaver at {}: {e}", self.addr))
    }

    /// `GET /ip/{id}`: the addresses `id` holds in the default subnet, space-separated.
    pub fn lookup(&self, id: &str) -> String {
        let (status, body) = self.request("GET", &format!("/ip/{id}"), "");
        assert_eq!(status, 200, "GET /ip/{id}: {body}");
        body
    }

    /// `GET /name` as JSON: each (hostname, address, container id) weaveDNS holds, sorted.
    pub fn names(&self) -> Vec<(String, String, String)> {
        let http::Reply { status, body, .. } = http::Request::get("/name")
            .header("Accept", "application/json")
            .send(&self.addr)
            .unwrap_or_else(|e| panic!("GET /name to weaver at {}: {e}", self.addr));
        assert_eq!(status, 200, "GET /name: {body}");
        let entries: Vec<Value> = serde_json::from_str(&body).expect("GET /name is JSON");
        let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let mut names: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    field(e, "Hostname"),
                    field(e, "Addr"),
                    field(e, "ContainerID"),
                )
            })
            .collect();
        names.sort();
        names
    }

    /// `GET /ip`: every container id with the addresses it owns (empty when `owned` is null).
    pub fn owned(&self) -> BTreeMap<String, Vec<String>> {
        let (status, body) = self.request("GET", "/ip", "");
        assert_eq!(status, 200, "GET /ip: {body}");
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /ip {body:?}: {e}"));
        let owned = &json["owned"];
        if owned.is_null() {
            return BTreeMap::new();
        }
        owned
            .as_array()
            .unwrap_or_else(|| panic!("GET /ip: owned is neither null nor a list: {body}"))
            .iter()
            .map(|entry| {
                let id = entry["containerid"].as_str().expect("a containerid");
                let addrs = entry["addrs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (id.to_owned(), addrs)
            })
            .collect()
    }

    /// The addresses `GET /ip` lists for one container (by full id), or none.
    pub fn owned_by(&self, id: &str) -> Vec<String> {
        self.owned().remove(id).unwrap_or_default()
    }

    /// The names of the links enslaved to the bridge (container veths and anything else).
    pub fn ports(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-j", "link", "show", "master", &self.bridge])
            .output()
            .expect("ip runs");
        assert!(
            out.status.success(),
            "ip link show master {}: {}",
            self.bridge,
            String::from_utf8_lossy(&out.stderr)
        );
        let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        links
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The container veths (`vethwepl*`) on the bridge.
    pub fn container_ports(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .filter(|p| p.starts_with("vethwepl"))
            .collect()
    }

    /// The bridge's MTU.
    pub fn bridge_mtu(&self) -> u32 {
        host_link(&self.bridge)
            .and_then(|l| l["mtu"].as_u64())
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or_else(|| panic!("bridge {} not found", self.bridge))
    }

    /// Whether the bridge exists on the host.
    pub fn bridge_exists(&self) -> bool {
        host_link(&self.bridge).is_some()
    }
}

impl Drop for Weaver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- weaver log ---\n{}", self.log());
        }
        self.stop();
        if self.netns.is_some() {
            // Whoever made the namespace deletes it, with everything in it.
            let out = self
                .command()
                .args(["reset", "--weave-bridge", &self.bridge, "--data-dir"])
                .arg(&self.data)
                .stdin(Stdio::null())
                .output();
            if let Ok(out) = out
                && !out.status.success()
            {
                eprintln!(
                    "weaver reset in {:?} failed: {}",
                    self.netns,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            return;
        }
        reset_or_say(&self.bridge, &self.data);
        // The bridge is ours: never leave it behind, but say so when reset did not remove it.
        if host_link(&self.bridge).is_some() {
            eprintln!(
                "bridge {} still present after weaver reset; deleting it",
                self.bridge
            );
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
}

/// Creates `bridge` (which the router then adopts, and `weaver reset` deletes) with an address of
/// its own from 100.64.0.0/10, outside every range the tests allocate from, and returns it.
fn own_dns_address(bridge: &str) -> String {
    let ip = |cmd: &[&str]| {
        let out = Command::new("ip").args(cmd).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ip(&["link", "add", bridge, "type", "bridge"]);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..64u32 {
        let n = seed.wrapping_mul(2_654_435_761).wrapping_add(attempt) & 0x003f_fffe;
        let candidate = std::net::Ipv4Addr::from(0x6440_0000 | n | 1).to_string();
        if ip(&["-4", "-o", "addr", "show", "to", &format!("{candidate}/32")]).is_empty() {
            ip(&["addr", "add", &format!("{candidate}/32"), "dev", bridge]);
            ip(&["link", "set", bridge, "up"]);
            return candidate;
        }
    }
    // The bridge is ours and no Weaver owns it yet: take it away before failing.
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
    panic!("no free address for weaveDNS in 100.64.0.0/10");
}

/// A router and a proxy that attaches containers to it: what `weave launch` gives a user.
///
/// The proxy is dropped before the router, so nothing attaches while the router is reset.
#[derive(Debug)]
pub struct WeaveHost {
    /// The proxy, started with `--router-addr` and `--weave-bridge` of [`WeaveHost::weaver`].
    pub proxy: Proxy,
    /// The router.
    pub weaver: Weaver,
}

impl WeaveHost {
    /// A default router and a default (rewriting) proxy.
    pub fn start() -> Self {
        Self::start_with(Weaver::builder(), &[])
    }

    /// A router started from `weaver`, and a proxy with extra flags.
    pub fn start_with(weaver: WeaverBuilder, proxy_args: &[&str]) -> Self {
        let weaver = weaver.start();
        let proxy = Proxy::start_weave_with_router(&weaver, proxy_args);
        Self { proxy, weaver }
    }

    /// A docker CLI pointed at the proxy.
    pub fn docker(&self) -> Docker {
        self.proxy.docker()
    }
}

impl Weaver {
    /// The address weaveDNS listens on when started with [`WeaverBuilder::dns`].
    pub fn dns_addr(&self) -> Option<&str> {
        self.dns_addr.as_deref()
    }
}

/// `127.0.0.1:<a port nothing listens on right now>`.
pub fn free_tcp_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    listener.local_addr().expect("bound").to_string()
}

/// Runs [`reset`], saying on stderr when it failed: for drops, which must not panic.
fn reset_or_say(bridge: &str, data: &Path) {
    let out = reset(bridge, data);
    if !out.status.success() {
        eprintln!(
            "weaver reset --weave-bridge {bridge} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `weaver reset` for a bridge when dropped: for routers a test runs some other way than as
/// a [`Weaver`] (in a container, as `weave launch` does).
#[derive(Debug)]
pub struct ResetOnDrop {
    /// The router's `--weave-bridge`.
    pub bridge: String,
    /// The router's `--data-dir`, as the host sees it.
    pub data: PathBuf,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        reset_or_say(&self.bridge, &self.data);
    }
}
