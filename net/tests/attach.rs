//! Attaching "containers" (`unshare -n sleep` children) to a bridge, against the real kernel
//! (run as root).

mod common;

use std::time::{Duration, Instant};

use common::{BridgeGuard, Container, ForwardRule, LinkGuard, host_link_exists, ip, net, udp_echo};
use ipnet::Ipv4Net;
use weavenet::{
    AttachRequest, Attached, NetError, Process, attach, attached_pids, container_addrs,
    delete_bridge, detach, ensure_bridge, host_veth_name, peer_veth_name,
};

fn request<'a>(process: &'a Process, bridge: &'a str, cidrs: &'a [Ipv4Net]) -> AttachRequest<'a> {
    AttachRequest {
        process,
        bridge,
        cidrs,
        multicast_route: true,
    }
}

#[tokio::test]
async fn attach_gives_the_container_ethwe() {
    let br = BridgeGuard::new();
    let (bridge, _) = ensure_bridge(&br.name, weavenet::DEFAULT_MTU)
        .await
        .unwrap();
    let c = Container::start();
    let cidrs = [net("10.32.0.5/12")];

    let got = attach(&request(&c.process(), &br.name, &cidrs))
        .await
        .unwrap();
    assert_eq!(
        got,
        Attached {
            created: true,
            added: cidrs.to_vec()
        }
    );

    let ethwe = c.ip(&["-o", "link", "show", "dev", "ethwe"]);
    assert!(ethwe.contains(",UP,LOWER_UP"), "{ethwe}");
    assert!(
        ethwe.contains(&format!("mtu {}", bridge.mtu)),
        "MTU from the bridge: {ethwe}"
    );
    let addrs = c.ip(&["-4", "-o", "addr", "show", "dev", "ethwe"]);
    assert!(
        addrs.contains("inet 10.32.0.5/12 brd 10.47.255.255"),
        "{addrs}"
    );
    let route = c.ip(&["route", "show", "224.0.0.0/4"]);
    assert_eq!(
        route.trim(),
        "224.0.0.0/4 dev ethwe proto static scope link"
    );
    for (knob, want) in [
        ("ipv4/neigh/ethwe/base_reachable_time", "5"),
        ("ipv4/neigh/ethwe/delay_first_probe_time", "2"),
        ("ipv4/neigh/ethwe/ucast_solicit", "1"),
        ("ipv6/conf/ethwe/accept_ra", "0"),
    ] {
        let (ok, value) = c.exec("cat", &[&format!("/proc/sys/net/{knob}")]);
        assert!(ok && value.trim() == want, "{knob} = {value:?}");
    }
    let (_, leftover) = c.exec("ip", &["link", "show", "dev", &peer_veth_name(c.pid)]);
    assert!(leftover.is_empty(), "the peer was renamed");

    let host = host_veth_name(c.pid);
    let shown = ip(&["-d", "-o", "link", "show", "dev", &host]);
    assert!(shown.contains(&format!("master {}", br.name)), "{shown}");
    assert!(shown.contains("hairpin on"), "{shown}");
    assert!(shown.contains(&format!("mtu {}", bridge.mtu)), "{shown}");
    assert!(shown.contains("state UP"), "{shown}");
    assert!(!host_link_exists(&peer_veth_name(c.pid)));

    assert_eq!(container_addrs(&c.process()).await.unwrap(), cidrs.to_vec());
    assert_eq!(attached_pids(&br.name).await.unwrap(), vec![c.pid]);

    // Again, with one more address: nothing is recreated, only the new address is added.
    let more = [net("10.32.0.5/12"), net("10.2.2.9/24")];
    let again = attach(&request(&c.process(), &br.name, &more))
        .await
        .unwrap();
    assert_eq!(
        again,
        Attached {
            created: false,
            added: vec![net("10.2.2.9/24")]
        }
    );
    assert_eq!(container_addrs(&c.process()).await.unwrap(), more.to_vec());
    let same = attach(&request(&c.process(), &br.name, &more))
        .await
        .unwrap();
    assert_eq!(
        same,
        Attached {
            created: false,
            added: vec![]
        }
    );

    assert!(detach(&c.process()).await.unwrap());
    assert!(!host_link_exists(&host));
    assert!(!c.has_ethwe(), "deleting the host end removes ethwe");
    assert_eq!(container_addrs(&c.process()).await.unwrap(), vec![]);
    assert_eq!(attached_pids(&br.name).await.unwrap(), Vec::<i32>::new());
    assert!(!detach(&c.process()).await.unwrap());
}

