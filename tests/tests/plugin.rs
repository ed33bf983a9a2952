//! Docker's network plugin served by `weaver`, end to end against the real daemon:
//! `docker network create -d <plugin> --ipam-driver <plugin>`, containers on that network get
//! `ethwe<n>` on the router's bridge with an address from its range, reach each other, `--ip`
//! and `--subnet` work, nothing is left allocated after run/rm cycles, and a restarted router
//! answers for what the previous one made.
//!
//! Each test serves the plugin under a name of its own (`weavetest<pid>n<k>`, socket in
//! `/run/docker/plugins/`), so tests run side by side and never meet a real `weave` plugin. The
//! networks and containers carry the [`Scope`]'s label and are removed before the router stops
//! (the scope is declared after the router, so it drops first).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use weave_tests::http::Request;
use weave_tests::netns::{assert_pings, in_subnet};
use weave_tests::{Docker, Output, Scope, WeaveHost, Weaver, eventually, test_image};

/// The range the test routers allocate from (Weave Net's own default).
const RANGE: &str = "10.32.0.0/12";
/// The bridge MTU the test routers use, so the test can see containers take it.
const MTU: u32 = 1410;

/// A plugin name unique to this process and call.
fn plugin_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "weavetest{}n{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A router serving the plugin as `name`.
fn router(name: &str) -> Weaver {
    Weaver::builder().mtu(MTU).plugin(name).start()
}

/// The plugin's socket.
fn socket(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/docker/plugins/{name}.sock"))
}

/// `docker network create -d plugin --ipam-driver plugin FLAGS <scope name>`, labelled.
fn network(docker: &Docker, scope: &Scope, plugin: &str, what: &str, flags: &[&str]) -> Output {
    let name = scope.name(what);
    let label = scope.label();
    let mut args = vec![
        "network",
        "create",
        "-d",
        plugin,
        "--ipam-driver",
        plugin,
        "--label",
        &label,
    ];
    args.extend_from_slice(flags);
    args.push(&name);
    docker.run(&args)
}

/// `docker run --rm --net NET FLAGS busybox CMD...`, labelled.
fn run(docker: &Docker, scope: &Scope, net: &str, flags: &[&str], cmd: &[&str]) -> Output {
    let image = test_image();
    let label = scope.label();
    let mut args = vec!["run", "--rm", "--label", &label, "--net", net];
    args.extend_from_slice(flags);
    args.push(&image);
    args.extend_from_slice(cmd);
    docker.run(&args)
}

/// A detached sleeper on `net`, named in `scope`; its name.
fn sleeper(docker: &Docker, scope: &Scope, net: &str, what: &str, flags: &[&str]) -> String {
    let name = scope.name(what);
    let mut all = vec!["--net", net];
    all.extend_from_slice(flags);
    docker.run_detached(scope, what, &all, &test_image(), &["sleep", "300"]);
    name
}

/// The IPv4 address (with prefix) of the container's `ethwe<n>`, from inside it.
fn ethwe_addr(docker: &Docker, container: &str) -> String {
    let out = docker
        .run(&["exec", container, "ip", "-o", "-4", "addr", "show"])
        .ok();
    weave_tests::cli::weave_addr(&out.stdout)
        .unwrap_or_else(|| panic!("{container} has no ethwe: {}", out.stdout))
}

/// The plugin's addresses the router holds (`GET /ip` entries owned by `plugin:<ip>`).
fn plugin_addrs(weaver: &Weaver) -> Vec<String> {
    weaver
        .owned()
        .into_iter()
        .filter(|(id, _)| id.starts_with("plugin:"))
        .flat_map(|(_, addrs)| addrs)
        .collect()
}

/// The plugin's veths on the router's bridge.
fn plugin_ports(weaver: &Weaver) -> Vec<String> {
    weaver
        .ports()
        .into_iter()
        .filter(|p| p.starts_with("vethwpl"))
        .collect()
}

