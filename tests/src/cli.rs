//! Running the real `docker` CLI against a chosen endpoint.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::daemon::target_daemon;
use crate::scope::Scope;

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Panics with everything printed unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    /// The trimmed standard output.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }
}

/// The docker CLI pointed at one endpoint (the daemon, or the proxy in front of it).
#[derive(Debug, Clone)]
pub struct Docker {
    host: String,
}

impl Docker {
    /// A CLI that talks to `host` (`unix:///...` or `tcp://...`).
    pub fn new(host: impl Into<String>) -> Self {
        Self { host: host.into() }
    }

    /// A CLI that talks to the target daemon directly, bypassing any proxy.
    pub fn daemon() -> Self {
        Self::new(target_daemon())
    }

    /// The endpoint this CLI talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A `docker` command for this endpoint, with no user config in the way.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", &self.host)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env("DOCKER_CLI_HINTS", "false")
            .env("DOCKER_BUILDKIT", "0");
        cmd
    }

    /// Runs `docker ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// `docker run -d FLAGS IMAGE CMD`, labelled and named (`scope.name(what)`) in `scope`;
    /// returns the container's id.
    pub fn run_detached(
        &self,
        scope: &Scope,
        what: &str,
        flags: &[&str],
        image: &str,
        cmd: &[&str],
    ) -> String {
        let name = scope.name(what);
        let label = scope.label();
        let mut args = vec!["run", "-d", "--label", &label, "--name", &name];
        args.extend_from_slice(flags);
        args.push(image);
        args.extend_from_slice(cmd);
        self.run(&args).ok().out().to_owned()
    }

    /// `docker build -q --no-cache -t TAG CONTEXT`, the image labelled in `scope`; must succeed.
    ///
    /// No cache: tests building the same steps at once would share intermediate images, and one
    /// test's clean-up then removes a layer another's build is using ("failed to get digest").
    pub fn build(&self, scope: &Scope, tag: &str, context: &Path) -> Output {
        let label = scope.label();
        let context = context.to_str().expect("build contexts have UTF-8 paths");
        self.run(&[
            "build",
            "-q",
            "--no-cache",
            "--label",
            &label,
            "-t",
            tag,
            context,
        ])
        .ok()
    }

    /// Spawns `docker ARGS` with stdout piped (stdin and stderr null), for reading a live
    /// stream line by line; the caller kills and waits for the child.
    pub fn spawn_lines(&self, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the docker CLI runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        (child, BufReader::new(stdout).lines())
    }

    /// Runs `docker ARGS`, feeding `stdin` (then EOF) when given.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        output_of(self.command(args), stdin)
    }
}

/// Runs `cmd` to completion with its output captured, feeding `stdin` (then EOF) when given.
pub fn output_of(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).expect("stdin accepts the input");
    }
    let out = child.wait_with_output().expect("the command finishes");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The address (`10.32.0.1/12`) on the `ethwe*` line of `ip -o -4 addr show`.
pub fn weave_addr(listing: &str) -> Option<String> {
    listing
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|i| i.starts_with("ethwe"))
        })
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "inet")?;
            words.get(at + 1).map(|s| (*s).to_owned())
        })
}
