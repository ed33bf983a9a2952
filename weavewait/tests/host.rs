//! weavewait's behaviour on this host: waiting in a fresh network namespace until a veth called
//! `ethwe` is moved in and set up (and the multicast route added), ending on signals as PID 1,
//! the exec itself, and the failure exits. Runs the binaries this test build produced.
//!
//! Needs root (network namespaces, veths, PID namespaces) and `ip`, `nsenter`, `unshare`; each
//! test says so and skips on a machine without them.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};
use weave_tests::eventually;

const FULL: &str = env!("CARGO_BIN_EXE_weavewait");
const NOMCAST: &str = env!("CARGO_BIN_EXE_weavewait-nomcast");
const NOOP: &str = env!("CARGO_BIN_EXE_weavewait-noop");

const PATIENCE: Duration = Duration::from_secs(10);
/// How long a waiting weavewait is watched to show it does not run the program early.
const OBSERVE: Duration = Duration::from_millis(300);

/// Whether this machine can run the namespace tests; prints why not.
fn privileged() -> bool {
    if !Uid::effective().is_root() {
        eprintln!("skipping: needs root for network and PID namespaces");
        return false;
    }
    for tool in ["ip", "nsenter", "unshare"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!("skipping: `{tool}` is not installed");
            return false;
        }
    }
    true
}

/// A name unique to this process and call, short enough for a link (15 bytes).
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{:x}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        let name = unique("wvwait");
        ip(&["netns", "add", &name]);
        Self { name }
    }

    /// A command that runs `program` inside this namespace, as the same process (nsenter execs).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `ip -n NS ARGS`.
    #[track_caller]
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair created in this (the host's) namespace, as the proxy creates one; deleting the
/// host end on drop deletes the peer too, wherever it was moved.
#[derive(Debug)]
struct Veth {
    host: String,
    peer: String,
}

impl Veth {
    fn new() -> Self {
        let host = unique("wvh");
        let peer = unique("wvp");
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &host, "up"]);
        Self { host, peer }
    }

    /// Moves the peer into `netns` and renames it `ethwe` (still down), as the attach does.
    fn move_in_as_ethwe(&self, netns: &Netns) {
        ip(&["link", "set", &self.peer, "netns", &netns.name]);
        netns.ip(&["link", "set", &self.peer, "name", "ethwe"]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(Stdio::null())
            .status();
    }
}