#[test]
fn containers_get_ethwe_with_an_address_in_the_range_and_reach_each_other() {
    let plugin = plugin_name();
    let weaver = router(&plugin);
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("net");
    network(&docker, &scope, &plugin, "net", &[]).ok();
    let inspect = docker
        .run(&[
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{.IPAM.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &net,
        ])
        .ok();
    assert_eq!(inspect.out(), format!("{plugin} {plugin} {RANGE}"));

    let out = run(&docker, &scope, &net, &[], &["ip", "-o", "addr", "show"]).ok();
    let addr = weave_tests::cli::weave_addr(&out.stdout)
        .unwrap_or_else(|| panic!("no ethwe: {}", out.stdout));
    assert!(in_subnet(&addr, RANGE), "{addr} not in {RANGE}");
    assert!(addr.ends_with("/12"), "{addr}");
    let link = run(&docker, &scope, &net, &[], &["ip", "-o", "link", "show"]).ok();
    assert!(
        link.stdout
            .lines()
            .any(|l| l.contains(": ethwe0") && l.contains(&format!("mtu {MTU} "))),
        "ethwe0 with the bridge's MTU: {}",
        link.stdout
    );

    // The multicast route goes through ethwe, as a proxy-attached container's does; there is
    // no default route into weave.
    let routes = run(&docker, &scope, &net, &[], &["ip", "route", "show"]).ok();
    assert!(
        routes
            .stdout
            .lines()
            .any(|l| l.starts_with("224.0.0.0/4 dev ethwe0")),
        "{}",
        routes.stdout
    );
    assert!(!routes.stdout.contains("default"), "{}", routes.stdout);

    let c1 = sleeper(&docker, &scope, &net, "c1", &[]);
    let c2 = sleeper(&docker, &scope, &net, "c2", &[]);
    let (a1, a2) = (ethwe_addr(&docker, &c1), ethwe_addr(&docker, &c2));
    assert_ne!(a1, a2);
    let ip1 = a1.split('/').next().unwrap();
    let ip2 = a2.split('/').next().unwrap();
    assert_pings(&docker, &c2, ip1);
    assert_pings(&docker, &c1, ip2);
    // Docker's embedded DNS answers for container names on a user-defined network.
    assert_pings(&docker, &c1, &c2);

    // The router's one allocator holds both, and the veths are ports of its bridge.
    let mut held = plugin_addrs(&weaver);
    held.sort();
    let mut want = vec![a1.clone(), a2.clone()];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(plugin_ports(&weaver).len(), 2, "{:?}", weaver.ports());

    docker.run(&["rm", "-f", &c1, &c2]).ok();
    eventually("addresses released", Duration::from_secs(10), || {
        plugin_addrs(&weaver).is_empty().then_some(())
    });
    assert!(plugin_ports(&weaver).is_empty(), "{:?}", weaver.ports());
    docker.run(&["network", "rm", &net]).ok();
}

#[test]
fn subnets_inside_the_range_and_fixed_addresses() {
    let plugin = plugin_name();
    let weaver = router(&plugin);
    let scope = Scope::new();
    let docker = Docker::daemon();

    let outside = network(
        &docker,
        &scope,
        &plugin,
        "out",
        &["--subnet", "192.168.77.0/24"],
    );
    assert_ne!(outside.code, 0, "{outside:?}");
    assert!(
        outside
            .stderr
            .contains("subnet 192.168.77.0/24 is not inside the weave range 10.32.0.0/12"),
        "{}",
        outside.stderr
    );

    let net = scope.name("sub");
    network(
        &docker,
        &scope,
        &plugin,
        "sub",
        &["--subnet", "10.32.5.0/24"],
    )
    .ok();
    let out = run(
        &docker,
        &scope,
        &net,
        &[],
        &["ip", "-o", "-4", "addr", "show"],
    )
    .ok();
    let addr = weave_tests::cli::weave_addr(&out.stdout).unwrap();
    assert!(
        in_subnet(&addr, "10.32.5.0/24") && addr.ends_with("/24"),
        "{addr}"
    );

    let fixed = sleeper(&docker, &scope, &net, "fixed", &["--ip", "10.32.5.77"]);
    assert_eq!(ethwe_addr(&docker, &fixed), "10.32.5.77/24");
    assert_eq!(plugin_addrs(&weaver), ["10.32.5.77/24"]);
    // The address is taken: a second container cannot have it.
    let clash = run(&docker, &scope, &net, &["--ip", "10.32.5.77"], &["true"]);
    assert_ne!(clash.code, 0, "{clash:?}");
    assert!(clash.stderr.contains("10.32.5.77"), "{}", clash.stderr);
    // An address allocated through the HTTP API (as the proxy does) is never handed out.
    let (status, body) = weaver.request("PUT", "/ip/someone/10.32.5.1/24", "");
    assert_eq!(status, 204, "{body}");
    let out = run(
        &docker,
        &scope,
        &net,
        &[],
        &["ip", "-o", "-4", "addr", "show"],
    )
    .ok();
    assert_eq!(
        weave_tests::cli::weave_addr(&out.stdout).as_deref(),
        Some("10.32.5.2/24")
    );

    docker.run(&["rm", "-f", &fixed]).ok();
    docker.run(&["network", "rm", &net]).ok();
    assert!(plugin_addrs(&weaver).is_empty(), "{:?}", weaver.owned());
}

/// The issue's 200 run/rm cycles on the plugin's network leave nothing allocated: in a /28 (14
/// addresses), which more than 14 cycles only pass if every address comes back. Four runs at a
/// time against Docker 26 (150 s here beside other tests), one at a time (195 s) against a
/// daemon whose libnetwork
/// deadlocks when one container leaves a network while another's endpoint is deleted
/// (tests::daemon::churn_deadlock). `WEAVE_TEST_PLUGIN_CYCLES` changes the count.
#[test]
fn no_address_is_left_after_run_rm_cycles() {
    let cycles: usize = std::env::var("WEAVE_TEST_PLUGIN_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let workers = match weave_tests::daemon::churn_deadlock() {
        Some(why) => {
            eprintln!("one run at a time: {why}");
            1
        }
        None => 4,
    };
    let plugin = plugin_name();
    let weaver = router(&plugin);
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("cycles");
    network(
        &docker,
        &scope,
        &plugin,
        "cycles",
        &["--subnet", "10.32.6.0/28"],
    )
    .ok();
    let started = Instant::now();
    std::thread::scope(|threads| {
        for worker in 0..workers {
            let (docker, scope, net) = (&docker, &scope, &net);
            threads.spawn(move || {
                for i in (worker..cycles).step_by(workers) {
                    let out = run(docker, scope, net, &[], &["ip", "-o", "-4", "addr", "show"]);
                    assert_eq!(out.code, 0, "cycle {i}: {out:?}");
                    let addr = weave_tests::cli::weave_addr(&out.stdout);
                    assert!(
                        addr.as_deref()
                            .is_some_and(|a| in_subnet(a, "10.32.6.0/28")),
                        "cycle {i}: {}",
                        out.stdout
                    );
                }
            });
        }
    });
    let took = started.elapsed();
    eventually("every address released", Duration::from_secs(10), || {
        plugin_addrs(&weaver).is_empty().then_some(())
    });
    assert!(plugin_ports(&weaver).is_empty(), "{:?}", weaver.ports());
    docker.run(&["network", "rm", &net]).ok();
    assert!(weaver.owned().is_empty(), "{:?}", weaver.owned());
    eprintln!("{cycles} run/rm cycles, {workers} at a time: {took:?}");
}

#[test]
fn a_restarted_router_answers_for_what_the_previous_one_made() {
    let plugin = plugin_name();
    let mut weaver = router(&plugin);
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("restart");
    network(&docker, &scope, &plugin, "restart", &[]).ok();
    let c1 = sleeper(&docker, &scope, &net, "c1", &[]);
    let a1 = ethwe_addr(&docker, &c1);

    // A left-over, as if Docker's release had come while the router was down: no network uses
    // it, so the next start frees it.
    let (status, body) = weaver.request("PUT", "/ip/plugin:10.32.9.9/10.32.9.9/12", "");
    assert_eq!(status, 204, "{body}");

    weaver.restart();
    // The address in use survived (saved by the allocator), so a new container gets another
    // one; the left-over is gone as soon as the router reports ready (`restart` waits for that).
    assert_eq!(plugin_addrs(&weaver), std::slice::from_ref(&a1));
    let c2 = sleeper(&docker, &scope, &net, "c2", &[]);
    let a2 = ethwe_addr(&docker, &c2);
    assert_ne!(a1, a2);
    let ip1 = a1.split('/').next().unwrap();
    assert_pings(&docker, &c2, ip1);
    // The endpoint made before the restart is removed by the new process: veth and address.
    docker.run(&["rm", "-f", &c1, &c2]).ok();
    eventually("addresses released", Duration::from_secs(10), || {
        plugin_addrs(&weaver).is_empty().then_some(())
    });
    assert!(plugin_ports(&weaver).is_empty(), "{:?}", weaver.ports());
    docker.run(&["network", "rm", &net]).ok();
}

#[test]
fn status_shows_the_plugin_and_bad_requests_get_an_error_body() {
    let plugin = plugin_name();
    let weaver = router(&plugin);
    let path = socket(&plugin);
    let (_, status) = weaver.request("GET", "/status", "");
    assert!(
        status.contains(&format!(
            "        Service: plugin\n     DriverName: {plugin}\n         Socket: {}\n",
            path.display()
        )),
        "{status}"
    );
    let send = |request: Request| {
        request
            .header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
            .send_unix(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let reply = send(Request::post("/Plugin.Activate"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    for (path, body, status) in [
        ("/NetworkDriver.Join", "{", 400),
        ("/NetworkDriver.CreateEndpoint", "[1,2]", 400),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"nonsense"}"#,
            500,
        ),
        ("/IpamDriver.RequestPool", r#"{"Pool":"10.32.0.0/33"}"#, 500),
        ("/NetworkDriver.Nothing", "{}", 404),
    ] {
        // `form` sends the bytes as they are (under a content type the plugin ignores).
        let reply = send(Request::post(path).form(body));
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.body);
        let err = reply.json()["Err"].as_str().unwrap_or_default().to_owned();
        assert!(!err.is_empty(), "{path} {body}: {}", reply.body);
    }
    let again = send(Request::post("/NetworkDriver.GetCapabilities"));
    assert_eq!(again.json()["Scope"], "local");
}

#[test]
fn containers_on_the_network_are_named_in_weavedns() {
    let plugin = plugin_name();
    // A range of its own: the host's address, put on the bridge for the containers' route to
    // weaveDNS, brings a route to the range with it, which must not meet another test's.
    let mut weaver = Weaver::builder()
        .dns()
        .range("10.60.0.0/16")
        .plugin(&plugin)
        .start();
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("dns");
    network(&docker, &scope, &plugin, "dns", &[]).ok();
    // The alias is what Compose gives a service; the container name and the alias both count.
    let alias = format!("{}-alias", scope.name("svc"));
    let c1 = sleeper(&docker, &scope, &net, "c1", &["--network-alias", &alias]);
    let ip1 = ethwe_addr(&docker, &c1)
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let id1 = weave_tests::netns::full_id(&c1);
    let mut want = vec![
        (format!("{c1}.weave.local."), ip1.clone(), id1.clone()),
        (format!("{alias}.weave.local."), ip1.clone(), id1.clone()),
    ];
    want.sort();
    eventually("c1 in weaveDNS", Duration::from_secs(10), || {
        (weaver.names() == want).then_some(())
    });
    // The registry is in memory: a restarted router finds the name again through Docker.
    weaver.restart();
    eventually(
        "c1 in weaveDNS after a restart",
        Duration::from_secs(10),
        || (weaver.names() == want).then_some(()),
    );
    // Leaving the network takes the name; removal does too.
    docker.run(&["network", "disconnect", &net, &c1]).ok();
    eventually("c1's name gone", Duration::from_secs(10), || {
        weaver.names().is_empty().then_some(())
    });
    assert!(plugin_addrs(&weaver).is_empty(), "{:?}", weaver.owned());
    docker.run(&["network", "connect", &net, &c1]).ok();
    // Reconnected without the alias: the name alone.
    eventually("c1 named again", Duration::from_secs(10), || {
        (weaver.names().len() == 1).then_some(())
    });
    docker.run(&["rm", "-f", &c1]).ok();
    eventually("c1's name gone", Duration::from_secs(10), || {
        weaver.names().is_empty().then_some(())
    });
    docker.run(&["network", "rm", &net]).ok();
}

#[test]
fn plugin_and_proxy_attached_containers_share_the_network_and_its_names() {
    let plugin = plugin_name();
    let weave = WeaveHost::start_with(
        Weaver::builder()
            .dns()
            .range("10.61.0.0/16")
            .plugin(&plugin),
        &[],
    );
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("mixed");
    network(&docker, &scope, &plugin, "mixed", &[]).ok();
    let dns = weave
        .weaver
        .dns_addr()
        .expect("weaveDNS's address")
        .to_owned();
    // As `$(weave dns-args)` gives them.
    let on_plugin = sleeper(
        &docker,
        &scope,
        &net,
        "onplugin",
        &["--dns", &dns, "--dns-search", "weave.local"],
    );
    let plugin_ip = ethwe_addr(&docker, &on_plugin);
    let proxied =
        weave
            .docker()
            .run_detached(&scope, "proxied", &[], &test_image(), &["sleep", "300"]);
    let proxied_ip = ethwe_addr(&docker, &proxied);
    // One allocator: two different addresses in the same range.
    assert_ne!(plugin_ip, proxied_ip);
    let ip = |cidr: &str| cidr.split('/').next().unwrap().to_owned();
    assert_pings(&docker, &on_plugin, &ip(&proxied_ip));
    // The proxy-attached container asks weaveDNS, which knows the plugin's container.
    eventually(
        "the plugin's container in weaveDNS",
        Duration::from_secs(10),
        || {
            weave
                .weaver
                .names()
                .iter()
                .any(|(name, _, _)| name == &format!("{on_plugin}.weave.local."))
                .then_some(())
        },
    );
    assert_pings(&docker, &proxied, &on_plugin);
    // And the other way: Docker's embedded DNS does not know the proxied container on this
    // network, and forwards the question to weaveDNS from inside the container, through the
    // route the plugin gave it to the host's address on the bridge.
    let proxied_name = scope.name("proxied");
    let routes = docker.run(&["exec", &on_plugin, "ip", "route"]).ok().stdout;
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&format!("{dns} via 10.61."))),
        "no route to weaveDNS at {dns}:\n{routes}"
    );
    eventually(
        "the plugin's container to resolve the proxied one",
        Duration::from_secs(10),
        || {
            docker
                .run(&[
                    "exec",
                    &on_plugin,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    &proxied_name,
                ])
                .code
                .eq(&0)
                .then_some(())
        },
    );
    // Through the proxy, a container on the plugin's network is the plugin's alone: the proxy
    // leaves containers on user-defined networks to it, so it has one weave interface.
    let image = test_image();
    let label = scope.label();
    let links = weave
        .docker()
        .run(&[
            "run", "--rm", "--label", &label, "--net", &net, &image, "ip", "-o", "link", "show",
        ])
        .ok();
    let weave_links: Vec<&str> = links
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|name| name.starts_with("ethwe"))
        .collect();
    assert!(
        weave_links.len() == 1 && weave_links[0].starts_with("ethwe0@"),
        "{}",
        links.stdout
    );
    docker.run(&["rm", "-f", &on_plugin]).ok();
    docker.run(&["network", "rm", &net]).ok();
}

