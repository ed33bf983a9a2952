//! A container as an attacker, against a real `weave launch`: what it does to its own files, its
//! root or its `/etc/hosts` can make weave neither write outside it nor hang the proxy, and a
//! proxy restart while the router is down, or a router that never answers, or a second proxy on
//! the same daemon, costs no working container its network.
//!
//! Each test first checks that the attack's precondition held (the chroot happened, the node is
//! there), so that it would fail if weave were still open to it.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weave_tests::netns::{ethwe, running_pid};
use weave_tests::proxy::{binary, weavewait_layout};
use weave_tests::raw::Conn;
use weave_tests::weave::WeaveShell;
use weave_tests::{Docker, eventually, target_daemon};

/// The proxy `weave launch` starts, as a client reaches it.
const PROXY: &str = "unix:///var/run/weave/weave.sock";

/// A host directory of the test's own, removed on drop.
struct HostDir(PathBuf);

impl HostDir {
    fn new(what: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("weave-sec-{what}-"))
            .tempdir()
            .expect("a temporary directory")
            .keep();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A shell command for a busybox container whose first process ends up `chroot`ed into `/jail`,
/// where `etc` is an absolute symlink to `target`, a directory on the host.
fn chroot_with_etc_pointing_at(target: &Path) -> String {
    format!(
        "mkdir -p /jail/bin && cp /bin/busybox /jail/bin/ && ln -s {} /jail/etc && \
         exec chroot /jail /bin/busybox sleep 1d",
        target.display()
    )
}

/// The chroot happened: the container's first process sees `/jail` as its root, whose `etc`
/// points at `target` (a path that, read from the host's root, is the host's).
fn assert_chrooted_at(container: &str, target: &Path) -> u32 {
    let pid = eventually("the container to run", Duration::from_secs(10), || {
        running_pid(container)
    });
    eventually("the chroot", Duration::from_secs(10), || {
        let root = fs::read_link(format!("/proc/{pid}/root")).ok()?;
        let etc = fs::read_link(format!("/proc/{pid}/root/etc")).ok()?;
        (root.ends_with("jail") && etc == target).then_some(())
    });
    pid
}

/// Runs `command` (a `docker run -d`) and returns the container's id.
fn detached(shell: &WeaveShell, command: &str) -> String {
    shell.run(command).ok().out().to_owned()
}

fn in_container(container: &str, command: &[&str]) -> String {
    let mut args = vec!["exec", container];
    args.extend(command);
    Docker::daemon().run(&args).ok().stdout
}

fn weave_addr(container: &str) -> String {
    let found = eventually("ethwe", Duration::from_secs(10), || ethwe(container));
    found.addrs.first().cloned().expect("ethwe has an address")
}

/// The proxy answers `/_ping` within a second, every time, while `busy` runs.
fn proxy_answers_while<T>(busy: impl FnOnce() -> T) -> T {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let mut conn = Conn::open(Path::new("/var/run/weave/weave.sock"));
                conn.stream_mut()
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                conn.request("GET", "/_ping", &[], b"");
                let (head, body) = conn.response("GET");
                assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&body));
                slowest = slowest.max(started.elapsed());
                count += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (slowest, count)
        })
    };
    let result = busy();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (slowest, count) = pinger.join().expect("the proxy kept answering");
    assert!(count > 0);
    assert!(
        slowest < Duration::from_secs(1),
        "a /_ping took {slowest:?} while the container was attached"
    );
    result
}

fn proxy_log() -> String {
    let out = Docker::daemon().run(&["logs", "weaveproxy"]);
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn weave_attach_of_a_chrooted_container_writes_its_own_hosts_not_the_hosts() {
    let shell = WeaveShell::new();
    shell.run("weave launch-router").ok();
    let host = HostDir::new("attach");
    let victim = host.path().join("hosts");
    fs::write(&victim, "untouched\n").unwrap();
    let id = detached(
        &shell,
        &format!(
            "docker run -d -h c1.weave.local ubuntu sh -c '{}'",
            chroot_with_etc_pointing_at(host.path())
        ),
    );
    assert_chrooted_at(&id, host.path());

    let addr = shell
        .run(&format!("weave attach 10.2.1.7/24 {id}"))
        .ok()
        .stdout;
    assert_eq!(addr.trim(), "10.2.1.7");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
    let hosts = in_container(&id, &["cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.2.1.7") && l.contains("c1")),
        "the container's own /etc/hosts has its weave address:\n{hosts}"
    );
}

