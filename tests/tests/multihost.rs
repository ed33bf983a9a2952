//! One weave network across real Docker hosts: Docker 26 daemons on this machine, each in its
//! own network and mount namespaces ([`weave_tests::dockerhosts`]), joined through one etcd.
//! On each host `weave launch --store-endpoints` as a user types it, then `docker run` through
//! that host's proxy (`eval $(weave env)`); the containers reach each other by address and by
//! weaveDNS name, `weave status peers` on each host names the others, and the containers keep
//! talking when one host's router is stopped (and again once it is back), or one host's store
//! member dies.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weave_tests::dockerhosts::{DockerHost, DockerHosts};
use weave_tests::wait::{eventually, holds_for};

/// How long a new container may take to be reachable from another host, or its name to resolve
/// there (a watch in the store, not a poll: well under this on an idle machine; the time taken
/// is printed).
const CONVERGE: Duration = Duration::from_secs(20);
/// How long the store may take to grow to three voting members once the third host is up: a
/// look at the members every 10 s on each router, a learner's catch-up, and a restart of every
/// router on the new endpoints.
const GROW: Duration = Duration::from_secs(90);
/// How long the peers' lease outlives a stopped router (the router's `--peer-ttl`, 15 s), with
/// room for a loaded machine.
const LEASE_EXPIRY: Duration = Duration::from_secs(40);

/// `docker run -d --name NAME busybox sleep 1d` through the host's proxy, as a user would after
/// `eval $(weave env)`; the container's weave address.
fn run_through_proxy(host: &DockerHost, name: &str) -> Ipv4Addr {
    let out = host.sh(&format!(
        "eval $(weave env)\ndocker run -d --name {name} busybox sleep 1d"
    ));
    assert_eq!(out.code, 0, "docker run on {}: {out:#?}", host.name);
    let ethwe = host
        .docker()
        .run(&["exec", name, "ip", "-4", "-o", "addr", "show", "ethwe"])
        .ok()
        .stdout;
    // `2: ethwe    inet 10.32.0.1/12 brd ...`
    ethwe
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address on {name}'s ethwe: {ethwe}"))
}

/// Whether `from` (a container on `host`) gets an answer to one ping of `to` within 2 s.
fn pings(host: &DockerHost, from: &str, to: &str) -> bool {
    host.docker()
        .run(&["exec", from, "ping", "-c", "1", "-W", "2", to])
        .code
        == 0
}

/// `weave status peers` on `host`.
fn peers(host: &DockerHost) -> String {
    let out = host.sh("weave status peers");
    assert_eq!(out.code, 0, "weave status peers on {}: {out:#?}", host.name);
    out.stdout
}

/// The name of the bridge of `host`'s default Docker network (the harness gives it another
/// than `docker0`, as a user may with `--bridge`).
fn docker_bridge(host: &DockerHost) -> String {
    let name = host
        .docker()
        .run(&[
            "network",
            "inspect",
            "bridge",
            "--format",
            r#"{{index .Options "com.docker.network.bridge.name"}}"#,
        ])
        .ok()
        .stdout;
    name.trim().to_owned()
}

/// The `Store:` line of `weave status` on `host`.
fn store_line(host: &DockerHost) -> Option<String> {
    host.sh("weave status")
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Store:"))
        .map(|l| l.trim().to_owned())
}

/// The line of `weave status peers` about the peer nicknamed `nickname`.
fn peer_line(status: &str, nickname: &str) -> Option<String> {
    status
        .lines()
        .find(|l| l.trim_start().starts_with("->") && l.contains(&format!("({nickname})")))
        .map(str::to_owned)
}

