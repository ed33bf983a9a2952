//! Hosts of a multi-host weave network made of real Docker daemons on one machine
//! (MULTIHOST.md §6): each host is a Docker 26 dockerd (with its own containerd) in a network
//! namespace of its own and a private mount namespace, the hosts joined by veths on an underlay
//! bridge (198.51.100.0/24). The first hosts' namespaces also run the members of the etcd
//! cluster the routers share.
//!
//! A host's mount namespace has private `/run/docker` and `/run/containerd` (tmpfs), and its own
//! `/var/run/weave` and `/var/lib/weave`, bound from the host's scratch directory: `weave launch`
//! on two hosts would otherwise share the proxy's socket and the router's saved state, and meet
//! the machine's own weave there. [`DockerHost::sh`] runs a shell block in the dockerd's network
//! and mount namespaces, as a user logged in on that host: `weave` on PATH, `DOCKER_HOST` the
//! host's daemon, `eval $(weave env)` pointing `docker` at that host's proxy.
//!
//! Images come from the machine's daemon (`docker save | docker load`): no registry is reachable.
//!
//! Everything is named after the test process and a counter. Dropping [`DockerHosts`] removes
//! it all, a failed test included: the containers first (their shims keep the mount namespace
//! alive), then each dockerd and whatever is left in its mount namespace, etcd, the network
//! namespaces, the cgroups and the scratch directory.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cli::{Docker, Output, output_of};
use crate::hosts::{etcd_bin, ip, store_healthy};
use crate::image::test_image;
use crate::proxy::built;
use crate::skip::skip;
use crate::wait::poll;
use crate::weave::weaveexec_image;

/// The underlay's network: TEST-NET-2, which this machine's own interfaces do not use.
const UNDERLAY: &str = "198.51.100";
/// Where `scripts/docker26.sh install` unpacks Docker 26 (`DOCKER26_DIR` overrides).
const DOCKER26_DIR: &str = "/var/cache/weave-test/docker26";
/// How long a fresh dockerd may take to answer (1.3 s on an idle machine).
const DOCKERD_PATIENCE: Duration = Duration::from_secs(60);
/// How long a fresh etcd may take to elect itself.
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// How long dockerd may take to stop on TERM (2.4-3.3 s measured) before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// Sets up a host's mount namespace, then runs dockerd (`"$@"`) in it. Run by `sh` under
/// `ip netns exec`, which gives the command a fresh mount namespace with `/sys` remounted for the
/// network namespace, and the cgroup hierarchies gone from it: they come back from `$CGSAVE`,
/// bound there beforehand (in the private namespace `unshare` made) while still visible.
const HOST_SETUP: &str = r#"
mount --rbind "$CGSAVE" /sys/fs/cgroup
mount -t tmpfs tmpfs /run/docker
mount -t tmpfs tmpfs /run/containerd
mount --bind "$HOSTDIR/run" /run/weave
mount --bind "$HOSTDIR/lib" /var/lib/weave
exec "$@"
"#;

/// The hosts, their underlay, the store and the scratch directory.
#[derive(Debug)]
pub struct DockerHosts {
    tag: String,
    underlay: String,
    /// Created before anything else, removed after everything else.
    dir: TempDir,
    /// Dropped (its daemon stopped) before the namespaces go.
    hosts: Vec<DockerHost>,
    /// The store's members, on the first hosts, by host.
    etcd: Vec<Option<Child>>,
    /// A directory holding only `weave` (this build's), first on the hosts' PATH.
    bin: PathBuf,
}

/// One host: a dockerd in its own network and mount namespaces.
#[derive(Debug)]
pub struct DockerHost {
    /// `host1`, `host2`...: its nickname in weave.
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its underlay address.
    pub addr: Ipv4Addr,
    /// Its scratch directory: the daemon's socket, data and logs, `run/` and `lib/` (the
    /// host's `/var/run/weave` and `/var/lib/weave`).
    dir: PathBuf,
    /// The dockerd (the process `unshare` execs into, through `sh` and `ip netns exec`).
    dockerd: Option<Child>,
    /// dockerd's mount namespace (`mnt:[...]`), to find what is left in it at the end.
    mount_ns: Option<String>,
    /// The cgroup parent of its containers, `/<cgroup>` in every hierarchy.
    cgroup: String,
    /// The directory holding `weave`, first on PATH in [`DockerHost::sh`].
    bin: PathBuf,
}