#[test]
fn a_stopped_container_releases_its_address_and_a_fixed_one_comes_back_on_start() {
    let plugin = plugin_name();
    let weaver = router(&plugin);
    let scope = Scope::new();
    let docker = Docker::daemon();
    let net = scope.name("stop");
    network(
        &docker,
        &scope,
        &plugin,
        "stop",
        &["--subnet", "10.32.7.0/24"],
    )
    .ok();
    let fixed = sleeper(&docker, &scope, &net, "fixed", &["--ip", "10.32.7.9"]);
    assert_eq!(plugin_addrs(&weaver), ["10.32.7.9/24"]);
    docker.run(&["stop", "-t", "0", &fixed]).ok();
    eventually(
        "the address released at stop",
        Duration::from_secs(10),
        || plugin_addrs(&weaver).is_empty().then_some(()),
    );
    assert!(plugin_ports(&weaver).is_empty(), "{:?}", weaver.ports());
    docker.run(&["start", &fixed]).ok();
    assert_eq!(ethwe_addr(&docker, &fixed), "10.32.7.9/24");
    assert_eq!(plugin_addrs(&weaver), ["10.32.7.9/24"]);
    docker.run(&["rm", "-f", &fixed]).ok();
    docker.run(&["network", "rm", &net]).ok();
}