#[tokio::test]
async fn no_multicast_route_when_not_asked() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    let c = Container::start();
    let cidrs = [net("10.32.0.6/12")];
    let process = c.process();
    let req = AttachRequest {
        multicast_route: false,
        ..request(&process, &br.name, &cidrs)
    };
    attach(&req).await.unwrap();
    assert_eq!(c.ip(&["route", "show", "224.0.0.0/4"]).trim(), "");
    assert!(
        c.ip(&["-o", "link", "show", "dev", "ethwe"])
            .contains("mtu 1376")
    );
}

#[tokio::test]
async fn attached_containers_reach_each_other_and_hear_gratuitous_arp() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, weavenet::DEFAULT_MTU)
        .await
        .unwrap();
    let _forward = ForwardRule::allow(&br.name);
    let (a, b) = (Container::start(), Container::start());
    let (a_net, b_net) = ([net("10.40.1.1/24")], [net("10.40.1.2/24")]);
    attach(&request(&a.process(), &br.name, &a_net))
        .await
        .unwrap();
    attach(&request(&b.process(), &br.name, &b_net))
        .await
        .unwrap();

    let a_ip = a_net[0].addr();
    udp_echo(b.pid, a.pid, a_ip, b"hello".to_vec()).expect("b reaches a");
    udp_echo(a.pid, b.pid, b_net[0].addr(), vec![7; 9000]).expect("a reaches b, jumbo");

    // b now knows a's MAC. Re-create a's ethwe (new MAC, same IP): only a's gratuitous ARP can
    // tell b, which sends nothing meanwhile.
    let old_mac = a.ethwe_mac();
    assert!(
        b.ip(&["neigh", "show", "10.40.1.1", "dev", "ethwe"])
            .contains(&old_mac)
    );
    assert!(detach(&a.process()).await.unwrap());
    attach(&request(&a.process(), &br.name, &a_net))
        .await
        .unwrap();
    let new_mac = a.ethwe_mac();
    assert_ne!(new_mac, old_mac);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let neigh = b.ip(&["neigh", "show", "10.40.1.1", "dev", "ethwe"]);
        if neigh.contains(&new_mac) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b still has {neigh:?}, a is {new_mac}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_attaches() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, weavenet::DEFAULT_MTU)
        .await
        .unwrap();
    let containers: Vec<Container> = (0..20).map(|_| Container::start()).collect();
    let cidrs: Vec<[Ipv4Net; 1]> = (0..20)
        .map(|i| [net(&format!("10.32.1.{}/12", i + 1))])
        .collect();

    let mut tasks = Vec::new();
    for (c, cidr) in containers.iter().zip(&cidrs) {
        let (process, bridge, cidr) = (c.process(), br.name.clone(), *cidr);
        tasks.push(tokio::spawn(async move {
            attach(&request(&process, &bridge, &cidr)).await
        }));
    }
    for (task, cidr) in tasks.into_iter().zip(&cidrs) {
        let got = task.await.unwrap().unwrap();
        assert!(got.created);
        assert_eq!(got.added, cidr.to_vec());
    }
    for (c, cidr) in containers.iter().zip(&cidrs) {
        assert_eq!(container_addrs(&c.process()).await.unwrap(), cidr.to_vec());
    }
    let mut pids: Vec<i32> = containers.iter().map(|c| c.pid).collect();
    pids.sort_unstable();
    assert_eq!(attached_pids(&br.name).await.unwrap(), pids);

    // Deleting the bridge takes every container's veth with it.
    assert!(delete_bridge(&br.name).await.unwrap());
    for c in &containers {
        assert!(!host_link_exists(&host_veth_name(c.pid)));
        assert!(!c.has_ethwe());
    }
    assert_eq!(attached_pids(&br.name).await.unwrap(), Vec::<i32>::new());
}

#[tokio::test]
async fn median_of_twenty_sequential_attaches() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, weavenet::DEFAULT_MTU)
        .await
        .unwrap();
    let containers: Vec<Container> = (0..20).map(|_| Container::start()).collect();
    let mut times = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let cidrs = [net(&format!("10.32.2.{}/12", i + 1))];
        let start = Instant::now();
        attach(&request(&c.process(), &br.name, &cidrs))
            .await
            .unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "attach: median {:.2} ms, min {:.2} ms, max {:.2} ms over {}",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    assert!(median < Duration::from_millis(500), "{median:?}");
}

