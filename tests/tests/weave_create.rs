//! The weave rewrite of `docker run`, end to end: containers wait in `/w/w` for `ethwe`, then run
//! exactly what Docker would have run; what is left alone, refused, shown and exec'd.
//!
//! Tests about what runs once a container is attached go through a real router and proxy
//! ([`WeaveHost`]). Tests about the waiting itself need a container that nothing attaches: it is
//! created through the proxy, the proxy is stopped, and the container is started straight on the
//! daemon; the test then plays the router, step by step, with a veth pair whose far end is moved
//! into the container, renamed `ethwe`, set up and given the `224.0.0.0/4` route
//! (see [`FakeAttach`]).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weave_tests::daemon::target_socket;
use weave_tests::engine;
use weave_tests::http::Request;
use weave_tests::{Docker, Output, Proxy, Scope, WeaveHost, eventually, holds_for, test_image};

/// How long a program that should run may take (a loaded CI machine starts containers slowly).
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a waiting container is watched to see that it keeps waiting.
const STILL: Duration = Duration::from_millis(1200);

// ---------------------------------------------------------------------------------------------
// Private helpers.

/// A fake weave attach: the host end of a veth pair whose other end is `ethwe` in a container.
/// Deleting the host end removes the pair (the container's exit removes it too, hence no check).
#[derive(Debug)]
struct FakeAttach {
    host: String,
    peer: String,
    pid: String,
}

impl FakeAttach {
    /// Gives the running container `container` an `ethwe` that is UP, but no multicast route.
    fn link_up(container: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = running_pid(container);
        // Interface names have 15 bytes at most; the test process id keeps them apart.
        let base = format!(
            "wvt{:x}n{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let attach = Self {
            host: format!("{base}h"),
            peer: format!("{base}c"),
            pid,
        };
        ip(&[
            "link",
            "add",
            &attach.host,
            "type",
            "veth",
            "peer",
            "name",
            &attach.peer,
        ]);
        ip(&["link", "set", &attach.peer, "netns", &attach.pid]);
        attach.inside(&["ip", "link", "set", &attach.peer, "name", "ethwe"]);
        attach.inside(&["ip", "link", "set", "ethwe", "up"]);
        attach
    }

    /// Adds the `224.0.0.0/4` route the router adds last.
    fn add_route(&self) {
        self.inside(&["ip", "route", "add", "224.0.0.0/4", "dev", "ethwe"]);
    }

    /// A complete attach: `ethwe` UP and the multicast route.
    fn full(container: &str) -> Self {
        let attach = Self::link_up(container);
        attach.add_route();
        attach
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["-t", &self.pid, "-n"];
        all.extend_from_slice(args);
        checked(Command::new("nsenter").args(&all));
    }
}

impl Drop for FakeAttach {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) {
    checked(Command::new("ip").args(args));
}

#[track_caller]
fn checked(cmd: &mut Command) {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host pid of a container's first process, once it is running (asked of the daemon).
fn running_pid(container: &str) -> String {
    eventually(&format!("{container} to be running"), PATIENCE, || {
        // A foreground `docker run` may not have created it yet.
        let out = Docker::daemon().run(&["inspect", "--format", "{{json .State}}", container]);
        let state: Value = serde_json::from_str(&out.stdout).ok()?;
        let pid = state["Pid"].as_u64().unwrap_or(0);
        (state["Running"] == true && pid > 0).then(|| pid.to_string())
    })
}

/// `docker inspect` of one object, straight to the daemon.
fn inspect_direct(name: &str) -> Value {
    inspect(&Docker::daemon(), name)
}

fn inspect(docker: &Docker, name: &str) -> Value {
    let out = docker.run(&["inspect", name]).ok();
    let mut list: Value = serde_json::from_str(&out.stdout).expect("inspect prints JSON");
    list[0].take()
}

/// Watches a waiting container: it stays running and prints nothing.
#[track_caller]
fn keeps_waiting(container: &str) {
    holds_for(&format!("{container} waiting silently"), STILL, || {
        let state = &inspect_direct(container)["State"];
        let logs = Docker::daemon().run(&["logs", container]).ok();
        state["Running"] == true && logs.stdout.is_empty() && logs.stderr.is_empty()
    });
}

/// The exit code of a container once it has exited.
fn exit_code(container: &str) -> i64 {
    eventually(&format!("{container} to exit"), PATIENCE, || {
        let state = &inspect_direct(container)["State"];
        (state["Status"] == "exited").then(|| state["ExitCode"].as_i64().unwrap())
    })
}

/// An image built FROM the test image with extra Dockerfile lines, labelled in `scope`.
fn build_image(scope: &Scope, what: &str, instructions: &str) -> String {
    let context = tempfile::tempdir().expect("a build context");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {}\n{instructions}\n", test_image()),
    )
    .expect("Dockerfile written");
    let tag = scope.name(what);
    Docker::daemon().build(scope, &tag, context.path());
    tag
}