/// The daemon restarted (TERM, then a new dockerd on the same data, as a service manager does it)
/// on a private Docker 26 host: the router comes back with it (`weave launch`'s restart policy),
/// Docker finds the plugin again, and the containers on the `weave` network that it restarts get
/// their endpoints again: `ethwe` with an address from the range, reaching each other by name,
/// and the router holding exactly their addresses (nothing from before the restart left).
#[test]
fn a_restarted_daemon_rejoins_the_containers_on_the_network() {
    let Some(mut hosts) = weave_tests::dockerhosts::DockerHosts::new(1, 1) else {
        return;
    };
    hosts.launch(0).ok();
    let image = test_image();
    let run = format!(
        "for c in c1 c2; do docker run -d --name $c --restart always --net weave {image} sleep 1d; done"
    );
    hosts.host(0).sh(&run).ok();
    let addr_of = |hosts: &weave_tests::dockerhosts::DockerHosts, c: &str| {
        let out = hosts
            .host(0)
            .sh(&format!("docker exec {c} ip -o -4 addr show"));
        (out.code == 0)
            .then(|| weave_tests::cli::weave_addr(&out.stdout))
            .flatten()
    };
    let before = [addr_of(&hosts, "c1"), addr_of(&hosts, "c2")];
    assert!(before.iter().all(Option::is_some), "{before:?}");

    hosts.restart_dockerd(0);
    let restarted = Instant::now();
    let after = weave_tests::wait::poll(Duration::from_secs(180), || {
        match (addr_of(&hosts, "c1"), addr_of(&hosts, "c2")) {
            (Some(a), Some(b)) => Some([a, b]),
            _ => None,
        }
    })
    .unwrap_or_else(|| {
        let ps = hosts.host(0).sh(
            "docker ps -a; docker network ls; \
             grep -v 'exec command' $HOME/dockerd.log | grep -i 'c1\\|c2\\|plugin\\|weave' | tail -30",
        );
        panic!(
            "the containers are not back on the network after 180 s:\n{}",
            ps.stdout
        )
    });
    eprintln!(
        "back on the network {:?} after the restart",
        restarted.elapsed()
    );
    for addr in &after {
        assert!(in_subnet(addr, RANGE), "{addr} not in {RANGE}");
    }
    assert_ne!(after[0], after[1]);
    hosts.host(0).sh("docker exec c1 ping -c1 -W5 c2").ok();
    // The router's IPAM holds the two addresses the containers have, and nothing else but the
    // host's own (`weave:expose`, the next hop of the containers' route to weaveDNS).
    let ip = |cidr: &str| cidr.split('/').next().unwrap_or_default().to_owned();
    let held = eventually(
        "the router to hold just the containers' addresses",
        Duration::from_secs(30),
        || {
            let out = hosts.host(0).sh(
                "exec 3<>/dev/tcp/127.0.0.1/6784; printf 'GET /ip HTTP/1.0\r\n\r\n' >&3; cat <&3",
            );
            let body = out.stdout.split("\r\n\r\n").nth(1)?.to_owned();
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let mut held: Vec<String> = json["owned"]
                .as_array()?
                .iter()
                .filter(|e| e["containerid"] != "weave:expose")
                .flat_map(|e| e["addrs"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(ip))
                .collect();
            held.sort();
            let mut want: Vec<String> = after.iter().map(|a| ip(a)).collect();
            want.sort();
            (held == want).then_some(held)
        },
    );
    eprintln!("before the restart {before:?}, after {after:?}, the router holds {held:?}");
}