/// The same through a symlinked `etc/hosts` (an absolute one, to a host file) in the jail.
#[test]
fn weave_attach_of_a_container_whose_hosts_is_a_symlink_leaves_the_target_alone() {
    let shell = WeaveShell::new();
    shell.run("weave launch-router").ok();
    let host = HostDir::new("symlink");
    let victim = host.path().join("victim");
    fs::write(&victim, "untouched\n").unwrap();
    let id = detached(
        &shell,
        &format!(
            "docker run -d -h c2.weave.local ubuntu sh -c 'mkdir -p /jail/bin /jail/etc && \
             cp /bin/busybox /jail/bin/ && ln -s {} /jail/etc/hosts && \
             exec chroot /jail /bin/busybox sleep 1d'",
            victim.display()
        ),
    );
    let pid = eventually("the container to run", Duration::from_secs(10), || {
        running_pid(&id)
    });
    eventually("the chroot", Duration::from_secs(10), || {
        let link = fs::read_link(format!("/proc/{pid}/root/etc/hosts")).ok()?;
        (link == victim).then_some(())
    });

    shell.run(&format!("weave attach 10.2.1.8/24 {id}")).ok();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
    let hosts = in_container(&id, &["cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.starts_with("10.2.1.8")), "{hosts}");
}

#[test]
fn the_proxys_sweep_after_a_relaunch_leaves_a_chrooted_container_and_the_host_alone() {
    let shell = WeaveShell::launched();
    let host = HostDir::new("sweep");
    let victim = host.path().join("hosts");
    fs::write(&victim, "untouched\n").unwrap();
    let id = detached(
        &shell,
        &format!(
            "docker -H {PROXY} run -d -e WEAVE_CIDR=10.32.9.9/24 ubuntu sh -c '{}'",
            chroot_with_etc_pointing_at(host.path())
        ),
    );
    assert_chrooted_at(&id, host.path());
    assert_eq!(weave_addr(&id), "10.32.9.9/24");

    shell.run("weave stop-proxy && weave launch-proxy").ok();
    eventually(
        "the sweep to look at the container",
        Duration::from_secs(20),
        || proxy_log().contains(&id[..12]).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert_eq!(weave_addr(&id), "10.32.9.9/24");
}

/// `/etc/hosts` bound from a host FIFO (a user's `-v`, so Docker does not mount its own). With
/// nobody reading it, the old writer blocked in `open` on the proxy's only thread; with a reader,
/// it wrote into it.
#[test]
fn a_fifo_at_etc_hosts_is_left_alone_and_the_proxy_keeps_answering() {
    let shell = WeaveShell::launched();
    let host = HostDir::new("fifo");
    let fifo = host.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let run = || {
        detached(
            &shell,
            &format!(
                "docker -H {PROXY} run -d -v {}:/etc/hosts ubuntu sleep 1d",
                fifo.display()
            ),
        )
    };
    let unread = proxy_answers_while(run);
    assert_eq!(
        in_container(&unread, &["sh", "-c", "test -p /etc/hosts && echo fifo"]).trim(),
        "fifo",
        "the precondition: the container's /etc/hosts is a FIFO"
    );
    assert!(ethwe(&unread).is_some(), "attached all the same");

    // With a reader waiting, nothing arrives either.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .unwrap();
    let read = run();
    assert!(ethwe(&read).is_some(), "attached all the same");
    let mut got = Vec::new();
    let _ = reader.read_to_end(&mut got);
    assert!(got.is_empty(), "bytes were written into the FIFO: {got:?}");
    let log = proxy_log();
    assert!(
        log.contains("is a FIFO, not a regular file"),
        "the proxy said why: {log}"
    );
}

#[test]
fn a_device_node_at_etc_hosts_is_left_alone() {
    let shell = WeaveShell::launched();
    let host = HostDir::new("device");
    let node = host.path().join("null");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let id = detached(
        &shell,
        &format!(
            "docker -H {PROXY} run -d -v {}:/etc/hosts ubuntu sleep 1d",
            node.display()
        ),
    );
    assert!(
        fs::metadata(&node).unwrap().file_type().is_char_device(),
        "the precondition: a device node"
    );
    assert_eq!(
        in_container(&id, &["sh", "-c", "test -c /etc/hosts && echo dev"]).trim(),
        "dev"
    );
    assert!(ethwe(&id).is_some(), "attached all the same");
    let log = proxy_log();
    assert!(
        log.contains("is a character device, not a regular file"),
        "{log}"
    );
}

#[test]
fn a_proxy_restart_while_the_router_is_down_keeps_the_containers_network() {
    let shell = WeaveShell::launched();
    let id = detached(
        &shell,
        &format!("docker -H {PROXY} run -d -e WEAVE_CIDR=10.32.7.7/24 ubuntu sleep 1d"),
    );
    assert_eq!(weave_addr(&id), "10.32.7.7/24");

    shell
        .run("weave stop-router && weave stop-proxy && weave launch-proxy")
        .ok();
    eventually(
        "the sweep to fail to reach the router",
        Duration::from_secs(30),
        || {
            proxy_log()
                .contains("could not attach a running container")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        weave_addr(&id),
        "10.32.7.7/24",
        "the sweep's failed attach took the container's network"
    );
    shell.run("weave launch-router").ok();
    let ps = shell.run(&format!("weave ps {id}")).ok().stdout;
    assert!(ps.contains("10.32.7.7/24"), "{ps}");
    // The router still has the address as the container's: nobody else can claim it.
    let other = shell.run("docker run -d ubuntu sleep 1d").ok().stdout;
    let taken = shell.run(&format!("weave attach 10.32.7.7/24 {}", other.trim()));
    assert_ne!(taken.code, 0, "the address was freed: {taken:#?}");
}

/// A router that accepts connections and never answers: the start fails within the bound on a
/// router request (10 s, well inside the default `--attach-timeout` of 30 s) with a message that
/// says so, and other clients are served meanwhile.
#[test]
fn a_router_that_never_answers_costs_one_start_its_timeout_and_nobody_else_anything() {
    let shell = WeaveShell::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    // Accepted by the kernel (the backlog), never read or answered.
    shell
        .run_with("weave launch-proxy", &[("WEAVE_HTTP_ADDR", &addr)], None)
        .ok();
    let started = Instant::now();
    let run = proxy_answers_while(|| shell.run(&format!("docker -H {PROXY} run --rm ubuntu true")));
    let took = started.elapsed();
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr
            .contains(&format!("weave router at {addr} did not answer")),
        "{run:#?}"
    );
    assert!(took < Duration::from_secs(25), "the start took {took:?}");
    drop(silent);
}

/// The reported case: a second proxy beside `weave launch`'s, on its own socket with the default
/// data directory. Every container started through either must run its program with `ethwe`.
#[test]
fn a_second_proxy_on_the_same_daemon_never_leaves_a_program_without_its_network() {
    let shell = WeaveShell::launched();
    let socket_dir = HostDir::new("proxy2");
    let socket = socket_dir.path().join("proxy.sock");
    let weavewait = socket_dir.path().join("weavewait");
    weavewait_layout(&weavewait);
    let mut second = SecondProxy::start(&socket, &weavewait, socket_dir.path());
    let check = "ip -4 -o addr show ethwe | grep -q ' 10.32.5.' && echo OK || echo MISSING";
    let mut missing = Vec::new();
    for round in 0..30 {
        let via = if round % 2 == 0 {
            PROXY.to_owned()
        } else {
            format!("unix://{}", socket.display())
        };
        let out = shell.run(&format!(
            "docker -H {via} run --rm -e WEAVE_CIDR=net:10.32.5.0/24 ubuntu sh -c \"{check}\""
        ));
        if out.code != 0 || out.stdout.trim() != "OK" {
            missing.push((round, out));
        }
    }
    second.stop();
    assert!(
        missing.is_empty(),
        "{} of 30 runs without their network: {missing:#?}\n--- second proxy ---\n{}",
        missing.len(),
        second.log()
    );
}

/// `weaveproxy` started by hand on another socket, with the default data directory and router.
struct SecondProxy {
    child: Child,
    log: PathBuf,
}

impl SecondProxy {
    fn start(socket: &Path, weavewait: &Path, dir: &Path) -> Self {
        let log = dir.join("proxy.log");
        let child = Command::new(binary())
            .args(["-H", &format!("unix://{}", socket.display())])
            .args(["--weavewait-dir", &weavewait.display().to_string()])
            .args(["--docker-api", &target_daemon()])
            .args(["--log-level", "debug"])
            .env_remove("WEAVE_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("weaveproxy starts");
        eventually(
            "the second proxy to listen",
            Duration::from_secs(10),
            || std::os::unix::net::UnixStream::connect(socket).ok(),
        );
        Self { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SecondProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opening a FIFO for reading without waiting for a writer.
trait NonBlocking {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlocking for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(nix::libc::O_NONBLOCK)
    }
}