#[test]
fn two_docker_hosts_are_one_network_and_survive_a_stopped_router_and_its_return() {
    let started = Instant::now();
    let Some(hosts) = DockerHosts::new(2, 1) else {
        return;
    };
    eprintln!("two dockerds and etcd up after {:?}", started.elapsed());
    let (a, b) = (hosts.host(0), hosts.host(1));

    let launched = Instant::now();
    for i in 0..hosts.len() {
        let out = hosts.launch(i);
        assert_eq!(out.code, 0, "weave launch on host{}: {out:#?}", i + 1);
    }
    eprintln!("weave launched on both after {:?}", launched.elapsed());

    // The proxy's socket is where `weave env` says, in each host's own /var/run/weave.
    for host in [a, b] {
        let env = host.sh("weave env").ok().stdout;
        assert!(
            env.contains("DOCKER_HOST=unix:///var/run/weave/weave.sock"),
            "{}: {env}",
            host.name
        );
        let ps = host
            .proxy()
            .run(&["ps", "--format", "{{.Names}}"])
            .ok()
            .stdout;
        assert!(ps.contains("weaveproxy"), "{}: {ps}", host.name);
    }

    let web1 = run_through_proxy(a, "web1");
    let web2 = run_through_proxy(b, "web2");
    assert_ne!(web1, web2);
    let reached = Instant::now();
    for (host, from, to) in [(a, "web1", web2), (b, "web2", web1)] {
        eventually(
            &format!("{from} on {} to reach {to}", host.name),
            CONVERGE,
            || pings(host, from, &to.to_string()).then_some(()),
        );
    }
    eprintln!(
        "reachable both ways by address after {:?}",
        reached.elapsed()
    );
    for (host, from, to) in [(a, "web1", "web2"), (b, "web2", "web1")] {
        eventually(
            &format!("{from} on {} to reach {to}.weave.local", host.name),
            CONVERGE,
            || pings(host, from, &format!("{to}.weave.local")).then_some(()),
        );
    }
    eprintln!("reachable both ways by name after {:?}", reached.elapsed());

    for (host, other) in [(a, b), (b, a)] {
        let status = peers(host);
        let line = peer_line(&status, &other.name).unwrap_or_else(|| {
            panic!(
                "{} missing from {}'s peers:\n{status}",
                other.name, host.name
            )
        });
        assert!(
            line.contains(&format!("{}:vxlan", other.addr)) && line.ends_with("established"),
            "{}'s peers:\n{status}",
            host.name
        );
    }

    // The fault: host1's router stops. Its containers keep their place on the network: the
    // kernel's bridge, VXLAN port and flood entry stay, and host2 still knows web1's name.
    a.sh("weave stop-router").ok();
    let running = a
        .docker()
        .run(&["inspect", "--format", "{{.State.Running}}", "weave"])
        .ok()
        .stdout;
    assert_eq!(running.trim(), "false", "host1's router still runs");
    let keep_talking = || {
        pings(b, "web2", &web1.to_string())
            && pings(b, "web2", "web1.weave.local")
            && pings(a, "web1", &web2.to_string())
    };
    holds_for(
        "web1 and web2 talking with host1's router stopped",
        Duration::from_secs(3),
        keep_talking,
    );
    // Past its lease host1 is shown dead, and still nothing is taken from its containers.
    let expired = Instant::now();
    let line = eventually("host2 to see host1 unreachable", LEASE_EXPIRY, || {
        peer_line(&peers(b), &a.name).filter(|l| l.ends_with("unreachable"))
    });
    eprintln!(
        "host1 unreachable for host2 after {:?}: {line}",
        expired.elapsed()
    );
    assert!(
        keep_talking(),
        "web1 and web2 stopped talking once host1's lease expired"
    );

    // host1's router back: alive again for host2, and web1 finds web2 by name again.
    let relaunched = Instant::now();
    let out = a.sh(&format!(
        "weave launch-router --store-endpoints {} --nickname {}",
        hosts.store_endpoints(),
        a.name
    ));
    assert_eq!(out.code, 0, "weave launch-router on host1: {out:#?}");
    eventually("host2 to see host1 alive again", CONVERGE, || {
        peer_line(&peers(b), &a.name).filter(|l| l.ends_with("established"))
    });
    eventually("web1 to reach web2.weave.local again", CONVERGE, || {
        pings(a, "web1", "web2.weave.local").then_some(())
    });
    assert!(
        keep_talking(),
        "web1 and web2 after host1's router came back"
    );
    eprintln!(
        "host1's router back and serving names after {:?}",
        relaunched.elapsed()
    );
    eprintln!("whole test {:?}", started.elapsed());
}

