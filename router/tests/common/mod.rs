//! A real `weaver` for a test: its own bridge, listener and data directory, stopped and reset
//! (`weaver reset`) when dropped, even after a failed assertion.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use weave_tests::eventually;

/// The binary under test.
pub const WEAVER: &str = env!("CARGO_BIN_EXE_weaver");

/// A bridge name unique to this process and call, within the kernel's 15 bytes.
pub fn unique_bridge() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "wvr{:x}b{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    assert!(name.len() <= 15, "{name} is too long for a link name");
    name
}

/// `127.0.0.1:<a port nothing listens on right now>`.
pub fn free_tcp_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// One HTTP/1.1 exchange shaped like curl's: `form`, when given, goes url-encoded in the body.
/// `addr` is `host:port` or a unix socket path.
pub fn http(addr: &str, method: &str, path: &str, form: Option<&str>) -> Option<(u16, String)> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:6784\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n"
    );
    match form {
        Some(body) => request.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{body}",
            body.len()
        )),
        None => request.push_str("\r\n"),
    }
    let mut reply = String::new();
    if addr.starts_with('/') {
        let mut stream = UnixStream::connect(addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        stream.read_to_string(&mut reply).ok()?;
    } else {
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        stream.read_to_string(&mut reply).ok()?;
    }
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `weaver reset` for `bridge` and `data`; its output.
pub fn reset(bridge: &str, data: &Path) -> Output {
    Command::new(WEAVER)
        .args(["reset", "--weave-bridge", bridge, "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Whether a link named `name` exists on the host.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `iptables -S` of the filter table's `DOCKER-USER` and `FORWARD` chains.
pub fn forward_rules() -> String {
    let mut all = String::new();
    for chain in ["DOCKER-USER", "FORWARD"] {
        let out = Command::new("iptables")
            .args(["-w", "-S", chain])
            .output()
            .unwrap();
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// A running `weaver`.
#[derive(Debug)]
pub struct Weaver {
    child: Option<Child>,
    dir: TempDir,
    pub bridge: String,
    /// `host:port` or a unix socket path.
    pub addr: String,
    pub data: PathBuf,
    args: Vec<String>,
}

impl Weaver {
    /// A router on a free TCP port with `extra` flags, ready (`GET /status` is 200).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_at(&free_tcp_addr(), extra)
    }

    /// A router listening on `addr` (`host:port` or a socket path).
    pub fn start_at(addr: &str, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weaver-router-test")
            .tempdir()
            .unwrap();
        let bridge = unique_bridge();
        let data = dir.path().join("data");
        let mut args: Vec<String> = [
            "--http-addr",
            addr,
            "--weave-bridge",
            &bridge,
            "--data-dir",
            data.to_str().unwrap(),
            "--log-level",
            "router=debug,weaver=debug,info",
        ]
        .map(str::to_owned)
        .into();
        if !extra.contains(&"--docker-api") {
            args.extend(["--docker-api".to_owned(), weave_tests::target_daemon()]);
        }
        // Routers run many at a time and only one can have weaveDNS on docker0:53; tests of
        // DNS say where theirs listens.
        if !extra.iter().any(|a| a.starts_with("--dns")) {
            args.push("--no-dns".to_owned());
        }
        args.extend(extra.iter().map(|&a| a.to_owned()));
        let mut weaver = Self {
            child: None,
            dir,
            bridge,
            addr: addr.to_owned(),
            data,
            args,
        };
        weaver.spawn();
        weaver
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weaver.log")
    }

    /// Everything logged so far, over all runs.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the process (again) and waits until it is ready.
    pub fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(WEAVER)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .env_remove("WEAVE_HTTP_ADDR")
            .env_remove("WEAVE_BRIDGE")
            .env_remove("WEAVE_MTU")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually("weaver to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("weaver exited with {status}:\n{}", self.log());
            }
            http(&self.addr, "GET", "/status", None).filter(|(status, _)| *status == 200)
        });
    }

    /// SIGTERM and wait (SIGKILL after 10 s); the bridge and data stay. Returns whether it
    /// exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// One request; panics when the router does not answer.
    pub fn request(&self, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
        http(&self.addr, method, path, form)
            .unwrap_or_else(|| panic!("{method} {path}: no answer from weaver"))
    }

    /// `GET /ip/{id}`: the addresses `id` holds in the default subnet, space-separated.
    pub fn lookup(&self, id: &str) -> String {
        let (status, body) = self.request("GET", &format!("/ip/{id}"), None);
        assert_eq!(status, 200, "GET /ip/{id}: {body}");
        body
    }
}

impl Drop for Weaver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- weaver log ---\n{}", self.log());
        }
        self.stop();
        let out = reset(&self.bridge, &self.data);
        if !out.status.success() {
            eprintln!(
                "weaver reset failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if link_exists(&self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
}

/// A TCP front for the Docker daemon's unix socket that a test can cut, as if the daemon went
/// away: `weaver --docker-api tcp://<addr>` then sees its connections end and new ones refused.
#[derive(Debug)]
pub struct DockerRelay {
    pub addr: String,
    shared: std::sync::Arc<RelayShared>,
}

#[derive(Debug, Default)]
struct RelayShared {
    down: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl DockerRelay {
    /// Relays to the target daemon (which must be a unix socket).
    pub fn start() -> Self {
        let socket = weave_tests::daemon::target_socket();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = std::sync::Arc::new(RelayShared::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if state.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let Ok(daemon) = UnixStream::connect(&socket) else {
                    continue;
                };
                state.open.lock().unwrap().push(client.try_clone().unwrap());
                let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
                let (mut d_read, mut d_write) = (daemon.try_clone().unwrap(), daemon);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut d_write);
                    let _ = d_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut d_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { addr, shared }
    }

    /// `tcp://<addr>`.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Ends every open connection and refuses new ones until [`DockerRelay::up`].
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }
}

/// Runs `weaver reset` for a bridge when dropped: for routers the test does not run as a
/// [`Weaver`] (in a container).
#[derive(Debug)]
pub struct ResetOnDrop {
    pub bridge: String,
    pub data: PathBuf,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        let out = reset(&self.bridge, &self.data);
        if !out.status.success() {
            eprintln!(
                "weaver reset failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