/// A started process whose output is collected as it comes; killed on drop if still running.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut text = sink.lock().unwrap();
                    text.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_for_stderr(&self, line: &str) {
        eventually(&format!("stderr line {line:?}"), PATIENCE, || {
            self.stderr().lines().any(|l| l == line).then_some(())
        });
    }

    /// Watches for [`OBSERVE`]: the process must keep running without the program having started.
    #[track_caller]
    fn assert_still_waiting(&mut self, comm: &str) {
        let until = Instant::now() + OBSERVE;
        while Instant::now() < until {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "weavewait ended early: stdout {:?}, stderr {:?}",
                self.stdout(),
                self.stderr()
            );
            assert_eq!(
                self.stdout(),
                "",
                "the program ran before the network was ready"
            );
            let running = std::fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
                .unwrap_or_default();
            assert_eq!(running.trim_end(), comm, "/proc/PID/comm");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end; its status and all it printed.
    #[track_caller]
    fn finish(mut self) -> (ExitStatus, String, String) {
        let status = eventually("the process to exit", PATIENCE, || {
            self.child.try_wait().unwrap()
        });
        // The pipes close with the process; give the reader threads their last chunk.
        eventually("the output to be collected", PATIENCE, || {
            (Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1)
                .then_some(())
        });
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `SigBlk` mask of a process, from /proc.
fn blocked_signals(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

fn blocks(pid: Pid, signal: Signal) -> bool {
    blocked_signals(pid).is_some_and(|mask| mask & (1 << (signal as i32 - 1)) != 0)
}

/// Waits until `pid` is weavewait (`comm`, as the kernel truncates it) with its signals blocked:
/// from then on a SIGTERM is queued for it rather than dropped.
#[track_caller]
fn wait_until_blocking(pid: Pid, comm: &str) {
    eventually("weavewait to block its signals", PATIENCE, || {
        let running = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (running.trim_end() == comm && blocks(pid, Signal::SIGTERM)).then_some(())
    });
}

/// The program the tests exec: `grep` reports its own PID and signal state. It has to be the
/// exec'd program itself: a shell would hide a leftover mask (dash empties its mask at start).
const REPORT: [&str; 4] = ["grep", "-E", "^(Pid|SigBlk|SigIgn):", "/proc/self/status"];

/// The `SigIgn` line a program started by this test process inherits. Not always zero: glibc's
/// `posix_spawn` (which std uses) leaves its internal signals 32 and 33 ignored in the child.
/// weavewait must pass on exactly what it was given, and add nothing.
fn inherited_ignored() -> String {
    let out = Command::new("grep")
        .args(["^SigIgn", "/proc/self/status"])
        .output()
        .expect("grep runs");
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Checks what [`REPORT`] printed: the PID (when known), an empty mask, and only the inherited
/// ignored signals.
#[track_caller]
fn assert_clean_report(stdout: &str, pid: Option<Pid>) {
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} in {stdout:?}"))
    };
    if let Some(pid) = pid {
        assert_eq!(field("Pid:"), pid.to_string(), "same PID: {stdout}");
    }
    assert_eq!(field("SigBlk:"), "0000000000000000", "empty mask: {stdout}");
    let ignored = inherited_ignored();
    assert_eq!(
        format!("SigIgn:\t{}", field("SigIgn:")),
        ignored,
        "ignores only what it inherited: {stdout}"
    );
}

#[test]
fn nomcast_waits_for_ethwe_up_then_execs() {
    if !privileged() {
        return;
    }
    let netns = Netns::new();
    let veth = Veth::new();
    let mut cmd = netns.command(NOMCAST);
    cmd.args(REPORT);
    let mut run = Running::spawn(cmd);
    let pid = run.pid();
    wait_until_blocking(pid, "weavewait-nomca");
    run.assert_still_waiting("weavewait-nomca");

    veth.move_in_as_ethwe(&netns);
    run.assert_still_waiting("weavewait-nomca");

    netns.ip(&["link", "set", "ethwe", "up"]);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout} {stderr}");
    assert_clean_report(&stdout, Some(pid));
    assert_eq!(stderr, "", "weavewait is quiet when all goes well");
}

#[test]
fn full_waits_for_the_multicast_route_too() {
    if !privileged() {
        return;
    }
    let netns = Netns::new();
    let veth = Veth::new();
    let mut cmd = netns.command(FULL);
    cmd.args(REPORT).env("WEAVEWAIT_DEBUG", "1");
    let mut run = Running::spawn(cmd);
    let pid = run.pid();
    run.wait_for_stderr("weavewait: debug: ethwe absent; waiting");
    run.assert_still_waiting("weavewait");

    veth.move_in_as_ethwe(&netns);
    run.wait_for_stderr("weavewait: debug: ethwe down; waiting");
    netns.ip(&["addr", "add", "10.32.0.5/12", "dev", "ethwe"]);
    netns.ip(&["link", "set", "ethwe", "up"]);
    run.wait_for_stderr("weavewait: debug: ethwe up, no 224.0.0.0/4 route; waiting");
    run.assert_still_waiting("weavewait");

    netns.ip(&["route", "add", "224.0.0.0/4", "dev", "ethwe"]);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout} {stderr}");
    assert_clean_report(&stdout, Some(pid));
    assert!(
        stderr.ends_with("weavewait: debug: ready\nweavewait: debug: exec \"grep\"\n"),
        "{stderr}"
    );
}

#[test]
fn an_attached_namespace_runs_the_program_at_once() {
    if !privileged() {
        return;
    }
    let netns = Netns::new();
    let veth = Veth::new();
    veth.move_in_as_ethwe(&netns);
    netns.ip(&["link", "set", "ethwe", "up"]);
    netns.ip(&["route", "add", "224.0.0.0/4", "dev", "ethwe"]);
    for variant in [FULL, NOMCAST] {
        let mut cmd = netns.command(variant);
        cmd.args(REPORT);
        let (status, stdout, stderr) = Running::spawn(cmd).finish();
        assert_eq!(status.code(), Some(0), "{variant}: {stdout} {stderr}");
        assert_clean_report(&stdout, None);
        assert_eq!(stderr, "");
    }
}

/// `unshare --pid --net --fork --mount-proc PROGRAM ARGS`: PROGRAM is PID 1 of a new PID
/// namespace, in a network namespace that has no `ethwe`.
fn as_pid1(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--net", "--fork", "--mount-proc", "--", program])
        .args(args);
    cmd
}

/// The host PID of the first child of `parent` (unshare's forked PID 1).
fn only_child(parent: Pid) -> Option<Pid> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    let first = children.split_whitespace().next()?;
    Some(Pid::from_raw(first.parse().ok()?))
}

/// The PID a process has in its own PID namespace (the last `NSpid` field).
fn namespace_pid(pid: Pid) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last().map(str::to_owned)
}

#[test]
fn as_pid1_terminating_signals_end_the_wait_at_once() {
    if !privileged() {
        return;
    }
    for (signal, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
        (Signal::SIGQUIT, 131),
    ] {
        let mut run = Running::spawn(as_pid1(FULL, &["sleep", "100"]));
        let unshare = run.pid();
        let pid = eventually("unshare's child", PATIENCE, || only_child(unshare));
        wait_until_blocking(pid, "weavewait");
        assert_eq!(
            namespace_pid(pid).as_deref(),
            Some("1"),
            "weavewait is PID 1"
        );
        run.assert_still_waiting("unshare");

        let sent = Instant::now();
        kill(pid, signal).unwrap();
        let (status, stdout, stderr) = run.finish();
        let took = sent.elapsed();
        assert_eq!(status.code(), Some(code), "{signal}: {stdout} {stderr}");
        assert!(took < Duration::from_secs(5), "{signal} took {took:?}");
        assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""), "quiet exit");
    }
}

