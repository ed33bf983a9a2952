//! The shipped weavewait: the three static release binaries that `scripts/build-weavewait.sh`
//! produces, checked for static linking and size, then run in real containers as Docker runs
//! them: as PID 1, stopped while waiting, attached from outside as the proxy attaches, as a
//! non-root user, and in a FROM-scratch image.
//!
//! The binaries are built into their own target directory (`target/weavewait-static`): a nested
//! `cargo build` in the directory of the running test build would wait for its lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weave_tests::{Docker, Scope, eventually, target_daemon, test_image};

/// Size budget for each binary (static glibc alone is about 1.1 MB).
const MAX_SIZE: u64 = 2 * 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(20);

/// The directory holding `w/w`, `w-nomcast/w` and `w-noop/w`, built once per test process.
fn volume() -> &'static Path {
    static VOLUME: OnceLock<PathBuf> = OnceLock::new();
    VOLUME.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate sits in the workspace");
        let target = root.join("target/weavewait-static");
        let out = target.join("volume");
        let started = Instant::now();
        let build = Command::new(root.join("scripts/build-weavewait.sh"))
            .arg(&out)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("scripts/build-weavewait.sh runs");
        assert!(
            build.status.success(),
            "scripts/build-weavewait.sh failed:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        eprintln!("static weavewait build: {:?}", started.elapsed());
        out
    })
}

fn binary(variant: &str) -> String {
    volume()
        .join(variant)
        .join("w")
        .to_str()
        .expect("the workspace path is UTF-8")
        .to_owned()
}

#[test]
fn the_binaries_are_static_and_small() {
    for variant in ["w", "w-nomcast", "w-noop"] {
        let path = binary(variant);
        let file = Command::new("file")
            .arg(&path)
            .output()
            .expect("`file` is installed (scripts/prereqs.sh)");
        let description = String::from_utf8_lossy(&file.stdout);
        assert!(
            description.contains("statically linked") || description.contains("static-pie linked"),
            "{description}"
        );
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!("{variant}/w: {size} bytes");
        assert!(size < MAX_SIZE, "{variant}/w is {size} bytes");
    }
}

/// Starts `image` detached with the volume's `variant` at `/w` (read-only, as the proxy binds
/// it), no network, and `/w` prepended to `command`; returns the container name.
fn start(
    scope: &Scope,
    docker: &Docker,
    variant: &str,
    image: &str,
    extra: &[&str],
    command: &[&str],
) -> String {
    let name = scope.name(variant);
    let bind = format!("{}:/w:ro", binary(variant));
    let label = scope.label();
    let mut args = vec![
        "run",
        "-d",
        "--label",
        &label,
        "--name",
        &name,
        "--network",
        "none",
        "-v",
        &bind,
    ];
    args.extend_from_slice(extra);
    args.push(image);
    args.push("/w");
    args.extend_from_slice(command);
    docker.run(&args).ok();
    name
}

/// The container's PID on this host, once weavewait in it has blocked its signals (from then on
/// a `docker stop` reaches it), checking that it is still weavewait.
fn waiting_pid(docker: &Docker, name: &str) -> u32 {
    eventually("weavewait waiting in the container", PATIENCE, || {
        let pid: u32 = docker
            .run(&["inspect", "-f", "{{.State.Pid}}", name])
            .out()
            .parse()
            .ok()
            .filter(|&p| p > 0)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .map(str::to_owned)
        };
        let blocked = u64::from_str_radix(&field("SigBlk:")?, 16).ok()?;
        let term_blocked = blocked & (1 << (libc::SIGTERM - 1)) != 0;
        (field("Name:")? == "w" && term_blocked).then_some(pid)
    })
}

fn exit_code(docker: &Docker, name: &str) -> String {
    docker
        .run(&["inspect", "-f", "{{.State.ExitCode}}", name])
        .out()
        .to_owned()
}

#[test]
fn docker_stop_ends_a_waiting_container_at_once() {
    let image = test_image();
    let scope = Scope::new();
    let docker = Docker::new(target_daemon());
    let name = start(&scope, &docker, "w", &image, &[], &["sleep", "100"]);
    waiting_pid(&docker, &name);
    assert_eq!(docker.run(&["logs", &name]).out(), "", "still waiting");

    let started = Instant::now();
    docker.run(&["stop", "-t", "10", &name]).ok();
    let took = started.elapsed();
    eprintln!("docker stop of a waiting container: {took:?}");
    // A PID 1 that ignored SIGTERM would be killed only after the 10 s grace period.
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(exit_code(&docker, &name), "143");
}

