//! Attach, end to end: `weaver` and `weaveproxy` running, containers started through the proxy
//! (or behind its back) come up with `ethwe` on the router's bridge, with the addresses
//! `WEAVE_CIDR` asks for, keep them across restarts, and leave nothing behind when they go or
//! when an attach fails.
//!
//! Each test has its own router ([`WeaveHost`]): its own bridge, port and data directory, so
//! `GET /ip` and the bridge's ports show exactly what that test's containers hold.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use weave_tests::engine;
use weave_tests::http::Request;
use weave_tests::netns::{
    Ethwe, assert_pings, ethwe, ethwe_of_pid, full_id, host_link, host_veth, in_subnet, is_running,
    running_pid,
};
use weave_tests::{
    Docker, Output, Proxy, Scope, WeaveHost, Weaver, eventually, holds_for, test_image,
};

/// How long something driven by Docker events (a restart policy, the proxy's watcher) may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a "nothing happens" condition is watched.
const STILL: Duration = Duration::from_millis(1500);
/// The attach timeout given to proxies in the failure tests.
const ATTACH_TIMEOUT_SECS: u64 = 5;

// ---------------------------------------------------------------------------------------------
// Private helpers.

/// `docker run -d FLAGS busybox sleep 300` through `docker`, named `scope.name(what)`; returns
/// the name.
fn run_sleeper(docker: &Docker, scope: &Scope, what: &str, flags: &[&str]) -> String {
    docker.run_detached(scope, what, flags, &test_image(), &["sleep", "300"]);
    scope.name(what)
}

/// `docker run -d ...` expected to fail: the CLI's output, and how long it took.
fn run_failing(docker: &Docker, scope: &Scope, what: &str, flags: &[&str]) -> (Output, Duration) {
    let name = scope.name(what);
    let label = scope.label();
    let image = test_image();
    let mut args = vec!["run", "-d", "--name", &name, "--label", &label];
    args.extend_from_slice(flags);
    args.extend([image.as_str(), "sleep", "300"]);
    let started = Instant::now();
    let out = docker.run(&args);
    let took = started.elapsed();
    assert_ne!(out.code, 0, "{what} should not start: {out:#?}");
    (out, took)
}

/// The container's `ethwe`, which must be there (and up, with its route) right now.
#[track_caller]
fn attached(container: &str) -> Ethwe {
    let ethwe = ethwe(container).unwrap_or_else(|| {
        panic!(
            "{container} has no ethwe (running: {})",
            is_running(container)
        )
    });
    assert!(ethwe.up, "{container}: ethwe is down: {ethwe:?}");
    assert!(
        !ethwe.addrs.is_empty(),
        "{container}: no address: {ethwe:?}"
    );
    ethwe
}

/// Waits until the running container has an `ethwe` that is up with an address and the
/// multicast route (the attach's last step); returns it with the pid it belongs to.
#[track_caller]
fn eventually_attached(container: &str) -> (u32, Ethwe) {
    eventually(&format!("{container} to be attached"), PATIENCE, || {
        let pid = running_pid(container)?;
        let ethwe = ethwe_of_pid(pid)?;
        (ethwe.up && !ethwe.addrs.is_empty() && ethwe.multicast_route).then_some((pid, ethwe))
    })
}

/// Asserts the running container is on the bridge through exactly one veth, `vethwepl<pid>`,
/// and that no other veth of it is left there.
#[track_caller]
fn assert_one_port(weaver: &Weaver, container: &str) {
    let pid = running_pid(container).expect("running");
    let veth = host_veth(pid);
    let link = host_link(&veth).unwrap_or_else(|| panic!("{veth} missing"));
    assert_eq!(link["master"], weaver.bridge(), "{veth}: {link:#}");
    let ports = weaver.container_ports();
    assert_eq!(ports.iter().filter(|p| **p == veth).count(), 1, "{ports:?}");
}

/// After a failed start: eventually `GET /ip` has no entry for the container and the bridge
/// has exactly the container ports it had before.
#[track_caller]
fn assert_left_nothing(weaver: &Weaver, container: &str, ports_before: &[String]) {
    let id = full_id(container);
    let before: BTreeSet<_> = ports_before.iter().cloned().collect();
    eventually(
        &format!("no address and no veth left for {container}"),
        Duration::from_secs(10),
        || {
            let owned = weaver.owned();
            let ports: BTreeSet<_> = weaver.container_ports().into_iter().collect();
            (!owned.contains_key(&id) && ports == before).then_some(())
        },
    );
    assert!(!is_running(container), "{container} is left running");
}