#[test]
fn as_pid1_other_signals_are_discarded() {
    if !privileged() {
        return;
    }
    let mut cmd = as_pid1(NOMCAST, &["sleep", "100"]);
    cmd.env("WEAVEWAIT_DEBUG", "1");
    let mut run = Running::spawn(cmd);
    let unshare = run.pid();
    let pid = eventually("unshare's child", PATIENCE, || only_child(unshare));
    run.wait_for_stderr("weavewait: debug: ethwe absent; waiting");

    for signal in [Signal::SIGUSR1, Signal::SIGWINCH, Signal::SIGALRM] {
        kill(pid, signal).unwrap();
        run.wait_for_stderr(&format!(
            "weavewait: debug: ignoring signal {}",
            signal as i32
        ));
    }
    run.assert_still_waiting("unshare");
    kill(pid, Signal::SIGTERM).unwrap();
    let (status, _, stderr) = run.finish();
    assert_eq!(status.code(), Some(143), "{stderr}");
}

#[test]
fn noop_execs_at_once_as_pid1_with_a_clean_slate() {
    if !privileged() {
        return;
    }
    let (status, stdout, stderr) = Running::spawn(as_pid1(NOOP, &REPORT)).finish();
    assert_eq!(status.code(), Some(0), "{stdout} {stderr}");
    assert_clean_report(&stdout, Some(Pid::from_raw(1)));
    assert_eq!(stderr, "");
}

#[test]
fn exec_keeps_argv0_and_the_environment() {
    // argv[0] is passed as given (not the path PATH lookup found), and every argument intact.
    let mut cmd = Command::new(NOOP);
    cmd.args([
        "sh",
        "-c",
        r#"tr '\0' '|' < /proc/$$/cmdline"#,
        "zero",
        "two words",
        "",
    ]);
    let (status, stdout, stderr) = Running::spawn(cmd).finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        r#"sh|-c|tr '\0' '|' < /proc/$$/cmdline|zero|two words||"#
    );

    // The environment arrives exactly as weavewait got it: nothing added, nothing dropped.
    let mut cmd = Command::new(NOOP);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("WEAVE_CIDR", "10.2.1.1/24")
        .env("SPACED", "a b\tc")
        .env("EMPTY", "")
        .arg("env");
    let (status, stdout, stderr) = Running::spawn(cmd).finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut seen: Vec<&str> = stdout.lines().collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            "EMPTY=",
            "PATH=/usr/bin:/bin",
            "SPACED=a b\tc",
            "WEAVE_CIDR=10.2.1.1/24"
        ]
    );
}

#[test]
fn stdin_is_the_programs() {
    let mut child = Command::new(NOOP)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"through\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through\n");
}

/// Runs weavewait-noop with `args`; its exit code, stdout and stderr.
fn noop(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(NOOP);
    cmd.args(args).env("PATH", "/usr/bin:/bin");
    let (status, stdout, stderr) = Running::spawn(cmd).finish();
    (status.code(), stdout, stderr)
}

#[test]
fn a_missing_program_exits_127_naming_it() {
    let (code, stdout, stderr) = noop(&["wv-no-such-program", "arg"]);
    assert_eq!(code, Some(127));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "weavewait: exec: \"wv-no-such-program\": executable file not found in $PATH\n"
    );

    let (code, _, stderr) = noop(&["/nonexistent/wv-prog"]);
    assert_eq!(code, Some(127));
    assert_eq!(
        stderr,
        "weavewait: exec: \"/nonexistent/wv-prog\": no such file or directory\n"
    );
}

#[test]
fn an_unexecutable_file_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, "#!/bin/sh\necho should not run\n").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = noop(&[data]);
    assert_eq!(code, Some(126), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("weavewait: exec: \"{data}\": permission denied\n")
    );

    let dir_path = dir.path().to_str().unwrap();
    let (code, _, stderr) = noop(&[dir_path]);
    assert_eq!(code, Some(126), "a directory: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn no_program_is_a_usage_error() {
    for variant in [NOOP, NOMCAST, FULL] {
        let (status, stdout, stderr) = Running::spawn(Command::new(variant)).finish();
        assert_eq!(status.code(), Some(2), "{variant}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("weavewait: usage: "), "{stderr}");
    }
}

#[test]
fn the_exit_status_is_the_programs() {
    let (code, stdout, stderr) = noop(&["sh", "-c", "echo out; echo err >&2; exit 42"]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (Some(42), "out\n", "err\n")
    );
}