/// Moves a veth into the container's network namespace as `ethwe`, brings it up and adds the
/// multicast route: what the proxy's attach does. The caller deletes `host_end`.
fn attach(pid: u32, host_end: &str, peer: &str) {
    let netns = format!("--net=/proc/{pid}/ns/net");
    let steps: [&[&str]; 6] = [
        &[
            "ip", "link", "add", host_end, "type", "veth", "peer", "name", peer,
        ],
        &["ip", "link", "set", host_end, "up"],
        &["ip", "link", "set", peer, "netns", &pid.to_string()],
        &[
            "nsenter", &netns, "ip", "link", "set", peer, "name", "ethwe",
        ],
        &["nsenter", &netns, "ip", "link", "set", "ethwe", "up"],
        &[
            "nsenter",
            &netns,
            "ip",
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "ethwe",
        ],
    ];
    for step in steps {
        let out = Command::new(step[0]).args(&step[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Deletes a host veth end (and so its peer) on drop.
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn a_non_root_container_runs_once_attached() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: attaching a veth needs root");
        return;
    }
    let image = test_image();
    let scope = Scope::new();
    let docker = Docker::new(target_daemon());
    let script = "id -u; echo pid $$; grep -E '^Sig(Blk|Ign)' /proc/self/status; \
                  cat /sys/class/net/ethwe/operstate";
    let name = start(
        &scope,
        &docker,
        "w",
        &image,
        &["--user", "1000", "-e", "MARK=kept"],
        &["sh", "-c", &format!("{script}; echo $MARK")],
    );
    let pid = waiting_pid(&docker, &name);
    assert_eq!(docker.run(&["logs", &name]).out(), "", "still waiting");

    let suffix = format!("{:x}{}", std::process::id(), pid % 10_000);
    let host_end = HostLink(format!("wvdh{suffix}"));
    attach(pid, &host_end.0, &format!("wvdp{suffix}"));
    let code = eventually("the container to exit", PATIENCE, || {
        let state = docker.run(&["inspect", "-f", "{{.State.Status}}", &name]);
        (state.out() == "exited").then(|| exit_code(&docker, &name))
    });
    let logs = docker.run(&["logs", &name]);
    assert_eq!(code, "0", "{logs:?}");
    assert_eq!(
        logs.stdout,
        "1000\npid 1\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nup\nkept\n"
    );
    assert_eq!(logs.stderr, "");
}

#[test]
fn a_scratch_image_with_only_the_binary_and_busybox() {
    let busybox_image = test_image();
    let scope = Scope::new();
    let docker = Docker::new(target_daemon());
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(binary("w-noop"), context.path().join("w")).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {busybox_image} AS busybox\n\
             FROM scratch\n\
             COPY --from=busybox /bin/busybox /bin/busybox\n\
             COPY w /w\n\
             ENTRYPOINT [\"/w\"]\n"
        ),
    )
    .unwrap();
    let tag = format!("{}:latest", scope.name("scratch"));
    let label = scope.label();
    docker
        .run(&[
            "build",
            "-q",
            "--label",
            &label,
            "-t",
            &tag,
            context.path().to_str().unwrap(),
        ])
        .ok();

    let run = |extra: &[&str], command: &[&str]| {
        let mut args = vec!["run", "--rm", "--label", &label];
        args.extend_from_slice(extra);
        args.push(&tag);
        args.extend_from_slice(command);
        docker.run(&args)
    };
    // PATH lookup (Docker's default PATH finds /bin/busybox), PID 1, as root and as a uid that
    // the image has no passwd entry for.
    for user in ["0", "4242"] {
        let out = run(
            &["--user", user],
            &["busybox", "sh", "-c", "echo $$ $(busybox id -u)"],
        );
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (0, format!("1 {user}\n").as_str(), ""),
            "as {user}"
        );
    }
    let missing = run(&[], &["nosuchprogram"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert_eq!(
        missing.stderr,
        "weavewait: exec: \"nosuchprogram\": executable file not found in $PATH\n"
    );
    let usage = run(&[], &[]);
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.starts_with("weavewait: usage: "), "{usage:?}");
}
