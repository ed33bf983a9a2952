//! The `weaveproxy` under test, run as a real process on a private socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::cli::Docker;
use crate::daemon::target_daemon;
use crate::wait::eventually;

/// A running `weaveproxy` listening on a unix socket in its own temporary directory.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
}

/// The `weaveproxy` binary cargo built beside this test (`WEAVEPROXY_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEAVEPROXY_BIN") {
        return PathBuf::from(path);
    }
    built("weaveproxy")
}

/// A binary of this workspace from the same build as the running test or benchmark.
fn built(name: &str) -> PathBuf {
    // Test executables live in target/<triple>/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("the executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built: run the suite with `cargo test --workspace` or `cargo nextest run --workspace`",
        bin.display()
    );
    bin
}

/// A process's resident set size in KiB, or `None` once it is gone.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Lays out this build's (static) weavewait binaries as the proxy expects them:
/// `dir/w/w`, `dir/w-nomcast/w`, `dir/w-noop/w`.
pub fn weavewait_layout(dir: &Path) {
    for (variant, bin) in [
        ("w", "weavewait"),
        ("w-nomcast", "weavewait-nomcast"),
        ("w-noop", "weavewait-noop"),
    ] {
        let target = dir.join(variant);
        fs::create_dir_all(&target).expect("weavewait layout directory");
        fs::copy(built(bin), target.join("w")).expect("weavewait copied into the layout");
    }
}

impl Proxy {
    /// Starts a pass-through proxy in front of the target daemon.
    ///
    /// Pass-through proxies run with `--no-default-ipalloc`, so containers without
    /// `WEAVE_CIDR` are forwarded exactly as the client sent them: the pass-through suite checks
    /// that the proxy cannot be told from the daemon, while the rewrite has suites of its own
    /// ([`Proxy::start_weave`]).
    pub fn start() -> Self {
        Self::start_with(&target_daemon(), &[])
    }

    /// Starts a pass-through proxy in front of `upstream` with extra flags.
    pub fn start_with(upstream: &str, args: &[&str]) -> Self {
        let mut all = vec!["--no-default-ipalloc"];
        all.extend_from_slice(args);
        Self::spawn(upstream, &all)
    }

    /// Starts a proxy that rewrites every container for weave (the default behaviour), in
    /// front of the target daemon, with extra flags.
    pub fn start_weave(args: &[&str]) -> Self {
        Self::spawn(&target_daemon(), args)
    }

    fn spawn(upstream: &str, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weaveproxy-test")
            .tempdir()
            .expect("a temporary directory");
        let socket = dir.path().join("proxy.sock");
        let log = fs::File::create(dir.path().join("proxy.log")).expect("the log file opens");
        let weavewait = dir.path().join("weavewait");
        weavewait_layout(&weavewait);
        let child = Command::new(binary())
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--docker-api")
            .arg(upstream)
            .arg("--weavewait-dir")
            .arg(&weavewait)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--log-level", "debug"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("weaveproxy starts");
        let mut proxy = Self { child, dir, socket };
        let socket = proxy.socket.clone();
        eventually(
            "the proxy socket to accept",
            Duration::from_secs(10),
            || {
                if let Ok(Some(status)) = proxy.child.try_wait() {
                    panic!("weaveproxy exited with {status}:\n{}", proxy.log());
                }
                std::os::unix::net::UnixStream::connect(&socket).ok()
            },
        );
        proxy
    }

    /// `unix:///…/proxy.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The proxy's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A docker CLI pointed at this proxy.
    pub fn docker(&self) -> Docker {
        Docker::new(self.host())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors the proxy has open now.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the proxy's fd table is readable")
            .count()
    }

    /// The proxy's resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("the proxy's VmRSS is readable")
    }

    /// Everything the proxy has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Sends `signal` to the proxy.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits"));
        kill(pid, signal).expect("the proxy can be signalled");
    }

    /// Waits up to `patience` for the proxy to exit, returning its status.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        let child = &mut self.child;
        eventually("the proxy to exit", patience, || {
            child.try_wait().expect("the proxy can be waited for")
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- weaveproxy log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