impl DockerHosts {
    /// `n` hosts, each dockerd answering with the weaveexec and busybox images loaded, and an
    /// etcd member on each of the first `members`, one cluster with a leader (none with 0: the
    /// hosts then find a store through weave itself); `None` (after [`skip`]) when this machine
    /// cannot run them.
    pub fn new(n: usize, members: usize) -> Option<Self> {
        assert!(members <= n, "0 to {n} store members");
        if !nix::unistd::Uid::effective().is_root() {
            skip("namespaces and daemons need root");
            return None;
        }
        let dockerd = docker26_root().join("usr/sbin/dockerd");
        if !dockerd.exists() {
            install_docker26();
        }
        // Built (or found) in the machine's daemon before any host exists.
        let images = [weaveexec_image(), test_image(), "busybox:latest".to_owned()];

        static RUN: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "wd{:x}r{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("weave-dockerhosts-")
            .tempdir()
            .expect("a scratch directory");
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).expect("the bin directory");
        symlink(built("weave"), bin.join("weave")).expect("weave linked");
        let underlay = format!("{tag}u");
        let mut hosts = Self {
            tag,
            underlay: underlay.clone(),
            dir,
            hosts: Vec::new(),
            etcd: Vec::new(),
            bin,
        };
        ip(&["netns", "add", &underlay]);
        ip(&["-n", &underlay, "link", "add", "ul", "type", "bridge"]);
        ip(&["-n", &underlay, "link", "set", "ul", "up"]);
        // The mount points the hosts' namespaces mount over (the machine's docker may have none).
        for point in [
            "/run/docker",
            "/run/containerd",
            "/run/weave",
            "/var/lib/weave",
        ] {
            fs::create_dir_all(point).expect("a mount point");
        }
        for i in 0..n {
            hosts.add_host(i);
        }
        for i in 0..n {
            hosts.start_dockerd(i);
        }
        for i in 0..members {
            hosts.start_etcd(i, members);
        }
        let archive = hosts.dir.path().join("images.tar");
        let archive_arg = archive.to_str().expect("UTF-8 temp path");
        let mut save = vec!["save", "-o", archive_arg];
        save.extend(images.iter().map(String::as_str));
        Docker::daemon().run(&save).ok();
        for i in 0..n {
            hosts.wait_for_dockerd(i);
            hosts.hosts[i]
                .docker()
                .run(&["load", "-q", "-i", archive_arg])
                .ok();
        }
        if members > 0 {
            hosts.wait_for_store();
        }
        Some(hosts)
    }

    fn add_host(&mut self, i: usize) {
        let ns = format!("{}h{i}", self.tag);
        let addr: Ipv4Addr = format!("{UNDERLAY}.{}", i + 1).parse().expect("an address");
        let dir = self.dir.path().join(format!("h{i}"));
        for sub in ["data", "exec", "cgsave", "run", "lib"] {
            fs::create_dir_all(dir.join(sub)).expect("a host directory");
        }
        // Not the machine's /etc/docker/daemon.json, which may name its data-root.
        fs::write(dir.join("daemon.json"), "{}\n").expect("daemon.json");
        ip(&["netns", "add", &ns]);
        // Pushed before anything else can fail, so that drop deletes the namespace.
        self.hosts.push(DockerHost {
            name: format!("host{}", i + 1),
            ns: ns.clone(),
            addr,
            dir,
            dockerd: None,
            mount_ns: None,
            cgroup: ns.clone(),
            bin: self.bin.clone(),
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
        // Docker's default bridge, made beforehand and handed to dockerd with `-b`: dockerd
        // never creates or deletes a bridge then (and never gets `--bridge=none`, which deletes
        // the machine's docker0).
        ip(&["-n", &ns, "link", "add", "dbr", "type", "bridge"]);
        let bridge = format!("172.31.{}.1/24", i + 1);
        ip(&["-n", &ns, "addr", "add", &bridge, "dev", "dbr"]);
        ip(&["-n", &ns, "link", "set", "dbr", "up"]);
    }

    fn start_dockerd(&mut self, i: usize) {
        let root = docker26_root();
        let d26 = docker26_dir();
        let path = format!(
            "{}:{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            d26.join("bin").display(),
            root.join("usr/sbin").display(),
            root.join("usr/bin").display()
        );
        let host = &self.hosts[i];
        let dir = &host.dir;
        let log = fs::File::create(dir.join("dockerd.log")).expect("the dockerd log");
        let outer = r#"mount --rbind /sys/fs/cgroup "$CGSAVE"; exec ip netns exec "$NS" sh -ec "$HOST_SETUP" sh "$@""#;
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-ec", outer, "sh"])
            // The kernel stops the daemon when the test thread that started it ends, so that a
            // test killed outright leaves no daemon behind.
            .args(["setpriv", "--pdeathsig", "TERM", "--"])
            .arg(root.join("usr/sbin/dockerd"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["-b", "dbr"])
            // The namespace's iptables are weave's alone; its FORWARD policy stays ACCEPT.
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--ip-forward=false"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--cgroup-parent", &format!("/{}", host.cgroup)])
            .env("PATH", path)
            .env("CGSAVE", dir.join("cgsave"))
            .env("NS", &host.ns)
            .env("HOSTDIR", dir)
            .env("HOST_SETUP", HOST_SETUP)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log, twice"))
            .stderr(log)
            .spawn()
            .expect("unshare runs");
        self.hosts[i].dockerd = Some(child);
    }

    /// Waits until host `i`'s dockerd answers; notes its mount namespace.
    fn wait_for_dockerd(&mut self, i: usize) {
        let started = Instant::now();
        let host = &mut self.hosts[i];
        let docker = host.docker();
        let up = poll(DOCKERD_PATIENCE, || {
            if let Some(status) = host
                .dockerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}'s dockerd exited ({status}) while starting:\n{}",
                    host.name,
                    host.dockerd_log()
                );
            }
            (docker
                .run(&["version", "--format", "{{.Server.Version}}"])
                .code
                == 0)
                .then_some(())
        });
        assert!(
            up.is_some(),
            "{}'s dockerd did not answer within {DOCKERD_PATIENCE:?}:\n{}",
            host.name,
            host.dockerd_log()
        );
        let pid = host.pid();
        host.mount_ns = fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .ok()
            .map(|l| l.display().to_string());
        eprintln!(
            "{}'s dockerd answered after {:?}",
            host.name,
            started.elapsed()
        );
    }

    fn start_etcd(&mut self, i: usize, members: usize) {
        let cluster = self.hosts[..members]
            .iter()
            .enumerate()
            .map(|(m, h)| format!("m{m}=http://{}:2380", h.addr))
            .collect::<Vec<_>>()
            .join(",");
        let host = &self.hosts[i];
        let a = host.addr;
        let log =
            fs::File::create(self.dir.path().join(format!("etcd{i}.log"))).expect("the etcd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            // Killed with the test thread that started it, as the daemons are.
            .args(["setpriv", "--pdeathsig", "KILL", "--"])
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
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.etcd.push(Some(child));
    }

    /// Kills host `i`'s store member: a host whose etcd died.
    pub fn kill_store_member(&mut self, i: usize) {
        if let Some(mut etcd) = self.etcd.get_mut(i).and_then(Option::take) {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }

    fn wait_for_store(&self) {
        let host = &self.hosts[0];
        let healthy = poll(STORE_PATIENCE, || {
            store_healthy(&host.ns, host.addr).then_some(())
        });
        assert!(
            healthy.is_some(),
            "etcd was not healthy within {STORE_PATIENCE:?}:\n{}",
            fs::read_to_string(self.dir.path().join("etcd0.log")).unwrap_or_default()
        );
    }

    /// The store's client endpoints, `198.51.100.1:2379,...`, for `--store-endpoints`.
    pub fn store_endpoints(&self) -> String {
        self.hosts[..self.etcd.len()]
            .iter()
            .map(|h| format!("{}:2379", h.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &DockerHost {
        &self.hosts[i]
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Restarts host `i`'s dockerd as a machine's service manager would: TERM (Docker stops its
    /// containers and keeps them), then a new dockerd on the same data, which starts again the
    /// containers whose restart policy says so. The new one has a fresh mount namespace, as after
    /// a reboot: `/run/docker` (the plugins' sockets) starts empty.
    pub fn restart_dockerd(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        if let Some(mut dockerd) = host.dockerd.take() {
            let pid = nix::unistd::Pid::from_raw(dockerd.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let stopped = poll(STOP_PATIENCE, || dockerd.try_wait().ok().flatten());
            assert!(
                stopped.is_some(),
                "{}'s dockerd did not stop on TERM:\n{}",
                host.name,
                host.dockerd_log()
            );
        }
        if let Some(ns) = host.mount_ns.take() {
            kill_in_mount_ns(&ns);
        }
        self.start_dockerd(i);
        self.wait_for_dockerd(i);
    }

    /// `weave launch --store-endpoints <members> --nickname hostN` on host `i`.
    pub fn launch(&self, i: usize) -> Output {
        let block = format!(
            "weave launch --store-endpoints {} --nickname {}",
            self.store_endpoints(),
            self.hosts[i].name
        );
        self.hosts[i].sh(&block)
    }
}

impl DockerHost {
    /// The Docker CLI against this host's daemon itself (not the proxy).
    pub fn docker(&self) -> Docker {
        Docker::new(format!("unix://{}", self.dir.join("docker.sock").display()))
    }

    /// The Docker CLI against this host's weave proxy: `/var/run/weave/weave.sock` in the host's
    /// mount namespace, which is `run/weave.sock` in its directory from everywhere.
    pub fn proxy(&self) -> Docker {
        Docker::new(format!(
            "unix://{}",
            self.dir.join("run/weave.sock").display()
        ))
    }

    /// Runs `block` with bash (`set -e`) on this host: in its dockerd's network and mount
    /// namespaces, `DOCKER_HOST` its daemon, `weave` first on PATH.
    pub fn sh(&self, block: &str) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "--target",
            &self.pid().to_string(),
            "--mount",
            "--net",
            "--",
        ])
        .args(["bash", "-ec", block])
        .current_dir(&self.dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                self.bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", &self.dir)
        .env("DOCKER_HOST", self.docker().host())
        .env_remove("ORIG_DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CLI_HINTS", "false");
        output_of(cmd, None)
    }

    /// The dockerd's pid.
    fn pid(&self) -> u32 {
        self.dockerd.as_ref().expect("the dockerd was started").id()
    }

    /// The end of the dockerd's log, for a failure message.
    pub fn dockerd_log(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The last log lines of the container `name` on this host, for a failure message.
    pub fn logs(&self, name: &str) -> String {
        let out = self.docker().run(&["logs", "--tail", "30", name]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Removes every container, stops the daemon (killing it and everything left in its mount
    /// namespace if it does not stop), and removes its cgroups.
    fn stop(&mut self) {
        let Some(mut dockerd) = self.dockerd.take() else {
            return;
        };
        if matches!(dockerd.try_wait(), Ok(None)) {
            let docker = self.docker();
            let ids = docker.run(&["ps", "-aq"]).stdout;
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut rm = vec!["rm", "-f"];
                rm.extend(ids);
                let out = docker.run(&rm);
                if out.code != 0 {
                    eprintln!("{}: docker rm -f: {}", self.name, out.stderr.trim());
                }
            }
            let pid = nix::unistd::Pid::from_raw(dockerd.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let stopped = poll(STOP_PATIENCE, || dockerd.try_wait().ok().flatten());
            if stopped.is_none() {
                eprintln!("{}: dockerd did not stop on TERM, killing it", self.name);
            }
        }
        let _ = dockerd.kill();
        let _ = dockerd.wait();
        if let Some(ns) = &self.mount_ns {
            kill_in_mount_ns(ns);
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup(&hierarchy.path().join(&self.cgroup));
        }
    }
}

impl Drop for DockerHosts {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for host in &self.hosts {
                if host.dockerd.is_some() {
                    for name in ["weave", "weaveproxy"] {
                        eprintln!("--- {} {name} log ---\n{}", host.name, host.logs(name));
                    }
                }
            }
        }
        for host in &mut self.hosts {
            host.stop();
        }
        for i in 0..self.etcd.len() {
            self.kill_store_member(i);
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.underlay])
            .status();
    }
}

/// Kills (by pid) every process left in the mount namespace `ns` (`mnt:[...]`): containerd and
/// shims of a daemon that had to be killed.
fn kill_in_mount_ns(ns: &str) {
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let same =
            fs::read_link(entry.path().join("ns/mnt")).is_ok_and(|l| l.display().to_string() == ns);
        if let (true, Ok(pid)) = (same, pid.parse::<i32>()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes the cgroup directory `dir` and those under it, deepest first (a cgroup directory
/// goes with `rmdir` once it has no processes and no children).
fn remove_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    if let Err(err) = fs::remove_dir(dir) {
        eprintln!("cgroup {} stays: {err}", dir.display());
    }
}

/// Where Docker 26 is unpacked and its helper links are.
fn docker26_dir() -> PathBuf {
    std::env::var_os("DOCKER26_DIR").map_or_else(|| PathBuf::from(DOCKER26_DIR), PathBuf::from)
}

fn docker26_root() -> PathBuf {
    docker26_dir().join("root")
}

/// `scripts/docker26.sh install`, which CI's prerequisites run: downloads and unpacks Docker 26
/// (no daemon is started).
fn install_docker26() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker26.sh");
    let out = output_of(
        {
            let mut cmd = Command::new(script);
            cmd.arg("install");
            cmd
        },
        None,
    );
    assert_eq!(out.code, 0, "scripts/docker26.sh install failed: {out:#?}");
}