#[test]
fn three_docker_hosts_reach_each_other_by_name_and_outlive_a_dead_store_member() {
    let started = Instant::now();
    let Some(mut hosts) = DockerHosts::new(3, 3) else {
        return;
    };
    eprintln!("three dockerds and etcd up after {:?}", started.elapsed());
    for i in 0..hosts.len() {
        let out = hosts.launch(i);
        assert_eq!(out.code, 0, "weave launch on host{}: {out:#?}", i + 1);
    }
    let names: Vec<String> = (1..=hosts.len()).map(|n| format!("web{n}")).collect();
    let addrs: Vec<Ipv4Addr> = names
        .iter()
        .enumerate()
        .map(|(i, name)| run_through_proxy(hosts.host(i), name))
        .collect();
    let reached = Instant::now();
    for (i, from) in names.iter().enumerate() {
        for (j, to) in names.iter().enumerate().filter(|(j, _)| *j != i) {
            let host = hosts.host(i);
            eventually(
                &format!("{from} on {} to reach {to}.weave.local", host.name),
                CONVERGE,
                || pings(host, from, &format!("{to}.weave.local")).then_some(()),
            );
            assert!(pings(host, from, &addrs[j].to_string()));
        }
    }
    eprintln!("all pairs reachable by name after {:?}", reached.elapsed());
    for i in 0..hosts.len() {
        let status = peers(hosts.host(i));
        for j in (0..hosts.len()).filter(|j| *j != i) {
            let other = hosts.host(j);
            let line = peer_line(&status, &other.name).unwrap_or_else(|| {
                panic!(
                    "{} missing from host{}'s peers:\n{status}",
                    other.name,
                    i + 1
                )
            });
            assert!(line.ends_with("established"), "host{}: {status}", i + 1);
        }
    }

    // The fault: host1's store member, the first endpoint every router lists, dies. The store
    // keeps its quorum on the other two; the routers turn to them.
    hosts.kill_store_member(0);
    let all_talk = || {
        (0..hosts.len()).all(|i| {
            (0..hosts.len())
                .filter(|j| *j != i)
                .all(|j| pings(hosts.host(i), &names[i], &addrs[j].to_string()))
        })
    };
    holds_for(
        "the containers talking with host1's store member dead",
        Duration::from_secs(2),
        all_talk,
    );
    // A container started on host3 now gets an address and a name the others resolve.
    let late = Instant::now();
    let late_addr = run_through_proxy(hosts.host(2), "late3");
    for (i, from) in names.iter().enumerate().take(2) {
        let host = hosts.host(i);
        eventually(
            &format!("{from} on {} to reach late3.weave.local", host.name),
            CONVERGE,
            || pings(host, from, "late3.weave.local").then_some(()),
        );
    }
    eprintln!(
        "late3 ({late_addr}) reachable by name from host1 and host2 after {:?}",
        late.elapsed()
    );
    eprintln!("whole test {:?}", started.elapsed());
}

/// The MTU of `name`'s `ethwe` on `host`.
fn ethwe_mtu(host: &DockerHost, name: &str) -> u32 {
    let link = host
        .docker()
        .run(&["exec", name, "cat", "/sys/class/net/ethwe/mtu"])
        .ok()
        .stdout;
    link.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}'s ethwe MTU: {link}"))
}