/// Runs `total` calls of `cycle` spread over `clients` threads; returns how long each took.
fn in_parallel(
    clients: usize,
    total: usize,
    cycle: impl Fn() -> Duration + Copy + Send,
) -> Vec<Duration> {
    let started = Instant::now();
    std::thread::scope(|threads| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                threads.spawn(move || {
                    (0..total / clients)
                        .map(|i| {
                            if client == 0 && i % 50 == 0 && i > 0 {
                                eprintln!(
                                    "{} cycles after {:.1}s",
                                    i * clients,
                                    started.elapsed().as_secs_f64()
                                );
                            }
                            cycle()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a cycling client"))
            .collect()
    })
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Mean, p50 and p99 of a set of durations, as text.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let n = times.len();
    let mean = times.iter().sum::<Duration>() / u32::try_from(n).expect("few samples");
    format!(
        "n={n} mean={}ms p50={}ms p99={}ms max={}ms",
        ms(mean),
        ms(times[n / 2]),
        ms(times[(n * 99 / 100).min(n - 1)]),
        ms(times[n - 1])
    )
}

// ---------------------------------------------------------------------------------------------
// Addresses from WEAVE_CIDR.

/// The mission line: the program itself sees `ethwe` with an address in the subnet it asked
/// for, and `--rm` gives the address back at once.
#[test]
fn mission_line_prints_an_address_in_the_requested_subnet() {
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start();
    let label = scope.label();
    let out = host
        .docker()
        .run(&[
            "run",
            "--rm",
            "--label",
            &label,
            "-e",
            "WEAVE_CIDR=net:10.32.2.0/24",
            &image,
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ])
        .ok();
    let inet = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet address printed: {out:#?}"));
    assert!(inet.ends_with("/24"), "{inet}");
    assert!(in_subnet(inet, "10.32.2.0/24"), "{inet}");
    eventually(
        "the address to be released on destroy",
        Duration::from_secs(10),
        || host.weaver.owned().is_empty().then_some(()),
    );
}

#[test]
fn weave_cidr_address_is_given_exactly() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let name = run_sleeper(
        &host.docker(),
        &scope,
        "exact",
        &["-e", "WEAVE_CIDR=10.2.1.1/24"],
    );
    assert_eq!(attached(&name).addrs, ["10.2.1.1/24"]);
    assert_eq!(host.weaver.owned_by(&full_id(&name)), ["10.2.1.1/24"]);
}

/// An address and a subnet: two addresses on one `ethwe`. The router's range covers
/// 10.2.2.0/24, since Weave Net's router refuses subnets outside its range.
#[test]
fn two_tokens_give_two_addresses() {
    let scope = Scope::new();
    let host = WeaveHost::start_with(Weaver::builder().range("10.2.0.0/16"), &[]);
    let name = run_sleeper(
        &host.docker(),
        &scope,
        "two",
        &["-e", "WEAVE_CIDR=10.2.1.1/24 net:10.2.2.0/24"],
    );
    let addrs = attached(&name).addrs;
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(addrs.contains(&"10.2.1.1/24".to_owned()), "{addrs:?}");
    assert!(
        addrs
            .iter()
            .any(|a| a.ends_with("/24") && in_subnet(a, "10.2.2.0/24")),
        "{addrs:?}"
    );
    let owned: BTreeSet<_> = host.weaver.owned_by(&full_id(&name)).into_iter().collect();
    assert_eq!(owned, addrs.into_iter().collect(), "GET /ip agrees");
}

#[test]
fn default_allocation_is_in_the_default_range() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let name = run_sleeper(&host.docker(), &scope, "default", &[]);
    let addrs = attached(&name).addrs;
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert!(addrs[0].ends_with("/12"), "{addrs:?}");
    assert!(in_subnet(&addrs[0], "10.32.0.0/12"), "{addrs:?}");
    assert_eq!(host.weaver.owned_by(&full_id(&name)), addrs);
}

#[test]
fn no_default_ipalloc_leaves_containers_without_weave_cidr_alone() {
    let scope = Scope::new();
    let host = WeaveHost::start_with(Weaver::builder(), &["--no-default-ipalloc"]);
    let docker = host.docker();
    let plain = run_sleeper(&docker, &scope, "plain", &[]);
    assert!(is_running(&plain));
    assert_eq!(ethwe(&plain), None);
    // An empty WEAVE_CIDR still asks for the default.
    let asked = run_sleeper(&docker, &scope, "asked", &["-e", "WEAVE_CIDR="]);
    let addrs = attached(&asked).addrs;
    assert!(in_subnet(&addrs[0], "10.32.0.0/12"), "{addrs:?}");
    let owned = host.weaver.owned();
    assert_eq!(owned.keys().collect::<Vec<_>>(), [&full_id(&asked)]);
    assert_eq!(host.weaver.container_ports().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The network itself.

#[test]
fn containers_on_the_weave_network_ping_each_other_and_a_net_none_one_too() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let docker = host.docker();
    let a = run_sleeper(&docker, &scope, "a", &[]);
    let b = run_sleeper(&docker, &scope, "b", &[]);
    let none = run_sleeper(&docker, &scope, "none", &["--net=none"]);
    let ip = |c: &str| attached(c).addrs[0].split('/').next().unwrap().to_owned();
    let (ip_a, ip_b, ip_none) = (ip(&a), ip(&b), ip(&none));
    let ping = |from: &str, to: &str| assert_pings(&Docker::daemon(), from, to);
    ping(&a, &ip_b);
    ping(&b, &ip_a);
    ping(&none, &ip_a);
    ping(&a, &ip_none);
}

#[test]
fn host_network_and_weave_cidr_none_get_no_ethwe() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let docker = host.docker();
    let on_host = run_sleeper(&docker, &scope, "host", &["--net=host"]);
    let none = run_sleeper(&docker, &scope, "none", &["-e", "WEAVE_CIDR=none"]);
    for name in [&on_host, &none] {
        assert!(is_running(name), "{name}");
        assert_eq!(ethwe(name), None, "{name}");
    }
    assert!(host.weaver.owned().is_empty(), "{:?}", host.weaver.owned());
    assert_eq!(host.weaver.container_ports(), Vec::<String>::new());
}

#[test]
fn ethwe_takes_the_bridge_mtu() {
    let scope = Scope::new();
    let host = WeaveHost::start_with(Weaver::builder().mtu(8900), &[]);
    assert_eq!(host.weaver.bridge_mtu(), 8900);
    let name = run_sleeper(&host.docker(), &scope, "mtu", &[]);
    assert_eq!(attached(&name).mtu, 8900);
    let veth = host_link(&host_veth(running_pid(&name).unwrap())).unwrap();
    assert_eq!(veth["mtu"], 8900, "{veth:#}");
}

/// The proxy answers the start only once the attach is complete: right after `docker run -d`
/// returns, with no polling, `ethwe` is up with its address and the multicast route, and the
/// host end is `vethwepl<pid>`, up, on the bridge, in hairpin mode.
#[test]
fn start_is_answered_after_ethwe_is_up() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let name = run_sleeper(&host.docker(), &scope, "ordered", &[]);
    let ethwe = attached(&name);
    assert!(ethwe.multicast_route, "{ethwe:?}");
    let veth = host_veth(running_pid(&name).unwrap());
    let link = host_link(&veth).unwrap_or_else(|| panic!("no {veth} on the host"));
    assert_eq!(link["master"], host.weaver.bridge(), "{link:#}");
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link:#}"
    );
    assert_eq!(
        link["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{link:#}"
    );
    assert_one_port(&host.weaver, &name);
}

#[test]
fn no_multicast_route_attaches_without_the_route() {
    let scope = Scope::new();
    let host = WeaveHost::start_with(Weaver::builder(), &["--no-multicast-route"]);
    let out = host
        .docker()
        .run(&[
            "run",
            "--rm",
            "--label",
            &scope.label(),
            &test_image(),
            "ip",
            "-4",
            "route",
            "show",
            "dev",
            "ethwe",
        ])
        .ok();
    assert!(
        !out.stdout.is_empty(),
        "ethwe has its subnet route: {out:#?}"
    );
    assert!(!out.stdout.contains("224.0.0.0/4"), "{out:#?}");
}

// ---------------------------------------------------------------------------------------------
// Who attaches: the start request, the events stream, the proxy's own start.

#[test]
fn container_started_on_the_daemon_is_attached_from_the_events_stream() {
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start();
    let name = scope.name("direct");
    host.docker()
        .run(&[
            "create",
            "--name",
            &name,
            "--label",
            &scope.label(),
            &image,
            "sleep",
            "300",
        ])
        .ok();
    Docker::daemon().run(&["start", &name]).ok();
    let (_, ethwe) = eventually_attached(&name);
    assert!(in_subnet(&ethwe.addrs[0], "10.32.0.0/12"), "{ethwe:?}");
    assert_eq!(host.weaver.owned_by(&full_id(&name)), ethwe.addrs);
    assert_one_port(&host.weaver, &name);
}

/// A container started while no proxy runs waits in weavewait; the proxy attaches it when it
/// starts.
#[test]
fn running_weave_containers_are_attached_when_the_proxy_starts() {
    let image = test_image();
    let scope = Scope::new();
    let mut host = WeaveHost::start();
    let name = scope.name("early");
    host.docker()
        .run(&[
            "create",
            "--name",
            &name,
            "--label",
            &scope.label(),
            &image,
            "sh",
            "-c",
            "echo up; sleep 300",
        ])
        .ok();
    host.proxy.stop();
    Docker::daemon().run(&["start", &name]).ok();
    let logs = || Docker::daemon().run(&["logs", &name]).ok().stdout;
    holds_for("the container waiting unattached", STILL, || {
        is_running(&name) && ethwe(&name).is_none() && logs().is_empty()
    });
    host.proxy.restart();
    eventually_attached(&name);
    eventually("the program to run", PATIENCE, || {
        (logs() == "up\n").then_some(())
    });
    assert_one_port(&host.weaver, &name);
}

/// Several weave hosts (routers with their own bridges, proxies in front of them) can share one
/// daemon, as this suite's tests do: a proxy attaches only the containers it created, never
/// another proxy's, and never kills one it cannot attach.
#[test]
fn proxies_keep_to_their_own_containers() {
    let image = test_image();
    let scope = Scope::new();
    let mine = WeaveHost::start();
    let other = WeaveHost::start();
    let _routerless = Proxy::start_weave(&[]);
    let through = run_sleeper(&mine.docker(), &scope, "through", &[]);
    let direct = scope.name("direct");
    mine.docker()
        .run(&[
            "create",
            "--name",
            &direct,
            "--label",
            &scope.label(),
            &image,
            "sleep",
            "300",
        ])
        .ok();
    Docker::daemon().run(&["start", &direct]).ok();
    eventually_attached(&direct);
    holds_for("both containers running on their own bridge", STILL, || {
        is_running(&through) && is_running(&direct)
    });
    assert_eq!(mine.weaver.owned().len(), 2, "{:?}", mine.weaver.owned());
    assert_eq!(mine.weaver.container_ports().len(), 2);
    assert!(
        other.weaver.owned().is_empty(),
        "{:?}",
        other.weaver.owned()
    );
    assert_eq!(other.weaver.container_ports(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Restarts keep the address.

#[test]
fn docker_restart_keeps_the_address() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let docker = host.docker();
    let name = run_sleeper(&docker, &scope, "restart", &[]);
    let before = attached(&name).addrs;
    let pid = running_pid(&name).unwrap();
    docker.run(&["restart", "-t", "1", &name]).ok();
    let after = running_pid(&name).expect("running again");
    assert_ne!(pid, after, "a new process");
    // Answered after the attach: no polling.
    assert_eq!(attached(&name).addrs, before);
    assert_eq!(host.weaver.owned_by(&full_id(&name)), before);
    assert_one_port(&host.weaver, &name);
}

/// Docker restarts a killed `--restart=always` container by itself; the proxy attaches it from
/// the `start` event, and the router has kept its address for it.
#[test]
fn killed_restart_always_container_comes_back_with_the_same_address() {
    let scope = Scope::new();
    let host = WeaveHost::start();
    let name = run_sleeper(&host.docker(), &scope, "always", &["--restart=always"]);
    let before = attached(&name).addrs;
    let pid = running_pid(&name).unwrap();
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL)
        .expect("the container's process can be killed");
    let (new_pid, ethwe) = eventually("a new, attached process", PATIENCE, || {
        let (new_pid, ethwe) = eventually_attached(&name);
        (new_pid != pid).then_some((new_pid, ethwe))
    });
    assert_eq!(ethwe.addrs, before, "pid {pid} -> {new_pid}");
    assert_eq!(host.weaver.owned_by(&full_id(&name)), before);
    eventually("the old veth to go", Duration::from_secs(10), || {
        (host.weaver.container_ports() == [host_veth(new_pid)]).then_some(())
    });
}

#[test]
fn weaver_restart_keeps_the_address() {
    let scope = Scope::new();
    let mut host = WeaveHost::start();
    let docker = host.docker();
    let name = run_sleeper(&docker, &scope, "kept", &[]);
    let before = attached(&name).addrs;
    let id = full_id(&name);
    host.weaver.restart();
    assert!(host.weaver.bridge_exists(), "the bridge survives a restart");
    assert_eq!(host.weaver.owned_by(&id), before, "reclaimed after restart");
    assert_eq!(attached(&name).addrs, before);
    assert_one_port(&host.weaver, &name);
    // The restarted router knows the address is taken...
    let newcomer = run_sleeper(&docker, &scope, "newcomer", &[]);
    let theirs = attached(&newcomer).addrs;
    assert_ne!(theirs, before);
    // ...and gives it back on the next start.
    docker.run(&["restart", "-t", "1", &name]).ok();
    assert_eq!(attached(&name).addrs, before);
    assert_eq!(host.weaver.owned_by(&id), before);
}

#[test]
fn weaveproxy_restart_keeps_the_address() {
    let scope = Scope::new();
    let mut host = WeaveHost::start();
    let name = run_sleeper(&host.docker(), &scope, "kept", &[]);
    let before = attached(&name).addrs;
    host.proxy.restart();
    // The proxy's start re-attaches running weave containers: idempotent, one veth.
    holds_for("the attach staying as it was", STILL, || {
        ethwe(&name).is_some_and(|e| e.addrs == before) && host.weaver.container_ports().len() == 1
    });
    assert_one_port(&host.weaver, &name);
    host.docker().run(&["restart", "-t", "1", &name]).ok();
    assert_eq!(attached(&name).addrs, before);
    assert_eq!(host.weaver.owned_by(&full_id(&name)), before);
    assert_one_port(&host.weaver, &name);
}

// ---------------------------------------------------------------------------------------------
// Volume.

/// Weave Net's test 640: a /28 holds 14 addresses, so 50 runs only fit if each address comes
/// back as soon as its container is destroyed.
#[test]
fn fifty_runs_in_a_slash_28_finish_within_90_seconds() {
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start();
    let docker = host.docker();
    let label = scope.label();
    let started = Instant::now();
    let mut times = Vec::new();
    for i in 0..50 {
        let one = Instant::now();
        let out = docker.run(&[
            "run",
            "--rm",
            "--label",
            &label,
            "-e",
            "WEAVE_CIDR=net:10.32.4.0/28",
            &image,
            "true",
        ]);
        assert_eq!(
            out.code,
            0,
            "run {i} after {:?}: {out:#?}",
            started.elapsed()
        );
        times.push(one.elapsed());
    }
    let took = started.elapsed();
    println!(
        "50 x docker run --rm in a /28: {:.1}s ({})",
        took.as_secs_f64(),
        summary(times)
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
    eventually("every address released", Duration::from_secs(10), || {
        host.weaver.owned().is_empty().then_some(())
    });
}

/// 1,000 create/start/remove cycles through the proxy's API: afterwards the router owns no
/// address, the bridge has no container veth, and the proxy holds no more descriptors than
/// after a warm-up.
///
/// A cycle takes about half a second here, nearly all of it the daemon's (the same cycle
/// straight to the daemon takes as long), and the daemon serialises most of it: four clients
/// bring the thousand cycles to about four and a half minutes, more clients do not help. The
/// test runner's configuration gives this test longer than its usual five-minute limit. It does
/// not run against a daemon whose libnetwork deadlocks under such churn (Docker 20.10.24 here).
#[test]
fn a_thousand_create_start_rm_cycles_leak_nothing() {
    const WARM_UP: usize = 40;
    const CYCLES: usize = 1000;
    const CLIENTS: usize = 4;
    const FD_SLACK: usize = 2;
    if let Some(why) = weave_tests::daemon::churn_deadlock() {
        println!("{why}");
        return;
    }
    let image = test_image();
    let scope = Scope::new();
    let host = WeaveHost::start();
    let body = json!({ "Image": image, "Cmd": ["true"], "Labels": scope.labels() });
    let cycle = || {
        let started = Instant::now();
        let id = engine::create(host.proxy.socket(), &body);
        let (status, answer) = engine::start(host.proxy.socket(), &id);
        assert_eq!(status, 204, "start of {id}: {answer}");
        engine::remove(host.proxy.socket(), &id);
        started.elapsed()
    };
    // Warm-up with as many clients as the run: the proxy pools an idle connection to the
    // daemon per concurrent request, and the pool's size is not a leak.
    in_parallel(CLIENTS, WARM_UP, cycle);
    let fds_before = host.proxy.settled_fd_count();
    let rss_before = host.proxy.rss_kib();
    let started = Instant::now();
    let times = in_parallel(CLIENTS, CYCLES, cycle);
    let took = started.elapsed();
    // The same cycle straight to the daemon, with no attach, for scale.
    let daemon = weave_tests::daemon::target_socket();
    let direct: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let id = engine::create(&daemon, &body);
            let (status, answer) = engine::start(&daemon, &id);
            assert_eq!(status, 204, "{answer}");
            engine::remove(&daemon, &id);
            started.elapsed()
        })
        .collect();
    println!(
        "{CYCLES} create/start/rm cycles through the proxy, {CLIENTS} clients: {:.1}s, {}",
        took.as_secs_f64(),
        summary(times)
    );
    println!("the same cycle direct to the daemon: {}", summary(direct));
    eventually(
        "every address released and every veth gone",
        Duration::from_secs(30),
        || {
            (host.weaver.owned().is_empty() && host.weaver.container_ports().is_empty())
                .then_some(())
        },
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fds_after = host.proxy.fd_count();
    while fds_after > fds_before + FD_SLACK && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fds_after = host.proxy.fd_count();
    }
    assert!(
        fds_after <= fds_before + FD_SLACK,
        "the proxy holds {fds_after} descriptors after the cycles, {fds_before} after the warm-up"
    );
    println!(
        "proxy fds {fds_before} -> {fds_after}, rss {rss_before} KiB -> {} KiB",
        host.proxy.rss_kib()
    );
}

/// `start` through the proxy means what it means on the daemon: when it is answered, the
/// container's program runs (or has run), not weavewait about to hand over to it.
#[test]
fn a_start_through_the_proxy_is_answered_once_the_program_runs() {
    const ROUNDS: usize = 20;
    let scope = Scope::new();
    let host = WeaveHost::start();
    let daemon = weave_tests::daemon::target_socket();
    let sleeper =
        json!({ "Image": test_image(), "Cmd": ["sleep", "300"], "Labels": scope.labels() });
    for _ in 0..ROUNDS {
        let id = engine::create(host.proxy.socket(), &sleeper);
        let (status, answer) = engine::start(host.proxy.socket(), &id);
        assert_eq!(status, 204, "start of {id}: {answer}");
        // Straight to the daemon's socket, as fast as the test can look.
        let state = engine::get_json(&daemon, &format!("/containers/{id}/json"))["State"].take();
        let exe = std::fs::read_link(format!("/proc/{}/exe", state["Pid"])).expect("its program");
        assert_ne!(
            exe,
            Path::new("/w/w"),
            "{id}: start answered while weavewait still ran"
        );
        engine::remove(host.proxy.socket(), &id);
    }
}

/// A client that starts a short container and reads its logs at once, as docker-py's own tests
/// do (build, create `ls -a`, start, logs), finds the output through the proxy at least as often
/// as straight from the daemon, in the same run: a program that has already ended when the
/// proxy answers has its output in the logs, as the daemon keeps it once it reports the
/// container exited.
///
/// The daemon answers a start once the process exists, so a client reading the logs of a
/// program that is still about to print them may find nothing, direct or through the proxy;
/// hence a comparison with the daemon in the same run, not a count of twenty. Through the proxy
/// the answer comes later in the container's life (after the attach and weavewait's exec, or
/// once the daemon has seen the program end), so the output must be found no less often.
#[test]
fn logs_read_at_once_after_a_start_hold_the_output_as_often_as_direct() {
    const ROUNDS: usize = 20;
    let scope = Scope::new();
    let host = WeaveHost::start();
    let daemon = weave_tests::daemon::target_socket();
    let echo = json!({ "Image": test_image(), "Cmd": ["echo", "hi"], "Labels": scope.labels() });
    // Whether the logs, read right after the start was answered, held the output.
    let start_and_read = |socket: &Path| {
        let id = engine::create(socket, &echo);
        let (status, answer) = engine::start(socket, &id);
        assert_eq!(status, 204, "start of {id}: {answer}");
        let logs = engine::call(
            socket,
            Request::get(&format!("/containers/{id}/logs?stdout=1")),
        );
        engine::remove(socket, &id);
        logs.body.contains("hi\n")
    };
    let (mut proxied, mut direct) = (0, 0);
    // Alternated, so that a change in the machine's load falls on both alike.
    for _ in 0..ROUNDS {
        proxied += usize::from(start_and_read(host.proxy.socket()));
        direct += usize::from(start_and_read(&daemon));
    }
    println!(
        "logs read at once held the output {proxied}/{ROUNDS} through the proxy, \
         {direct}/{ROUNDS} direct"
    );
    assert!(
        proxied >= direct,
        "logs read at once held the output {proxied}/{ROUNDS} times through the proxy, \
         {direct}/{ROUNDS} direct"
    );
}

/// Twenty starts at once: all attached when answered, each with its own address and veth.
#[test]
fn twenty_parallel_starts_get_distinct_addresses() {
    const N: usize = 20;
    let image = test_image();
    let scope = Scope::new();
    let host = Arc::new(WeaveHost::start());
    let body = json!({ "Image": image, "Cmd": ["sleep", "300"], "Labels": scope.labels() });
    let ids: Vec<String> = (0..N)
        .map(|_| engine::create(host.proxy.socket(), &body))
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let host = Arc::clone(&host);
            std::thread::spawn(move || {
                let one = Instant::now();
                let (status, answer) = engine::start(host.proxy.socket(), &id);
                let took = one.elapsed();
                assert_eq!(status, 204, "start of {id}: {answer}");
                // Answered after the attach: ethwe is there now.
                (attached(&id).addrs, took)
            })
        })
        .collect();
    let results: Vec<(Vec<String>, Duration)> = threads
        .into_iter()
        .map(|t| t.join().expect("a start thread"))
        .collect();
    let wall = started.elapsed();
    println!(
        "{N} parallel starts: {:.0}ms wall, each {}",
        wall.as_secs_f64() * 1000.0,
        summary(results.iter().map(|r| r.1).collect())
    );
    let addrs: BTreeSet<String> = results.iter().flat_map(|r| r.0.clone()).collect();
    assert_eq!(addrs.len(), N, "distinct addresses: {results:?}");
    assert_eq!(host.weaver.owned().len(), N);
    for id in &ids {
        assert_one_port(&host.weaver, id);
    }
    assert_eq!(host.weaver.container_ports().len(), N);
}

