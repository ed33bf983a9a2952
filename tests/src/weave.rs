//! The `weave` command as a user runs it: shell blocks (verbatim from the documentation) run by
//! bash with `weave` on PATH, against the target daemon, with the weaveexec image present.
//!
//! `weave launch` uses fixed names (the containers `weave` and `weaveproxy`, the bridge `weave`,
//! `/var/run/weave/weave.sock`, weaveDNS on the Docker bridge's port 53), so the tests that use it
//! run one at a time (the nextest group `weave-host`), and each starts and ends with `weave reset`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use crate::cli::{Docker, Output, output_of};
use crate::daemon::target_daemon;
use crate::image::{cache_dir, test_image};
use crate::proxy::built;

/// The image `weave launch` runs, as `scripts/build-image.sh` tags it.
pub fn weaveexec_image() -> String {
    let image = format!("weaveworks/weaveexec:{}", env!("CARGO_PKG_VERSION"));
    let docker = Docker::daemon();
    let present = |docker: &Docker| {
        docker
            .run(&["image", "inspect", "--format", "x", &image])
            .code
            == 0
    };
    if present(&docker) {
        return image;
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache).expect("the test cache directory can be created");
    let lock = fs::File::create(cache.join("weaveexec.lock")).expect("the image lock file opens");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("the image lock is taken");
    if !present(&docker) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(root.join("scripts/build-image.sh"))
            .env("DOCKER_HOST", target_daemon())
            .stdout(Stdio::null())
            .status()
            .expect("scripts/build-image.sh runs");
        assert!(status.success(), "scripts/build-image.sh failed");
    }
    image
}

/// A shell in which `weave` is the workspace's build and `docker` reaches the target daemon
/// exactly as a user's would (`DOCKER_HOST` unset for the machine's own socket). Resets weave
/// before and after.
#[derive(Debug)]
pub struct WeaveShell {
    home: tempfile::TempDir,
    bin: PathBuf,
    /// `DOCKER_HOST` for the blocks; `None` for the default socket.
    docker_host: Option<String>,
}

impl WeaveShell {
    /// A clean host: no weave containers, bridge or state; the image and `ubuntu` (the busybox
    /// test image, under the name the documentation uses) present.
    pub fn new() -> Self {
        weaveexec_image();
        let busybox = test_image();
        Docker::daemon()
            .run(&["tag", &busybox, "ubuntu:latest"])
            .ok();
        let home = tempfile::Builder::new()
            .prefix("weave-home")
            .tempdir()
            .unwrap();
        let bin = home.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(built("weave"), bin.join("weave")).unwrap();
        let target = target_daemon();
        let docker_host = (target != "unix:///var/run/docker.sock").then_some(target);
        let shell = Self {
            home,
            bin,
            docker_host,
        };
        let reset = shell.clean();
        assert_eq!(reset.code, 0, "weave reset failed: {reset:#?}");
        shell
    }

    /// A clean host with `weave launch` done.
    pub fn launched() -> Self {
        let shell = Self::new();
        shell.run("weave launch").ok();
        shell
    }

    /// The temporary home directory (`~` in the blocks).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The target daemon's address as `DOCKER_HOST` would hold it.
    pub fn daemon_host(&self) -> String {
        target_daemon()
    }

    /// Runs `block` with bash (`set -e`), in the home directory.
    pub fn run(&self, block: &str) -> Output {
        self.run_with(block, &[], None)
    }

    /// Runs `block` with extra environment and, optionally, input on stdin.
    pub fn run_with(&self, block: &str, env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(block);
        cmd.envs(env.iter().copied());
        output_of(cmd, stdin.map(str::as_bytes))
    }

    /// Runs `block` on a terminal (`script`), typing `input`, for `docker run -ti`.
    pub fn run_on_tty(&self, block: &str, input: &str) -> Output {
        let inner = format!("bash -ec {}", shell_quote(block));
        let wrapped = format!("script -qec {} /dev/null", shell_quote(&inner));
        self.run_with(&wrapped, &[], Some(input))
    }

    fn command(&self, block: &str) -> Command {
        let mut cmd = Command::new("bash");
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.arg("-ec")
            .arg(block)
            .current_dir(self.home.path())
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env_remove("ORIG_DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CLI_HINTS", "false");
        match &self.docker_host {
            Some(host) => cmd.env("DOCKER_HOST", host),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        cmd
    }

    /// `weave reset`, and every container the blocks made from `ubuntu` removed. Containers are
    /// picked by the image name they were created with: `ubuntu` is only another tag of the
    /// busybox image every other test uses, so `--filter ancestor=ubuntu` would take theirs too.
    fn clean(&self) -> Output {
        let daemon = Docker::daemon();
        let all = daemon.run(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}}"]);
        for line in all.stdout.lines() {
            if let Some((id, "ubuntu" | "ubuntu:latest")) = line.split_once(' ') {
                daemon.run(&["rm", "-f", id]);
            }
        }
        self.run("weave reset")
    }
}

impl Drop for WeaveShell {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = Docker::daemon().run(&["logs", "--tail", "30", "weaveproxy"]);
            eprintln!("--- weaveproxy log ---\n{}{}", logs.stdout, logs.stderr);
            let logs = Docker::daemon().run(&["logs", "--tail", "30", "weave"]);
            eprintln!("--- weave (router) log ---\n{}{}", logs.stdout, logs.stderr);
        }
        let reset = self.clean();
        if reset.code != 0 {
            eprintln!("weave reset failed: {reset:#?}");
        }
    }
}

impl Default for WeaveShell {
    fn default() -> Self {
        Self::new()
    }
}

/// `s` single-quoted for bash.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