#[tokio::test]
async fn missing_bridge_is_no_bridge() {
    let br = BridgeGuard::new();
    let c = Container::start();
    let cidrs = [net("10.32.0.7/12")];
    let err = attach(&request(&c.process(), &br.name, &cidrs))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::NoBridge(n) if *n == br.name),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("bridge \"{}\" not present; did you launch weave?", br.name)
    );
    assert!(!host_link_exists(&host_veth_name(c.pid)));
    assert!(!c.has_ethwe());
}

#[tokio::test]
async fn gone_or_host_process_is_a_namespace_error() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    let cidrs = [net("10.32.0.8/12")];

    let mut c = Container::start();
    let pid = c.pid;
    let pinned = c.process();
    c.kill();
    let err = attach(&request(&pinned, &br.name, &cidrs))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::Namespace { pid: p, .. } if p == pid),
        "{err}"
    );
    assert!(!host_link_exists(&host_veth_name(pid)));
    assert!(matches!(
        container_addrs(&pinned).await,
        Err(NetError::Namespace { .. })
    ));

    let me = i32::try_from(std::process::id()).unwrap();
    let myself = Process::pin(me).unwrap();
    let err = attach(&request(&myself, &br.name, &cidrs))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("host's network namespace"),
        "{err}"
    );
    assert!(!host_link_exists(&host_veth_name(me)));
}

#[tokio::test]
async fn failure_after_the_veth_exists_removes_it() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    let c = Container::start();
    // The kernel refuses a multicast address on an interface, after the veth was made.
    let cidrs = [net("10.32.0.9/12"), net("224.1.2.3/24")];

    let err = attach(&request(&c.process(), &br.name, &cidrs))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("adding 224.1.2.3/24 to ethwe"),
        "{err}"
    );
    assert!(!host_link_exists(&host_veth_name(c.pid)), "veth removed");
    assert!(!c.has_ethwe());
}

#[tokio::test]
async fn peer_name_taken_in_the_container_creates_nothing() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    let c = Container::start();
    let peer = peer_veth_name(c.pid);
    let (ok, _) = c.exec(
        "ip",
        &[
            "link", "add", &peer, "type", "veth", "peer", "name", "blocker",
        ],
    );
    assert!(ok);
    let cidrs = [net("10.32.0.9/12")];

    let err = attach(&request(&c.process(), &br.name, &cidrs))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("creating veth {}", host_veth_name(c.pid))),
        "{err}"
    );
    assert!(!host_link_exists(&host_veth_name(c.pid)));
    assert!(!host_link_exists(&peer));
    assert!(!c.has_ethwe());
    assert!(
        c.exec("ip", &["link", "show", "dev", "blocker"]).0,
        "theirs, left alone"
    );
}

#[tokio::test]
async fn a_leftover_host_veth_of_an_earlier_process_with_the_pid_is_replaced() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    let c = Container::start();
    let host = host_veth_name(c.pid);
    let _links = LinkGuard(vec![host.clone()]);
    // What a process that had this PID before could have left: its veth, peer elsewhere.
    ip(&[
        "link",
        "add",
        &host,
        "type",
        "veth",
        "peer",
        "name",
        &format!("wvq{}", c.pid),
    ]);
    assert!(host_link_exists(&host), "the leftover is there");
    let cidrs = [net("10.32.0.10/12")];

    let got = attach(&request(&c.process(), &br.name, &cidrs))
        .await
        .unwrap();
    assert!(got.created);
    assert!(c.has_ethwe());
    assert!(
        !host_link_exists(&format!("wvq{}", c.pid)),
        "the leftover pair is gone"
    );
    assert_eq!(container_addrs(&c.process()).await.unwrap(), cidrs.to_vec());
}

#[tokio::test]
async fn two_attaches_of_one_container_at_once_both_succeed_and_build_one_veth() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    for round in 0..20 {
        let c = Container::start();
        let cidrs = [net(&format!("10.32.3.{}/12", round + 1))];
        let process = c.process();
        let req = request(&process, &br.name, &cidrs);
        let (one, two) = tokio::join!(attach(&req), attach(&req));
        let (one, two) = (one.unwrap(), two.unwrap());
        assert!(
            one.created != two.created,
            "round {round}: exactly one builds the veth: {one:?} {two:?}"
        );
        assert!(c.has_ethwe());
        assert_eq!(container_addrs(&process).await.unwrap(), cidrs.to_vec());
        let route = c.ip(&["route", "show", "224.0.0.0/4"]);
        assert!(route.contains("dev ethwe"), "round {round}: {route}");
    }
}
