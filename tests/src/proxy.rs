//! The `weaveproxy` under test, run as a real process on a private socket.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::cli::Docker;
use crate::daemon::target_daemon;
use crate::wait::eventually;
use crate::weaver::Weaver;

/// A running `weaveproxy` listening on a unix socket in its own temporary directory.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
    upstream: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The `weaveproxy` binary cargo built beside this test (`WEAVEPROXY_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEAVEPROXY_BIN") {
        return PathBuf::from(path);
    }
    built("weaveproxy")
}

/// The router address of proxies started without one: nothing ever listens there.
pub const NO_ROUTER: &str = "127.0.0.1:1";

/// A binary of this workspace from the same build as the running test or benchmark.
pub(crate) fn built(name: &str) -> PathBuf {
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

    /// Like [`Proxy::start_with`], with extra environment variables (such as `DOCKER_TLS_VERIFY`
    /// and `DOCKER_CERT_PATH` for TLS to a tcp:// upstream).
    pub fn start_with_env(upstream: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut all = vec!["--no-default-ipalloc"];
        all.extend_from_slice(args);
        Self::spawn_with_env(upstream, &all, env)
    }

    /// Starts a proxy that rewrites every container for weave (the default behaviour), in
    /// front of the target daemon, with extra flags.
    ///
    /// Without a router (`--router-addr` is [`NO_ROUTER`]), starting a rewritten container
    /// through it fails; creating one, and everything else, works.
    pub fn start_weave(args: &[&str]) -> Self {
        Self::spawn(&target_daemon(), args)
    }

    /// Starts a rewriting proxy that attaches containers to `weaver`'s bridge through its API.
    pub fn start_weave_with_router(weaver: &Weaver, args: &[&str]) -> Self {
        let mut all = vec![
            "--router-addr",
            weaver.addr(),
            "--weave-bridge",
            weaver.bridge(),
        ];
        all.extend_from_slice(args);
        Self::spawn(&target_daemon(), &all)
    }

    fn spawn(upstream: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(upstream, args, &[])
    }

    fn spawn_with_env(upstream: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weaveproxy-test")
            .tempdir()
            .expect("a temporary directory");
        let socket = dir.path().join("proxy.sock");
        let weavewait = dir.path().join("weavewait");
        weavewait_layout(&weavewait);
        let upstream = upstream.to_owned();
        let mut args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        if !args.iter().any(|a| a == "--router-addr") {
            // A proxy without a router of its own must find none, even while a test of `weave
            // launch` runs one at the default address: nothing listens on port 1.
            args.extend(["--router-addr".to_owned(), NO_ROUTER.to_owned()]);
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let child = Self::launch(dir.path(), &socket, &upstream, &args, &env);
        let mut proxy = Self {
            child,
            dir,
            socket,
            upstream,
            args,
            env,
        };
        proxy.wait_ready();
        proxy
    }

    /// Runs the binary with the harness's fixed flags, logging to `dir/proxy.log` (appended).
    /// The docker CLI's TLS variables come only from `env`, never from the caller's shell.
    fn launch(
        dir: &Path,
        socket: &Path,
        upstream: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("proxy.log"))
            .expect("the log file opens");
        Command::new(binary())
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--docker-api")
            .arg(upstream)
            .arg("--weavewait-dir")
            .arg(dir.join("weavewait"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--log-level", "debug"])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("WEAVE_HTTP_ADDR")
            .env_remove("WEAVE_BRIDGE")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_TLS")
            .env_remove("DOCKER_CERT_PATH")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("weaveproxy starts")
    }

    fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        eventually(
            "the proxy socket to accept",
            Duration::from_secs(10),
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("weaveproxy exited with {status}:\n{}", self.log());
                }
                std::os::unix::net::UnixStream::connect(&socket).ok()
            },
        );
    }

    /// Stops the proxy with SIGTERM and waits for it, keeping its directory: containers it
    /// created keep their `/w` bind source, and [`Proxy::restart`] starts it again.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(Signal::SIGTERM);
            self.wait_exit(Duration::from_secs(30));
        }
    }

    /// Stops the proxy if it runs and starts it again with the same flags, socket and data
    /// directory.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::launch(
            self.dir.path(),
            &self.socket,
            &self.upstream,
            &self.args,
            &self.env,
        );
        self.wait_ready();
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

    /// The fd count once it has stayed the same for ten polls in a row (idle connections
    /// settle), within ten seconds.
    pub fn settled_fd_count(&self) -> usize {
        let mut last = (self.fd_count(), 0);
        eventually("the fd count to settle", Duration::from_secs(10), || {
            let now = self.fd_count();
            last = if now == last.0 {
                (now, last.1 + 1)
            } else {
                (now, 0)
            };
            (last.1 >= 10).then_some(now)
        })
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