/// Weave Net's way, with no store set up by hand: host1 is launched alone and runs a container;
/// host2 is launched naming host1, host3 naming host2. host1's router makes the store (etcd in
/// the `weavestore` container) when host2 asks, and starts again on it with its container kept
/// and brought to the overlay's MTU; host2 and host3 join it, and the store grows with them to
/// three voting members. The containers of all three reach each other by address and name, and
/// go on doing so, new names included, once host1's member is gone; multicast crosses the
/// hosts, and host2, exposed, reaches a container on host3. `weave connect` and `weave
/// forget` change the endpoints a host uses, and refuse to leave it none. `weave reset` on
/// host1 removes its member from the store, and the store goes on with two.
#[test]
fn a_host_launched_alone_is_joined_by_naming_it() {
    let started = Instant::now();
    let Some(hosts) = DockerHosts::new(3, 0) else {
        return;
    };
    let (a, b, c) = (hosts.host(0), hosts.host(1), hosts.host(2));
    eprintln!("three dockerds up after {:?}", started.elapsed());

    let out = a.sh(&format!("weave launch --nickname {}", a.name));
    assert_eq!(out.code, 0, "weave launch on host1: {out:#?}");
    let web1 = run_through_proxy(a, "web1");
    assert_eq!(ethwe_mtu(a, "web1"), 65535, "alone, host1 keeps its MTU");
    let out = a.sh("weave status peers");
    assert_ne!(out.code, 0, "host1 is alone: {out:#?}");

    let joined = Instant::now();
    let out = b.sh(&format!("weave launch --nickname {} {}", b.name, a.addr));
    assert_eq!(out.code, 0, "weave launch host1 on host2: {out:#?}");
    eventually("host2 to see host1 established", CONVERGE, || {
        let out = b.sh("weave status peers");
        (out.code == 0
            && peer_line(&out.stdout, &a.name).is_some_and(|l| l.ends_with("established")))
        .then_some(())
    });
    // Containers are kept off the ports between hosts, the VXLAN port among them: a datagram
    // a container sent there would be a frame on the weave network.
    let rules = b.sh("iptables -w -S INPUT").ok().stdout;
    let docker_bridge = docker_bridge(b);
    for want in [
        format!("-A INPUT -i {docker_bridge} -p udp -m udp --dport 6789:6790 -j DROP"),
        "-A INPUT -i weave -p tcp -m tcp --dport 2379:2380 -j DROP".to_owned(),
    ] {
        assert!(
            rules.contains(&want),
            "host2's INPUT lacks {want}:\n{rules}"
        );
    }
    // Two hosts: host2 uses host1's store, and nothing else.
    let out = b.sh(&format!("weave connect {}", a.addr));
    assert_eq!(out.code, 0, "weave connect host1 on host2: {out:#?}");
    assert!(out.stdout.contains("already using"), "{out:#?}");
    let out = b.sh(&format!("weave forget {}", a.addr));
    assert_ne!(out.code, 0, "forgetting the only store: {out:#?}");
    assert!(out.stderr.contains("no store"), "{out:#?}");

    let out = c.sh(&format!("weave launch --nickname {} {}", c.name, b.addr));
    assert_eq!(out.code, 0, "weave launch host2 on host3: {out:#?}");
    for host in [a, b, c] {
        eventually(
            &format!("{} to see the two others established", host.name),
            CONVERGE,
            || {
                let out = host.sh("weave status peers");
                let status = out.stdout;
                (out.code == 0
                    && [a, b, c].iter().filter(|h| h.name != host.name).all(|h| {
                        peer_line(&status, &h.name).is_some_and(|l| l.ends_with("established"))
                    }))
                .then_some(())
            },
        );
    }
    eprintln!("three peers on host1's store after {:?}", joined.elapsed());
    let store = a
        .docker()
        .run(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.Config.Entrypoint}}",
            "weavestore",
        ])
        .ok()
        .stdout;
    assert_eq!(store.trim(), "true [/usr/bin/etcd]", "host1's store");
    // The store grows with the hosts that joined: host2's member waits as a learner until
    // host3 comes, then both vote, and every router follows the three.
    let grown = Instant::now();
    for host in [a, b, c] {
        let line = eventually(
            &format!("{}'s router on a store of 3 voting members", host.name),
            GROW,
            || {
                store_line(host).filter(|l| {
                    l.contains("Store: 3 member(s), leader") && l.contains("(3 endpoint(s) given)")
                })
            },
        );
        eprintln!("{}: {}", host.name, line.trim());
    }
    eprintln!(
        "the store grew to 3 voting members after {:?}",
        grown.elapsed()
    );
    for host in [b, c] {
        let running = host
            .docker()
            .run(&["inspect", "--format", "{{.State.Running}}", "weavestore"])
            .ok()
            .stdout;
        assert_eq!(running.trim(), "true", "{}'s store member", host.name);
    }
    assert_eq!(
        ethwe_mtu(a, "web1"),
        1376,
        "web1, attached while host1 was alone, is brought to the overlay's MTU"
    );

    let web2 = run_through_proxy(b, "web2");
    let web3 = run_through_proxy(c, "web3");
    assert_eq!(ethwe_mtu(b, "web2"), 1376);
    let all = [(a, "web1", web1), (b, "web2", web2), (c, "web3", web3)];
    for (host, from, _) in all {
        for (_, to, addr) in all.iter().filter(|(_, to, _)| *to != from) {
            eventually(
                &format!("{from} on {} to reach {to} ({addr})", host.name),
                CONVERGE,
                || pings(host, from, &addr.to_string()).then_some(()),
            );
            eventually(
                &format!("{from} on {} to reach {to}.weave.local", host.name),
                CONVERGE,
                || pings(host, from, &format!("{to}.weave.local")).then_some(()),
            );
        }
    }
    // A packet larger than the overlay's MTU crosses, fragmented by web1 itself: with its ethwe
    // left at 65535 it would leave whole and be dropped at the VXLAN port without a word.
    let out = a.docker().run(&[
        "exec",
        "web1",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-s",
        "1400",
        &web2.to_string(),
    ]);
    assert_eq!(out.code, 0, "a 1428-byte ping from web1 to web2: {out:#?}");

    // Multicast crosses the hosts: the VXLAN port floods it to every peer. A container that
    // answers pings to a group (the kernel's default is not to) on host3 answers web1's ping of
    // the all-hosts group on host1.
    let out = c.sh("eval $(weave env)\ndocker run -d --name mc3 \
         --sysctl net.ipv4.icmp_echo_ignore_broadcasts=0 busybox sleep 1d");
    assert_eq!(out.code, 0, "docker run mc3 on host3: {out:#?}");
    let mc3 = c
        .docker()
        .run(&["exec", "mc3", "ip", "-4", "-o", "addr", "show", "ethwe"])
        .ok()
        .stdout;
    let mc3 = mc3
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no address on mc3's ethwe: {mc3}"))
        .to_owned();
    eventually(
        "mc3 on host3 to answer web1's ping of 224.0.0.1",
        CONVERGE,
        || {
            let out = a
                .docker()
                .run(&["exec", "web1", "ping", "-c", "2", "-W", "2", "224.0.0.1"]);
            out.stdout.contains(&format!("from {mc3}:")).then_some(())
        },
    );

    // `weave expose` on host2 puts the host on the network that spans the hosts: it reaches
    // web3 on host3 (busybox's ping: the hosts' own tools are not a given).
    let out = b.sh("weave expose");
    assert_eq!(out.code, 0, "weave expose on host2: {out:#?}");
    let busybox = weave_tests::image::busybox_binary();
    eventually("host2, exposed, to reach web3 on host3", CONVERGE, || {
        (b.sh(&format!("{} ping -c 1 -W 2 {web3}", busybox.display()))
            .code
            == 0)
            .then_some(())
    });
    eprintln!("host2 exposed at {} reaches web3", out.stdout.trim());

    // The fault: the store's first member, on host1, is gone. The two others are a quorum: a
    // container started now on host2 gets an address and a name that host3 resolves.
    a.docker().run(&["rm", "-f", "weavestore"]).ok();
    let web4 = run_through_proxy(b, "web4");
    assert!(![web1, web2, web3].contains(&web4), "{web4} given twice");
    for (host, from) in [(c, "web3"), (a, "web1")] {
        eventually(
            &format!("{from} on {} to reach web4.weave.local", host.name),
            CONVERGE,
            || pings(host, from, "web4.weave.local").then_some(()),
        );
    }

    // host1 leaves: its member is removed from the store, which goes on with two.
    let out = a.sh("weave reset");
    assert_eq!(out.code, 0, "weave reset on host1: {out:#?}");
    assert!(
        out.stdout
            .contains("removed this host's member from the store"),
        "{out:#?}"
    );
    let ps = a
        .docker()
        .run(&["ps", "-a", "--format", "{{.Names}}"])
        .ok()
        .stdout;
    assert!(!ps.contains("weavestore"), "the store outlived reset: {ps}");
    let rules = a.sh("iptables -w -S INPUT").ok().stdout;
    assert!(!rules.contains("6789"), "reset left host1's rules: {rules}");
    eventually("host2's router on a store of 2 members", GROW, || {
        store_line(b).filter(|l| l.contains("Store: 2 member(s), leader"))
    });
    eprintln!("whole test {:?}", started.elapsed());
}