/// A `docker` CLI in the foreground, as a user runs it, read to the end in the background.
#[derive(Debug)]
struct Foreground {
    child: Child,
    readers: Option<(JoinHandle<String>, JoinHandle<String>)>,
}

impl Foreground {
    /// Spawns `docker ARGS`; `stdin` is written and closed when given.
    fn spawn(docker: &Docker, args: &[&str], stdin: Option<&[u8]>) -> Self {
        let mut child = docker
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the docker CLI runs");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input).expect("stdin accepts the input");
        }
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = r.read_to_string(&mut text);
                text
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
        let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
        Self {
            child,
            readers: Some((out, err)),
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("the CLI can be waited for")
            .is_none()
    }

    /// Waits (bounded) for the CLI to exit.
    #[track_caller]
    fn finish(mut self) -> Output {
        let status = eventually("the docker CLI to exit", PATIENCE, || {
            self.child.try_wait().expect("the CLI can be waited for")
        });
        let (out, err) = self.readers.take().expect("read once");
        Output {
            code: status.code().unwrap_or(-1),
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `docker run --name NAME --label L FLAGS IMAGE CMD` in the foreground through `docker` (a
/// [`WeaveHost`]'s proxy, which attaches the container before its program runs); returns what
/// the CLI printed.
fn run_attached(
    docker: &Docker,
    scope: &Scope,
    what: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let name = scope.name(what);
    let label = scope.label();
    let mut args = vec!["run", "--name", &name, "--label", &label];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    Foreground::spawn(docker, &args, stdin).finish()
}

/// `docker create --name scope.name(what) --label L FLAGS IMAGE CMD` through `proxy`; then the
/// proxy is stopped and the container started straight on the daemon, so that it waits in
/// weavewait with nothing attaching it. Returns the name.
fn start_unattached(
    proxy: &mut Proxy,
    scope: &Scope,
    what: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
) -> String {
    let name = scope.name(what);
    create_through(proxy, scope, what, flags, image, cmd);
    proxy.stop();
    Docker::daemon().run(&["start", &name]).ok();
    running_pid(&name);
    name
}

/// `docker create --name scope.name(what) --label L FLAGS IMAGE CMD` through `proxy`.
fn create_through(
    proxy: &Proxy,
    scope: &Scope,
    what: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
) {
    let name = scope.name(what);
    let label = scope.label();
    let mut args = vec!["create", "--name", &name, "--label", &label];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    proxy.docker().run(&args).ok();
}

/// `docker run` in the foreground that must finish without any attach.
fn run_unattached(docker: &Docker, args: &[&str]) -> Output {
    Foreground::spawn(docker, args, None).finish()
}

/// The fields that say what a container runs.
fn command_of(container: &Value) -> Value {
    json!({
        "Path": container["Path"],
        "Args": container["Args"],
        "Entrypoint": container["Config"]["Entrypoint"],
        "Cmd": container["Config"]["Cmd"],
    })
}

/// The fields the rewrite touches, for "untouched" comparisons with a direct twin.
fn rewritable_of(container: &Value) -> Value {
    json!({
        "command": command_of(container),
        "Binds": container["HostConfig"]["Binds"],
        "Mounts": container["Mounts"],
        "HostConfigMounts": container["HostConfig"]["Mounts"],
    })
}

fn entrypoint(container: &Value) -> Vec<String> {
    container["Config"]["Entrypoint"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the container was rewritten: `/w/w` first, and exactly one added mount, `/w`
/// read-only.
#[track_caller]
fn assert_rewritten(container: &Value) {
    let ep = entrypoint(container);
    assert_eq!(ep.first().map(String::as_str), Some("/w/w"), "{ep:?}");
    assert_eq!(
        ep.iter().filter(|e| *e == "/w/w").count(),
        1,
        "one /w/w: {ep:?}"
    );
    assert_eq!(container["Path"], "/w/w");
    let mounts = container["Mounts"].as_array().expect("Mounts is a list");
    assert_eq!(mounts.len(), 1, "exactly one mount: {mounts:#?}");
    assert_eq!(mounts[0]["Destination"], "/w", "{mounts:#?}");
    assert_eq!(mounts[0]["RW"], false, "{mounts:#?}");
    assert_eq!(mounts[0]["Type"], "bind", "{mounts:#?}");
}

/// Asserts the container was left as Docker made it: no `/w/w` anywhere, no `/w` mount.
#[track_caller]
fn assert_untouched(container: &Value) {
    let text = container["Config"].to_string() + &container["Path"].to_string();
    assert!(!text.contains("/w/w"), "{text}");
    let mounts = container["Mounts"].as_array().expect("Mounts is a list");
    assert!(
        mounts.iter().all(|m| m["Destination"] != "/w"),
        "{mounts:#?}"
    );
}

fn container_count(filter: &str) -> usize {
    Docker::daemon()
        .run(&["ps", "-aq", "--filter", filter])
        .ok()
        .stdout
        .split_whitespace()
        .count()
}

/// The ids of a container's execs, newest last as the daemon lists them.
fn exec_ids(container: &str) -> Vec<String> {
    inspect_direct(container)["ExecIDs"]
        .as_array()
        .map(|ids| ids.iter().map(|i| i.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// `GET /exec/{id}/json` straight from the daemon.
fn exec_inspect_direct(id: &str) -> Value {
    engine::get_json(&target_socket(), &format!("/exec/{id}/json"))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn detached_container_waits_for_ethwe_and_the_route_then_runs() {
    let image = test_image();
    let scope = Scope::new();
    let mut proxy = Proxy::start_weave(&[]);
    let name = start_unattached(
        &mut proxy,
        &scope,
        "wait",
        &["-e", "WEAVE_CIDR=10.2.1.1/24"],
        &image,
        &["echo", "ok"],
    );
    keeps_waiting(&name);
    // `ethwe` UP is not enough for /w/w: the route is the router's last step.
    let attach = FakeAttach::link_up(&name);
    keeps_waiting(&name);
    attach.add_route();
    assert_eq!(exit_code(&name), 0);
    let logs = Docker::daemon().run(&["logs", &name]).ok();
    assert_eq!((logs.stdout.as_str(), logs.stderr.as_str()), ("ok\n", ""));
}

/// A client attached to the container's output (here `docker start -a`, straight on the daemon
/// with no proxy to attach it) blocks until the attach, then gets the program's output.
#[test]
fn foreground_run_blocks_until_attached_then_prints_and_exits_0() {
    let image = test_image();
    let scope = Scope::new();
    let mut proxy = Proxy::start_weave(&[]);
    let name = scope.name("fg");
    create_through(
        &proxy,
        &scope,
        "fg",
        &["-e", "WEAVE_CIDR=10.2.1.1/24"],
        &image,
        &["echo", "ok"],
    );
    proxy.stop();
    let mut cli = Foreground::spawn(&Docker::daemon(), &["start", "-a", &name], None);
    running_pid(&name);
    holds_for("the CLI blocking", STILL, || cli.running());
    let _attach = FakeAttach::full(&name);
    let out = cli.finish();
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"), "{out:#?}");
}

#[test]
fn image_entrypoint_gets_the_command_line_as_arguments() {
    let scope = Scope::new();
    let grep = build_image(&scope, "grep", "ENTRYPOINT [\"grep\"]\nCMD [\"-c\", \"x\"]");
    let host = WeaveHost::start();
    let docker = host.docker();
    let input: &[u8] = b"x\ny\nx\n";
    let with_args = run_attached(
        &docker,
        &scope,
        "args",
        &["-i"],
        &grep,
        &["-c", "y"],
        Some(input),
    );
    assert_eq!(
        (with_args.code, with_args.out()),
        (0, "1"),
        "{with_args:#?}"
    );
    // No arguments: the image's CMD follows its ENTRYPOINT.
    let image_cmd = run_attached(&docker, &scope, "cmd", &["-i"], &grep, &[], Some(input));
    assert_eq!(
        (image_cmd.code, image_cmd.out()),
        (0, "2"),
        "{image_cmd:#?}"
    );
}

#[test]
fn entrypoint_flag_overrides_the_image_entrypoint() {
    let scope = Scope::new();
    let falsy = build_image(&scope, "false", "ENTRYPOINT [\"/bin/false\"]");
    let host = WeaveHost::start();
    let out = run_attached(
        &host.docker(),
        &scope,
        "ep",
        &["-i", "--entrypoint=grep"],
        &falsy,
        &["-c", "x"],
        Some(b"x\ny\nx\n"),
    );
    assert_eq!((out.code, out.out()), (0, "2"), "{out:#?}");
}

/// None of these is attached, so they start even though no router runs behind this proxy.
#[test]
fn other_networks_and_weave_cidr_none_run_at_once_untouched() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start_weave(&[]);
    let docker = proxy.docker();
    let label = scope.label();
    let owner = scope.name("owner");
    docker.run_detached(
        &scope,
        "owner",
        &["-e", "WEAVE_CIDR=none"],
        &image,
        &["sleep", "300"],
    );
    let shared = format!("--net=container:{owner}");
    let cases: [(&str, &[&str]); 3] = [
        ("host", &["--net=host"]),
        ("none", &["-e", "WEAVE_CIDR=none"]),
        ("shared", &[&shared]),
    ];
    for (what, flags) in cases {
        let name = scope.name(what);
        let twin = scope.name(&format!("{what}-twin"));
        let run = |docker: &Docker, name: &str| {
            let mut args = vec!["run", "--name", name, "--label", &label];
            args.extend_from_slice(flags);
            args.extend([image.as_str(), "echo", "ok"]);
            run_unattached(docker, &args)
        };
        let out = run(&docker, &name);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "ok\n"),
            "{what}: {out:#?}"
        );
        run(&Docker::daemon(), &twin).ok();
        let proxied = inspect_direct(&name);
        assert_untouched(&proxied);
        assert_eq!(
            rewritable_of(&proxied),
            rewritable_of(&inspect_direct(&twin)),
            "{what}"
        );
    }
    assert_untouched(&inspect_direct(&owner));
}

#[test]
fn program_not_found_is_reported_by_weavewait_with_127() {
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start();
    let out = run_attached(
        &host.docker(),
        &scope,
        "nosuch",
        &[],
        &image,
        &["nosuchprogram"],
        None,
    );
    assert_eq!(out.code, 127, "{out:#?}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("weavewait:"))
        .unwrap_or_else(|| panic!("no weavewait: line in {out:#?}"));
    assert!(line.contains("\"nosuchprogram\""), "{line}");
    assert!(line.contains("not found"), "{line}");
}

#[test]
fn daemon_sees_weavewait_and_a_read_only_mount_clients_see_their_command() {
    let image = test_image();
    let scope = Scope::new();
    let grep = build_image(&scope, "grep", "ENTRYPOINT [\"grep\"]\nCMD [\"-c\", \"x\"]");
    let host = WeaveHost::start();
    let docker = host.docker();
    let daemon = Docker::daemon();
    let label = scope.label();
    let cases: [(&str, &[&str], &str, &[&str]); 6] = [
        ("cmd", &[], &image, &["sleep", "300"]),
        ("imgcmd", &[], &image, &[]),
        ("imgep", &[], &grep, &["-c", "y"]),
        ("imgepcmd", &[], &grep, &[]),
        ("ep", &["--entrypoint", "sh"], &grep, &["-c", "sleep 300"]),
        ("noep", &["--entrypoint", ""], &grep, &["echo", "hi"]),
    ];
    for (what, flags, img, cmd) in cases {
        let create = |docker: &Docker, name: &str| {
            let mut args = vec!["create", "--name", name, "--label", &label];
            args.extend_from_slice(flags);
            args.push(img);
            args.extend_from_slice(cmd);
            docker.run(&args).ok();
        };
        let name = scope.name(what);
        let twin = scope.name(&format!("{what}-twin"));
        create(&docker, &name);
        create(&daemon, &twin);
        let truth = inspect_direct(&name);
        assert_rewritten(&truth);
        let twin_view = inspect_direct(&twin);
        // The daemon runs /w/w followed by Docker's own path and arguments.
        let mut args = vec![twin_view["Path"].clone()];
        args.extend(twin_view["Args"].as_array().unwrap().iter().cloned());
        assert_eq!(truth["Args"], json!(args), "{what}");
        let mut wrapped = vec!["/w/w".to_owned()];
        wrapped.extend(entrypoint(&twin_view));
        assert_eq!(entrypoint(&truth), wrapped, "{what}");
        let shown = inspect(&docker, &name);
        assert_eq!(command_of(&shown), command_of(&twin_view), "{what}");
        let ps = |docker: &Docker, name: &str| {
            let out = docker
                .run(&[
                    "ps",
                    "-a",
                    "--no-trunc",
                    "--filter",
                    &format!("name={name}"),
                    "--format",
                    "{{.Names}}\t{{.Command}}",
                ])
                .ok()
                .stdout;
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}\t")).map(str::to_owned))
                .unwrap_or_else(|| panic!("{name} not listed: {out}"))
        };
        let twin_ps = ps(&daemon, &twin);
        assert_eq!(ps(&docker, &name), twin_ps, "{what}");
        let direct_ps = ps(&daemon, &name);
        let inner = twin_ps.trim_matches('"');
        assert_eq!(
            direct_ps.trim_matches('"'),
            format!("/w/w {inner}").trim_end(),
            "{what}: the daemon tells the truth"
        );
    }
    // The mount cannot be written to from inside.
    let name = scope.name("cmd");
    docker.run(&["start", &name]).ok();
    let touch = docker.run(&["exec", &name, "touch", "/w/w"]);
    assert_ne!(touch.code, 0, "{touch:#?}");
    assert!(touch.stderr.contains("Read-only file system"), "{touch:#?}");
}

#[test]
fn stopping_a_waiting_container_is_quick_and_exits_143() {
    let image = test_image();
    let scope = Scope::new();
    let mut proxy = Proxy::start_weave(&[]);
    let name = start_unattached(&mut proxy, &scope, "stop", &[], &image, &["echo", "never"]);
    let started = Instant::now();
    Docker::daemon().run(&["stop", &name]).ok();
    let took = started.elapsed();
    println!("docker stop of a waiting container took {took:?}");
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(exit_code(&name), 143);
    let logs = Docker::daemon().run(&["logs", &name]).ok();
    assert_eq!(logs.stdout, "", "the program never ran");
}

#[test]
fn bad_weave_cidr_is_refused_naming_the_token_and_creates_nothing() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start_weave(&[]);
    let label = scope.label();
    let filter = format!("label={label}");
    for token in ["ip:10.0.0.1", "foo", "net:10.0.0.0/33"] {
        let env = format!("WEAVE_CIDR={token}");
        let name = scope.name("bad");
        let out = proxy.docker().run(&[
            "run", "--name", &name, "--label", &label, "-e", &env, &image, "true",
        ]);
        assert_ne!(out.code, 0, "{out:#?}");
        assert!(
            out.stderr.contains(&format!("{token:?}")),
            "{token}: {out:#?}"
        );
        for form in ["net:default", "net:<cidr>", "ip:<ip>/<len>", "none"] {
            assert!(out.stderr.contains(form), "{form} missing: {out:#?}");
        }
        assert_eq!(container_count(&filter), 0, "{token}: nothing created");
    }
    // The API answer itself: a 400 in the daemon's error shape.
    let body = json!({
        "Image": image,
        "Cmd": ["true"],
        "Env": ["WEAVE_CIDR=10.0.0.1/24 foo"],
        "Labels": scope.labels(),
    });
    let reply = engine::call(
        proxy.socket(),
        Request::post("/containers/create").json(&body),
    );
    let answer = reply.json();
    assert_eq!(reply.status, 400, "{answer}");
    let message = answer["message"].as_str().expect("a message");
    assert!(message.contains("\"foo\""), "{message}");
    assert!(
        !message.contains("10.0.0.1/24\""),
        "only the bad token: {message}"
    );
    assert_eq!(container_count(&filter), 0, "nothing created");
}

#[test]
fn missing_image_fails_as_it_does_without_the_proxy() {
    let scope = Scope::new();
    let label = scope.label();
    let proxy = Proxy::start_weave(&[]);
    let args = [
        "run",
        "--label",
        &label,
        "weave-test-no-such-image:1",
        "true",
    ];
    let direct = Docker::daemon().run(&args);
    let proxied = proxy.docker().run(&args);
    assert_ne!(direct.code, 0, "{direct:#?}");
    assert!(
        direct.stderr.contains("Unable to find image"),
        "the CLI tried to pull: {direct:#?}"
    );
    // Pull errors may quote a resolver's ephemeral source port; nothing else may differ.
    let normalise = |text: &str| {
        text.split(|c: char| c.is_whitespace())
            .map(|word| if word.contains("->") { "<addr>" } else { word })
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(proxied.code, direct.code);
    assert_eq!(
        normalise(&proxied.stderr),
        normalise(&direct.stderr),
        "{proxied:#?} vs {direct:#?}"
    );
    assert_eq!(proxied.stdout, direct.stdout);
    assert_eq!(container_count(&format!("label={label}")), 0);
}

#[test]
fn exec_waits_for_the_network_in_weave_containers_only() {
    let image = test_image();
    let scope = Scope::new();
    let mut proxy = Proxy::start_weave(&[]);
    let daemon = Docker::daemon();
    let weave = start_unattached(&mut proxy, &scope, "weave", &[], &image, &["sleep", "300"]);
    // The proxy back, for the exec rewrite; with no router it cannot attach the container.
    proxy.restart();
    let docker = proxy.docker();
    // Before the attach an exec waits too.
    docker
        .run(&["exec", "-d", &weave, "touch", "/tmp/ran"])
        .ok();
    let ran = || daemon.run(&["exec", &weave, "test", "-e", "/tmp/ran"]).code == 0;
    holds_for("the exec waiting", STILL, || !ran());
    let _attach = FakeAttach::full(&weave);
    eventually("the exec to run after the attach", PATIENCE, || {
        ran().then_some(())
    });
    let out = docker.run(&["exec", &weave, "sh", "-c", "echo $0"]).ok();
    assert_eq!(out.stdout, "sh\n", "argv[0] is the program's own");
    let before = exec_ids(&weave).len();
    docker.run(&["exec", "-d", &weave, "sleep", "30"]).ok();
    let ids = exec_ids(&weave);
    assert_eq!(ids.len(), before + 1, "{ids:?}");
    let exec = exec_inspect_direct(ids.last().unwrap());
    assert_eq!(
        (
            &exec["ProcessConfig"]["entrypoint"],
            &exec["ProcessConfig"]["arguments"]
        ),
        (&json!("/w/w"), &json!(["sleep", "30"])),
        "{exec:#}"
    );

    let plain = scope.name("plain");
    docker.run_detached(
        &scope,
        "plain",
        &["-e", "WEAVE_CIDR=none"],
        &image,
        &["sleep", "300"],
    );
    let out = run_unattached(&docker, &["exec", &plain, "sh", "-c", "echo $0"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "sh\n"), "{out:#?}");
    docker.run(&["exec", "-d", &plain, "sleep", "30"]).ok();
    let ids = exec_ids(&plain);
    let exec = exec_inspect_direct(ids.last().unwrap());
    assert_eq!(
        (
            &exec["ProcessConfig"]["entrypoint"],
            &exec["ProcessConfig"]["arguments"]
        ),
        (&json!("sleep"), &json!(["30"])),
        "{exec:#}"
    );
}

#[test]
fn no_default_ipalloc_rewrites_only_containers_that_ask() {
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start_with(weave_tests::Weaver::builder(), &["--no-default-ipalloc"]);
    let docker = host.docker();
    let label = scope.label();
    let plain = scope.name("plain");
    let out = run_unattached(
        &docker,
        &[
            "run", "--name", &plain, "--label", &label, &image, "echo", "ok",
        ],
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"), "{out:#?}");
    assert_untouched(&inspect_direct(&plain));

    let asked = scope.name("asked");
    docker.run_detached(
        &scope,
        "asked",
        &["-e", "WEAVE_CIDR="],
        &image,
        &["echo", "ok"],
    );
    assert_rewritten(&inspect_direct(&asked));
    assert_eq!(exit_code(&asked), 0);
    assert_eq!(daemon_logs(&asked), "ok\n");
}

fn daemon_logs(container: &str) -> String {
    Docker::daemon().run(&["logs", container]).ok().stdout
}

#[test]
fn non_root_image_runs_as_its_user_after_the_attach() {
    let scope = Scope::new();
    let app = build_image(&scope, "user", "USER 1000");
    let host = WeaveHost::start();
    let out = run_attached(
        &host.docker(),
        &scope,
        "user",
        &[],
        &app,
        &["id", "-u"],
        None,
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "1000\n"), "{out:#?}");
    assert_rewritten(&inspect_direct(&scope.name("user")));
}

#[test]
fn committed_image_gets_weavewait_once() {
    let image = test_image();
    let scope = Scope::new();
    let grep = build_image(&scope, "grep", "ENTRYPOINT [\"grep\"]");
    let host = WeaveHost::start();
    let docker = host.docker();
    let daemon = Docker::daemon();
    let label = scope.label();

    let out = run_attached(
        &docker,
        &scope,
        "orig",
        &[],
        &image,
        &["echo", "first"],
        None,
    );
    assert_eq!(out.stdout, "first\n", "{out:#?}");
    let committed = scope.name("committed");
    let change = format!("LABEL {label}");
    daemon
        .run(&[
            "commit",
            "--change",
            &change,
            &scope.name("orig"),
            &committed,
        ])
        .ok();
    let image_ep = inspect_direct(&committed)["Config"]["Entrypoint"].clone();
    assert_eq!(image_ep, json!(["/w/w"]), "the committed image keeps /w/w");

    for (what, cmd, want) in [
        ("again", &[][..], "first\n"),
        ("other", &["echo", "second"][..], "second\n"),
    ] {
        let out = run_attached(&docker, &scope, what, &[], &committed, cmd, None);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, want),
            "{what}: {out:#?}"
        );
        let truth = inspect_direct(&scope.name(what));
        assert_rewritten(&truth);
        assert_eq!(entrypoint(&truth), ["/w/w"], "{what}");
    }

    let grep_orig = scope.name("grep-orig");
    docker
        .run(&[
            "create", "--name", &grep_orig, "--label", &label, &grep, "x",
        ])
        .ok();
    let grep_committed = scope.name("grep-committed");
    daemon
        .run(&["commit", "--change", &change, &grep_orig, &grep_committed])
        .ok();
    let name = scope.name("grep-again");
    docker
        .run(&[
            "create",
            "--name",
            &name,
            "--label",
            &label,
            &grep_committed,
            "y",
        ])
        .ok();
    let truth = inspect_direct(&name);
    assert_rewritten(&truth);
    assert_eq!(entrypoint(&truth), ["/w/w", "grep"]);
    assert_eq!(truth["Config"]["Cmd"], json!(["y"]));
}

/// `WEAVE_CIDR` set by the image's `ENV` is in the container's environment just as `-e` is: the
/// exec rewrite (which reads the created container) already honours it, so create must too, or
/// an image saying `none` makes containers that wait for an attach nothing will ever make.
#[test]
fn weave_cidr_from_the_image_env_counts_like_the_containers_own() {
    let scope = Scope::new();
    let none = build_image(&scope, "none", "ENV WEAVE_CIDR=none");
    let asks = build_image(&scope, "asks", "ENV WEAVE_CIDR=10.2.1.1/24");
    let label = scope.label();

    let proxy = Proxy::start_weave(&[]);
    let name = scope.name("none");
    proxy
        .docker()
        .run(&[
            "create", "--name", &name, "--label", &label, &none, "echo", "ok",
        ])
        .ok();
    assert_untouched(&inspect_direct(&name));

    let proxy = Proxy::start_weave(&["--no-default-ipalloc"]);
    let name = scope.name("asks");
    proxy
        .docker()
        .run(&[
            "create", "--name", &name, "--label", &label, &asks, "echo", "ok",
        ])
        .ok();
    assert_rewritten(&inspect_direct(&name));
}

/// The proxy caches image configs, but a create always gets the config of the image its tag
/// names now: a tag re-pointed with `docker tag` or `docker build -t`, straight on the daemon,
/// is seen by the very next create through the proxy (the image events reach the proxy's
/// events stream before the re-pointing command has returned).
#[test]
fn a_retagged_image_gives_the_next_create_its_new_config() {
    let scope = Scope::new();
    let proxy = Proxy::start_weave(&[]);
    let tag = build_image(&scope, "retag", r#"CMD ["echo", "from-a"]"#);
    let other = build_image(&scope, "retag-b", r#"CMD ["echo", "from-b"]"#);
    let cmd_of = |what: &str| {
        create_through(&proxy, &scope, what, &[], &tag, &[]);
        inspect_direct(&scope.name(what))["Config"]["Cmd"].clone()
    };
    // Twice, so that the second is served from the cache if anything is.
    assert_eq!(cmd_of("a1"), json!(["echo", "from-a"]));
    assert_eq!(cmd_of("a2"), json!(["echo", "from-a"]));

    Docker::daemon().run(&["tag", &other, &tag]).ok();
    assert_eq!(cmd_of("b1"), json!(["echo", "from-b"]), "after docker tag");
    assert_eq!(cmd_of("b2"), json!(["echo", "from-b"]));

    let context = tempfile::tempdir().expect("a build context");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {}\nCMD [\"echo\", \"from-c\"]\n", test_image()),
    )
    .expect("Dockerfile written");
    Docker::daemon().build(&scope, &tag, context.path());
    assert_eq!(
        cmd_of("c1"),
        json!(["echo", "from-c"]),
        "after docker build -t"
    );
    // Through the proxy itself, the create does not wait for the event: the tag request holds
    // the cache's names until it is answered.
    proxy.docker().run(&["tag", &other, &tag]).ok();
    assert_eq!(
        cmd_of("b3"),
        json!(["echo", "from-b"]),
        "after docker tag through the proxy"
    );
}
