//! `weaver` against the real Docker daemon: `check-alive`, release on `destroy` and after `die`,
//! restarts that keep their address, the start-up reclaim and prune, the firewall rules that let
//! attached containers talk, and `weaver reset` run from a container through `--host-root`.
//!
//! Containers are named `wvt-<scope>-...`, labelled, and removed by the [`Scope`] guard; each
//! router has its own bridge and is reset by its guard.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weave_tests::netns::host_link;
use weave_tests::weaver::{self, ResetOnDrop, forward_rules};
use weave_tests::{Docker, DockerRelay, Scope, Weaver, eventually, http, test_image};

const RANGE: &str = "10.2.0.0/16";

/// A busybox container sleeping in `scope`; its full id.
fn sleeper(scope: &Scope, what: &str) -> String {
    Docker::daemon().run_detached(scope, what, &[], &test_image(), &["sleep", "600"])
}

fn docker(args: &[&str]) {
    Docker::daemon().run(args).ok();
}

fn pid_of(id: &str) -> i32 {
    let out = Docker::daemon()
        .run(&["inspect", "--format", "{{.State.Pid}}", id])
        .ok();
    out.out().parse().unwrap()
}

/// Gives the container `ethwe` on `bridge` with `cidrs`, as the proxy's attach does.
fn attach(id: &str, bridge: &str, cidrs: &[&str]) {
    let cidrs: Vec<Ipv4Net> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    let pid = pid_of(id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let process = weavenet::Process::pin(pid).unwrap();
    rt.block_on(weavenet::attach(&weavenet::AttachRequest {
        process: &process,
        bridge,
        cidrs: &cidrs,
        multicast_route: false,
    }))
    .unwrap();
}

fn allocate(weaver: &Weaver, id: &str) -> String {
    let (status, body) = weaver.request("POST", &format!("/ip/{id}?check-alive=true"), "");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `GET /ip/{id}` is empty; returns how long that took from `since`.
fn freed_after(weaver: &Weaver, id: &str, since: Instant, patience: Duration) -> Duration {
    eventually("the address to be freed", patience, || {
        weaver.lookup(id).is_empty().then(Instant::now)
    })
    .duration_since(since)
}

#[test]
fn check_alive_cancels_for_containers_that_do_not_run() {
    let scope = Scope::new();
    let weaver = Weaver::builder().range(RANGE).start();
    let running = sleeper(&scope, "running");
    let stopped = sleeper(&scope, "stopped");
    docker(&["stop", "-t", "0", &stopped]);

    assert_eq!(allocate(&weaver, &running), "10.2.0.1/16");
    let cancelled = (200, "cancelled".to_owned());
    for (method, path) in [
        ("POST", format!("/ip/{stopped}")),
        ("POST", format!("/ip/{stopped}/10.2.5.0/24")),
        ("PUT", format!("/ip/{stopped}/10.2.0.9/16")),
        ("POST", "/ip/0123456789ab-no-such-container".to_owned()),
    ] {
        // As the form field (curl -d) and as the query string.
        assert_eq!(
            weaver.request(method, &path, "check-alive=true"),
            cancelled,
            "{method} {path}"
        );
        assert_eq!(
            weaver.request(method, &format!("{path}?check-alive=true"), ""),
            cancelled,
            "{method} {path}"
        );
    }
    assert_eq!(weaver.lookup(&stopped), "");
    // Without check-alive nobody asks Docker.
    let (status, body) = weaver.request("POST", &format!("/ip/{stopped}"), "");
    assert_eq!((status, body.as_str()), (200, "10.2.0.2/16"));
}

#[test]
fn docker_rm_frees_the_address_at_once() {
    let scope = Scope::new();
    let weaver = Weaver::builder().range(RANGE).start();
    let id = sleeper(&scope, "rm");
    let kept = sleeper(&scope, "kept");
    assert_eq!(allocate(&weaver, &id), "10.2.0.1/16");
    // An entry made without check-alive is not the container's to lose.
    weaver.request("PUT", &format!("/ip/{kept}/10.2.0.9/16"), "");

    let started = Instant::now();
    docker(&["rm", "-f", &id]);
    let returned = started.elapsed();
    let freed = freed_after(&weaver, &id, started, Duration::from_secs(5));
    eprintln!("docker rm -f returned after {returned:?}; address freed after {freed:?}");
    assert!(freed < Duration::from_secs(2), "freed only after {freed:?}");
    assert!(
        weaver
            .log()
            .contains("released addresses: container destroyed")
    );

    // The freed address is the next one handed out.
    let next = sleeper(&scope, "next");
    assert_eq!(allocate(&weaver, &next), "10.2.0.1/16");
    docker(&["rm", "-f", &kept]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(weaver.lookup(&kept), "10.2.0.9/16");
}

#[test]
fn a_restart_within_the_grace_period_keeps_the_address() {
    let scope = Scope::new();
    let weaver = Weaver::builder()
        .range(RANGE)
        .arg("--dead-timeout")
        .arg("3")
        .start();
    let id = sleeper(&scope, "restart");
    assert_eq!(allocate(&weaver, &id), "10.2.0.1/16");

    docker(&["kill", &id]);
    eventually("the die event", Duration::from_secs(5), || {
        weaver.log().contains("container died").then_some(())
    });
    docker(&["start", &id]);
    eventually("the start event", Duration::from_secs(5), || {
        weaver.log().contains("started again").then_some(())
    });
    // Past the grace period (3 s, checked every 1.5 s) the address is still the container's.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(weaver.lookup(&id), "10.2.0.1/16");
    assert_eq!(allocate(&weaver, &id), "10.2.0.1/16");

    // `docker restart` too.
    docker(&["restart", "-t", "0", &id]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(weaver.lookup(&id), "10.2.0.1/16");
}

#[test]
fn a_dead_container_loses_its_address_after_the_grace_period() {
    let scope = Scope::new();
    let weaver = Weaver::builder()
        .range(RANGE)
        .arg("--dead-timeout")
        .arg("2")
        .start();
    let id = sleeper(&scope, "dies");
    let bystander = sleeper(&scope, "bystander");
    assert_eq!(allocate(&weaver, &id), "10.2.0.1/16");
    weaver.request("POST", &format!("/ip/{bystander}"), "");

    let started = Instant::now();
    docker(&["kill", &id]);
    docker(&["kill", &bystander]);
    eventually("the die event", Duration::from_secs(5), || {
        weaver.log().contains("container died").then_some(())
    });
    assert_eq!(
        weaver.lookup(&id),
        "10.2.0.1/16",
        "freed before the grace period"
    );
    let freed = freed_after(&weaver, &id, started, Duration::from_secs(10));
    eprintln!("with --dead-timeout 2 the address was freed {freed:?} after docker kill");
    assert!(
        freed >= Duration::from_secs(2),
        "freed after only {freed:?}"
    );
    assert!(freed < Duration::from_secs(5), "freed only after {freed:?}");
    // Made without check-alive: kept.
    assert_eq!(weaver.lookup(&bystander), "10.2.0.2/16");
    let log = weaver.log();
    assert!(
        log.contains("released addresses: container dead for longer than the grace period"),
        "{log}"
    );
}

#[test]
fn a_restarted_router_keeps_running_containers_and_prunes_the_rest() {
    let scope = Scope::new();
    let mut weaver = Weaver::builder().range(RANGE).start();
    let bridge = weaver.bridge().to_owned();
    let stays = sleeper(&scope, "stays");
    let removed = sleeper(&scope, "removed");
    let stopped = sleeper(&scope, "stopped");
    assert_eq!(allocate(&weaver, &stays), "10.2.0.1/16");
    assert_eq!(allocate(&weaver, &removed), "10.2.0.2/16");
    let (status, _) = weaver.request(
        "PUT",
        &format!("/ip/{stopped}/10.9.9.9/24?check-alive=true"),
        "",
    );
    assert_eq!(status, 204);
    attach(&stays, &bridge, &["10.2.0.1/16", "10.9.8.7/24"]);
    attach(&removed, &bridge, &["10.2.0.2/16"]);

    // While the router is down, one container is removed and one stopped.
    assert!(weaver.stop());
    docker(&["rm", "-f", &removed]);
    docker(&["stop", "-t", "0", &stopped]);
    weaver.restart();
    assert_eq!(weaver.lookup(&stays), "10.2.0.1/16");
    assert_eq!(weaver.lookup(&removed), "");
    let (_, list) = weaver.request("GET", "/ip", "");
    assert!(!list.contains(&stopped), "{list}");
    // The second address found on its interface is now recorded too.
    assert!(list.contains("10.9.8.7/24"), "{list}");

    // With the saved state lost, the addresses come back from the interfaces.
    assert!(weaver.stop());
    std::fs::remove_file(weaver.data_dir().join("ipam.json")).unwrap();
    weaver.restart();
    assert_eq!(weaver.lookup(&stays), "10.2.0.1/16");
    let log = weaver.log();
    assert!(log.contains("reclaimed=2"), "{log}");
    let fresh = sleeper(&scope, "fresh");
    assert_eq!(allocate(&weaver, &fresh), "10.2.0.2/16");
}

#[test]
fn attached_containers_talk_only_through_the_bridge_rule() {
    let scope = Scope::new();
    let weaver = Weaver::builder().range(RANGE).start();
    let bridge = weaver.bridge().to_owned();
    let a = sleeper(&scope, "a");
    let b = sleeper(&scope, "b");
    attach(&a, &bridge, &[&allocate(&weaver, &a)]);
    let b_cidr: Ipv4Net = allocate(&weaver, &b).parse().unwrap();
    attach(&b, &bridge, &[&b_cidr.to_string()]);
    let ping = || ping(&a, b_cidr.addr());

    assert!(ping(), "no ping with the router's rules in place");
    let iptables = router::iptables::HostIptables::new("/".as_ref(), &weaver::binary())
        .with_docker_bridge(&weaver::docker_bridge());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let removed = rt.block_on(iptables.remove(&bridge)).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(
        !ping(),
        "ping without the rule: Docker's FORWARD policy should drop it"
    );
    let added = rt.block_on(iptables.ensure(&bridge)).unwrap();
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(ping(), "no ping after the rules were added back");
    assert!(rt.block_on(iptables.ensure(&bridge)).unwrap().is_empty());
}

/// One ping from inside `from` (busybox's, with Docker's default NET_RAW).
fn ping(from: &str, to: Ipv4Addr) -> bool {
    Docker::daemon()
        .run(&["exec", from, "ping", "-c", "1", "-W", "2", &to.to_string()])
        .code
        == 0
}

/// `weaver reset --host-root /host` in a container with the host's `/` mounted read-only runs the
/// host's iptables chrooted (the least-privilege launch: NET_ADMIN, NET_RAW, no --privileged).
#[test]
fn reset_from_a_container_uses_the_hosts_iptables_through_host_root() {
    let scope = Scope::new();
    let mut weaver = Weaver::builder().range(RANGE).start();
    let bridge = weaver.bridge().to_owned();
    assert!(weaver.stop());
    assert!(forward_rules().contains(&format!("-i {bridge} -o {bridge} -j ACCEPT")));

    let mount = format!("{}:/weaver:ro", weaver::binary().display());
    let label = scope.label();
    let name = scope.name("reset");
    let out = Docker::daemon().run(&[
        "run",
        "--rm",
        "--name",
        &name,
        "--label",
        &label,
        "--net=host",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        "-v",
        "/:/host:ro",
        "-v",
        &mount,
        &test_image(),
        "/weaver",
        "reset",
        "--weave-bridge",
        &bridge,
        "--data-dir",
        "/tmp/none",
        "--host-root",
        "/host",
        "--docker-bridge",
        &weaver::docker_bridge(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("removed iptables rule: "), "{out:?}");
    assert!(
        out.stdout.contains(&format!("removed bridge {bridge}")),
        "{out:?}"
    );
    assert!(!forward_rules().contains(&bridge), "{}", forward_rules());
    assert!(host_link(&bridge).is_none());
}

/// Docker reached over `tcp://`, and lost for a while: the watcher re-subscribes with backoff and
/// re-syncs, so a container removed meanwhile (its `destroy` never seen) still loses its address
/// after the grace period, and one still running keeps its own.
#[test]
fn events_missed_while_docker_was_unreachable_are_caught_up() {
    let scope = Scope::new();
    let relay = DockerRelay::start();
    let url = relay.url();
    let weaver = Weaver::builder()
        .range(RANGE)
        .docker_api(&url)
        .arg("--dead-timeout")
        .arg("2")
        .dns_listen("127.0.0.1:0")
        .start();
    let gone = sleeper(&scope, "gone");
    let stays = sleeper(&scope, "stays");
    assert_eq!(allocate(&weaver, &gone), "10.2.0.1/16");
    assert_eq!(allocate(&weaver, &stays), "10.2.0.2/16");
    for (id, ip, name) in [(&gone, "10.2.0.1", "gone"), (&stays, "10.2.0.2", "stays")] {
        let form = format!("fqdn={name}.weave.local");
        let (status, body) = weaver.request("PUT", &format!("/name/{id}/{ip}"), &form);
        assert_eq!(status, 204, "{body}");
    }
    let names = || weaver.request("GET", "/name", "").1;

    relay.down();
    eventually("the event stream to fail", Duration::from_secs(5), || {
        weaver.log().contains("re-subscribing").then_some(())
    });
    docker(&["rm", "-f", &gone]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        weaver.lookup(&gone),
        "10.2.0.1/16",
        "nothing to know it by yet"
    );
    relay.up();

    let since = Instant::now();
    let freed = freed_after(&weaver, &gone, since, Duration::from_secs(30));
    eprintln!(
        "address of a container removed during the outage freed {freed:?} after Docker came back"
    );
    let log = weaver.log();
    assert!(log.contains("container no longer runs"), "{log}");
    assert_eq!(weaver.lookup(&stays), "10.2.0.2/16");
    // Its name went at the re-sync; the running one's stays.
    let listed = names();
    assert!(!listed.contains("gone.weave.local"), "{listed}");
    assert!(listed.contains("stays.weave.local"), "{listed}");
    // Live events flow again after the reconnect.
    docker(&["rm", "-f", &stays]);
    freed_after(&weaver, &stays, Instant::now(), Duration::from_secs(5));
}

/// The router as `weave launch` runs it: in a `--net=host --pid=host` container with explicit
/// capabilities (no `--privileged`), the host's `/` read-only at `/host`. It sets up the bridge and
/// rules, answers `check-alive` through the mounted socket, and after a restart with its saved
/// state lost reads a running container's addresses from inside its network namespace.
#[test]
fn weaver_in_a_least_privilege_container() {
    let scope = Scope::new();
    let data = tempfile::tempdir().unwrap();
    let bridge = weaver::unique_bridge();
    // Dropped before `scope` removes the router's container: harmless, a running router adds its
    // rules only at start.
    let _reset = ResetOnDrop {
        bridge: bridge.clone(),
        data: data.path().to_owned(),
    };
    let addr = weaver::free_tcp_addr();
    let socket = weave_tests::daemon::target_socket();
    let socket = socket.to_str().unwrap();
    let mounts = [
        "/:/host:ro".to_owned(),
        format!("{socket}:/var/run/docker.sock"),
        format!("{}:/weaver:ro", weaver::binary().display()),
        format!("{}:/data", data.path().display()),
    ];
    let mut args = vec!["--net=host", "--pid=host"];
    for cap in ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"] {
        args.extend(["--cap-add", cap]);
    }
    for mount in &mounts {
        args.extend(["-v", mount]);
    }
    let image = test_image();
    let router = Docker::daemon().run_detached(
        &scope,
        "weaver",
        &args,
        &image,
        &[
            "/weaver",
            "--http-addr",
            &addr,
            "--weave-bridge",
            &bridge,
            "--data-dir",
            "/data",
            "--host-root",
            "/host",
            "--ipalloc-range",
            RANGE,
            "--no-dns",
        ],
    );
    let ready = || {
        eventually("the containerised weaver", Duration::from_secs(30), || {
            http::request(&addr, "GET", "/status", "")
                .ok()
                .filter(|(s, _)| *s == 200)
        })
    };
    let logs = || Docker::daemon().run(&["logs", &router]).stderr;
    ready();
    assert!(host_link(&bridge).is_some(), "{}", logs());
    assert!(
        forward_rules().contains(&format!("-i {bridge} -o {bridge} -j ACCEPT")),
        "{}",
        logs()
    );

    let app = sleeper(&scope, "app");
    let stopped = sleeper(&scope, "stopped");
    docker(&["stop", "-t", "0", &stopped]);
    let request = |method: &str, path: &str| http::request(&addr, method, path, "").unwrap();
    let (_, cidr) = request("POST", &format!("/ip/{app}?check-alive=true"));
    assert_eq!(cidr, "10.2.0.1/16");
    assert_eq!(
        request("POST", &format!("/ip/{stopped}?check-alive=true")),
        (200, "cancelled".to_owned())
    );
    attach(&app, &bridge, &[&cidr]);

    docker(&["stop", &router]);
    std::fs::remove_file(data.path().join("ipam.json")).unwrap();
    docker(&["start", &router]);
    ready();
    assert_eq!(
        request("GET", &format!("/ip/{app}")),
        (200, cidr.clone()),
        "{}",
        logs()
    );
    assert!(logs().contains("reclaimed=1"), "{}", logs());
}