// ---------------------------------------------------------------------------------------------
// Failures: a clear error, the container stopped, nothing left behind.

#[test]
fn router_stopped_fails_the_run_with_a_clear_message_and_leaves_nothing() {
    let scope = Scope::new();
    let timeout = ATTACH_TIMEOUT_SECS.to_string();
    let mut host = WeaveHost::start_with(Weaver::builder(), &["--attach-timeout", &timeout]);
    let ports_before = host.weaver.container_ports();
    host.weaver.stop();
    // Hold the router's port, bound but not listening: connections are refused as with no
    // router at all, and no router that another test starts meanwhile can take the port.
    let port_guard = refuse_connections_on(host.weaver.addr());
    let (out, took) = run_failing(&host.docker(), &scope, "norouter", &[]);
    drop(port_guard);
    println!("failed in {took:?}: {}", out.stderr.trim());
    assert!(
        took < Duration::from_secs(ATTACH_TIMEOUT_SECS + 5),
        "took {took:?}"
    );
    let addr = host.weaver.addr().to_owned();
    assert!(
        out.stderr.contains("Error response from daemon"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains(&format!("weave router not running at {addr}")),
        "{out:#?}"
    );
    assert!(out.stderr.contains("weave launch-router"), "{out:#?}");
    let name = scope.name("norouter");
    assert!(!is_running(&name));
    let running = Docker::daemon()
        .run(&["ps", "-q", "--filter", &format!("label={}", scope.label())])
        .ok();
    assert_eq!(running.out(), "", "no container left running");
    host.weaver.restart();
    assert_left_nothing(&host.weaver, &name, &ports_before);
}

#[test]
fn claim_conflict_fails_the_run_and_leaves_nothing() {
    let scope = Scope::new();
    let timeout = ATTACH_TIMEOUT_SECS.to_string();
    let host = WeaveHost::start_with(Weaver::builder(), &["--attach-timeout", &timeout]);
    let docker = host.docker();
    let first = run_sleeper(&docker, &scope, "first", &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    let ports_before = host.weaver.container_ports();
    let (out, took) = run_failing(&docker, &scope, "second", &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    println!("failed in {took:?}: {}", out.stderr.trim());
    assert!(
        out.stderr.contains("Error response from daemon"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("10.2.1.1"),
        "names the address: {out:#?}"
    );
    assert_left_nothing(&host.weaver, &scope.name("second"), &ports_before);
    // The holder is untouched.
    assert_eq!(attached(&first).addrs, ["10.2.1.1/24"]);
    assert_eq!(host.weaver.owned_by(&full_id(&first)), ["10.2.1.1/24"]);
}

/// A /30 has two host addresses; a third container cannot get one, whether the router says
/// so at once or keeps it waiting until the proxy's attach timeout.
#[test]
fn exhausted_subnet_fails_the_run_within_the_timeout_and_leaves_nothing() {
    let scope = Scope::new();
    let timeout = ATTACH_TIMEOUT_SECS.to_string();
    let host = WeaveHost::start_with(Weaver::builder(), &["--attach-timeout", &timeout]);
    let docker = host.docker();
    let cidr = ["-e", "WEAVE_CIDR=net:10.32.5.0/30"];
    let one = run_sleeper(&docker, &scope, "one", &cidr);
    let two = run_sleeper(&docker, &scope, "two", &cidr);
    let ports_before = host.weaver.container_ports();
    let (out, took) = run_failing(&docker, &scope, "three", &cidr);
    println!("failed in {took:?}: {}", out.stderr.trim());
    assert!(
        took < Duration::from_secs(ATTACH_TIMEOUT_SECS + 10),
        "took {took:?}"
    );
    assert!(
        out.stderr.contains("Error response from daemon"),
        "{out:#?}"
    );
    assert_left_nothing(&host.weaver, &scope.name("three"), &ports_before);
    for name in [&one, &two] {
        assert!(in_subnet(&attached(name).addrs[0], "10.32.5.0/30"));
    }
}

/// A TCP socket bound to `addr` that never listens, so connecting to `addr` is refused.
fn refuse_connections_on(addr: &str) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd as _;
    let addr: std::net::SocketAddrV4 = addr.parse().expect("the router address is ip:port");
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("a TCP socket");
    // The proxy's connections to the stopped router may linger in TIME_WAIT.
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).expect("the stopped router's port is free");
    fd
}

#[test]
fn the_proxy_counts_requests_and_attaches_on_its_metrics_address() {
    let scope = Scope::new();
    let metrics_addr = weave_tests::weaver::free_tcp_addr();
    let host = WeaveHost::start_with(Weaver::builder(), &["--metrics-addr", &metrics_addr]);
    let name = run_sleeper(&host.docker(), &scope, "counted", &[]);
    assert_eq!(attached(&name).addrs.len(), 1);
    let (status, text) = weave_tests::http::request(&metrics_addr, "GET", "/metrics", "")
        .expect("the metrics answer");
    assert_eq!(status, 200, "{text}");
    for line in [
        "weaveproxy_requests_total{endpoint=\"container_create\",method=\"POST\",status=\"201\"} 1",
        "weaveproxy_requests_total{endpoint=\"container_start\",method=\"POST\",status=\"204\"} 1",
        "weaveproxy_attaches_total{result=\"attached\",reason=\"\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let (status, _) =
        weave_tests::http::request(&metrics_addr, "GET", "/other", "").expect("an answer");
    assert_eq!(status, 404);
}