/// Two hosts launched at the same moment, each naming the other (Weave Net's habit of giving
/// every host the same list): exactly one store is made, on the host with the lower address;
/// both use it, and the other host's member joins it as a learner. A container not on weave
/// cannot put a frame on the weave network through the VXLAN port.
#[test]
fn two_hosts_naming_each_other_make_one_store() {
    let Some(hosts) = DockerHosts::new(2, 0) else {
        return;
    };
    let (a, b) = (hosts.host(0), hosts.host(1));
    let launched = Instant::now();
    std::thread::scope(|scope| {
        let launches = [(a, b), (b, a)].map(|(host, other)| {
            scope.spawn(move || {
                host.sh(&format!(
                    "weave launch --nickname {} {}",
                    host.name, other.addr
                ))
            })
        });
        for (launch, host) in launches.into_iter().zip([a, b]) {
            let out = launch.join().expect("the launch thread");
            assert_eq!(out.code, 0, "weave launch on {}: {out:#?}", host.name);
        }
    });
    for (host, other) in [(a, b), (b, a)] {
        eventually(
            &format!("{} to see {} established", host.name, other.name),
            CONVERGE,
            || {
                let out = host.sh("weave status peers");
                (out.code == 0
                    && peer_line(&out.stdout, &other.name)
                        .is_some_and(|l| l.ends_with("established")))
                .then_some(())
            },
        );
    }
    eprintln!("one network after {:?}", launched.elapsed());
    // One store: host2's member joins the one host1 made, as a learner (it waits for a third
    // host to vote); two stores made apart would each show one member.
    for host in [a, b] {
        let line = eventually(
            &format!("{} on one store of two members", host.name),
            GROW,
            || store_line(host).filter(|l| l.contains("Store: 2 member(s) (1 learning), leader")),
        );
        eprintln!("{}: {}", host.name, line.trim());
    }
    let web1 = run_through_proxy(a, "web1");
    let web2 = run_through_proxy(b, "web2");
    for (host, from, to) in [(a, "web1", web2), (b, "web2", web1)] {
        eventually(
            &format!("{from} on {} to reach {to}", host.name),
            CONVERGE,
            || pings(host, from, &to.to_string()).then_some(()),
        );
    }

    // A container that is not on weave (Docker's own bridge on host2) sends host2's VXLAN port
    // a datagram holding an ARP request for web2 from a made-up address: were it let in, the
    // kernel would put the frame on the weave bridge and web2 would learn the made-up
    // neighbour (checked by hand on this kernel). The INPUT rule keeps it out.
    let out = b
        .docker()
        .run(&["run", "-d", "--name", "outsider", "busybox", "sleep", "1d"]);
    assert_eq!(out.code, 0, "docker run outsider on host2: {out:#?}");
    let pid: i32 = b
        .docker()
        .run(&["inspect", "--format", "{{.State.Pid}}", "outsider"])
        .ok()
        .stdout
        .trim()
        .parse()
        .expect("outsider's pid");
    let forged = forged_arp(1, Ipv4Addr::new(10, 47, 255, 254), web2);
    for _ in 0..3 {
        send_udp_from(pid, &forged, (b.addr, 6789));
    }
    holds_for(
        "web2 without the forged neighbour",
        Duration::from_secs(2),
        || {
            !b.docker()
                .run(&["exec", "web2", "ip", "neigh", "show"])
                .ok()
                .stdout
                .contains("10.47.255.254")
        },
    );
}

/// A VXLAN datagram (VNI `vni`) carrying a broadcast ARP request for `target` from `sender`, with
/// a made-up MAC address.
fn forged_arp(vni: u32, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(&[0xff; 6]);
    d.extend_from_slice(&mac);
    d.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    d.extend_from_slice(&mac);
    d.extend_from_slice(&sender.octets());
    d.extend_from_slice(&[0; 6]);
    d.extend_from_slice(&target.octets());
    d
}

/// Sends `datagram` to `to` from inside the network namespace of process `pid` (a container),
/// as the container itself would.
fn send_udp_from(pid: i32, datagram: &[u8], to: (Ipv4Addr, u16)) {
    let datagram = datagram.to_vec();
    std::thread::spawn(move || {
        // setns moves only this thread, which ends here.
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the container's netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
        socket.send_to(&datagram, to).expect("send the datagram");
    })
    .join()
    .expect("the sending thread");
}

/// Issue 15 on several hosts: each host's `weave` network (the plugin's, local scope) is one
/// segment with the others', with addresses from the one allocator and names in the one
/// weaveDNS. Containers started on the daemons directly with `--net=weave` reach each other
/// and a proxy-attached container across the hosts, by address and by name (`$(weave
/// dns-args)`), and `weave dns-lookup` on either host knows the other's.
#[test]
fn plugin_networks_on_two_hosts_are_one_segment() {
    let Some(hosts) = DockerHosts::new(2, 1) else {
        return;
    };
    let (a, b) = (hosts.host(0), hosts.host(1));
    for i in 0..hosts.len() {
        let out = hosts.launch(i);
        assert_eq!(out.code, 0, "weave launch on host{}: {out:#?}", i + 1);
    }
    let run_on_weave = |host: &DockerHost, name: &str| -> Ipv4Addr {
        let out = host.sh(&format!(
            "docker run -d --name {name} --net=weave $(weave dns-args) busybox sleep 1d"
        ));
        assert_eq!(
            out.code, 0,
            "docker run --net=weave on {}: {out:#?}",
            host.name
        );
        let addr = host
            .docker()
            .run(&[
                "inspect",
                "--format",
                "{{.NetworkSettings.Networks.weave.IPAddress}}",
                name,
            ])
            .ok()
            .stdout;
        addr.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} has no address on weave: {addr:?}"))
    };
    let p1 = run_on_weave(a, "p1");
    let p2 = run_on_weave(b, "p2");
    assert_ne!(p1, p2, "one allocator across the hosts");
    let web2 = run_through_proxy(b, "web2");

    let reached = Instant::now();
    for (host, from, to) in [
        (a, "p1", p2.to_string()),
        (b, "p2", p1.to_string()),
        (a, "p1", web2.to_string()),
        // weaveDNS knows the plugin's containers of every host, and they reach it (Docker's
        // embedded DNS forwards to it from inside each container).
        (a, "p1", "p2.weave.local".to_owned()),
        (b, "p2", "p1".to_owned()),
        (a, "p1", "web2".to_owned()),
        (b, "web2", "p1.weave.local".to_owned()),
    ] {
        eventually(
            &format!("{from} on {} to reach {to}", host.name),
            CONVERGE,
            || pings(host, from, &to).then_some(()),
        );
    }
    eprintln!("all reached after {:?}", reached.elapsed());
    for (host, name, addr) in [(a, "p2", p2), (b, "p1", p1)] {
        let out = host.sh(&format!("weave dns-lookup {name}.weave.local"));
        assert_eq!(
            out.code, 0,
            "weave dns-lookup {name} on {}: {out:#?}",
            host.name
        );
        assert_eq!(
            out.stdout.trim(),
            addr.to_string(),
            "{name} on {}",
            host.name
        );
    }
}
