//! The real `weaver` binary: flags, the unix-socket listener, readiness, SIGTERM, state kept across
//! a restart, the bridge and its iptables rules, the range check, and `weaver reset`.

use std::process::Command;

use weave_tests::Weaver;
use weave_tests::netns::host_link;
use weave_tests::weaver::{self, forward_rules, reset};

#[test]
fn weaver_serves_ipam_on_a_unix_socket_and_keeps_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("weave.sock");
    let socket = socket.to_str().unwrap();

    // Ids that are not containers, so no check-alive: the router would ask Docker and cancel.
    let mut weaver = Weaver::builder()
        .listen(socket)
        .range("10.2.0.0/16")
        .default_subnet("10.2.3.0/24")
        .start();
    let ok = |status, body: &str| (status, body.to_owned());
    assert_eq!(
        weaver.request("GET", "/ipinfo/defaultsubnet", ""),
        ok(200, "10.2.3.0/24")
    );
    assert_eq!(weaver.request("POST", "/ip/c1", ""), ok(200, "10.2.3.1/24"));
    assert_eq!(weaver.request("PUT", "/ip/c2/10.2.3.2/24", ""), ok(204, ""));
    let (status, body) = weaver.request("GET", "/status", "");
    assert_eq!(status, 200);
    assert!(
        body.contains("        Service: ipam\n         Status: ready\n"),
        "{body}"
    );
    assert!(weaver.stop(), "weaver did not exit 0 on SIGTERM");
    assert!(weaver.data_dir().join("ipam.json").exists());

    // A stale socket file from the previous run is replaced, and the state is back.
    assert!(std::path::Path::new(socket).exists());
    weaver.restart();
    assert_eq!(weaver.lookup("c1"), "10.2.3.1/24");
    assert_eq!(weaver.request("POST", "/ip/c3", ""), ok(200, "10.2.3.3/24"));
    assert!(weaver.stop());
}

#[test]
fn weaver_refuses_a_default_subnet_outside_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(weaver::binary())
        .arg("--http-addr")
        .arg(dir.path().join("weave.sock"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--weave-bridge", &weaver::unique_bridge()])
        .args([
            "--ipalloc-range",
            "10.2.0.0/16",
            "--ipalloc-default-subnet",
            "10.3.0.0/24",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "default subnet 10.3.0.0/24 does not overlap with the allocation range 10.2.0.0/16"
        ),
        "{stderr}"
    );
}

#[test]
fn bad_flags_exit_64() {
    let output = Command::new(weaver::binary())
        .args(["--ipalloc-range", "not-a-cidr"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

/// The bridge is made up with the MTU asked for, the rules are in place, both survive SIGTERM,
/// and `weaver reset` removes them and the saved state, saying so, and is idempotent.
#[test]
fn bridge_and_rules_outlive_the_router_until_reset() {
    let mut weaver = Weaver::builder().mtu(9000).range("10.2.0.0/16").start();
    let bridge = weaver.bridge().to_owned();
    let link = Command::new("ip")
        .args(["-d", "link", "show", "dev", &bridge])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains("mtu 9000"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    assert!(link.contains("bridge"), "{link}");

    let accept = format!("-i {bridge} -o {bridge} -j ACCEPT");
    let isolate = format!("-i {} -o {bridge} -j DROP", weaver::docker_bridge());
    let rules = forward_rules();
    assert!(rules.contains(&accept), "{rules}");
    assert!(rules.contains(&isolate), "{rules}");
    // Exactly once each, also after a restart (the rules are checked before they are added).
    weaver.request("POST", "/ip/x", "");
    assert!(weaver.stop());
    weaver.restart();
    let rules = forward_rules();
    assert_eq!(rules.matches(&accept).count(), 1, "{rules}");
    assert_eq!(rules.matches(&isolate).count(), 1, "{rules}");

    assert!(weaver.stop());
    assert!(host_link(&bridge).is_some(), "SIGTERM must keep the bridge");
    assert!(
        forward_rules().contains(&accept),
        "SIGTERM must keep the rules"
    );

    let out = reset(&bridge, weaver.data_dir());
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let data = weaver.data_dir().display();
    let chain = if forward_rules().contains("-N DOCKER-USER") {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    assert_eq!(
        printed,
        format!(
            "removed iptables rule: -A {chain} {isolate}\n\
             removed iptables rule: -A {chain} -i br-+ -o {bridge} -j DROP\n\
             removed iptables rule: -A {chain} {accept}\n\
             removed bridge {bridge}\n\
             removed {data}/ipam.json\n"
        )
    );
    assert!(host_link(&bridge).is_none());
    assert!(!forward_rules().contains(&bridge), "{}", forward_rules());
    assert!(!weaver.data_dir().join("ipam.json").exists());

    let again = reset(&bridge, weaver.data_dir());
    assert!(again.status.success(), "{again:?}");
    assert_eq!(String::from_utf8_lossy(&again.stdout), "");
}

/// A host route of the host overlapping a range the user chose is only a warning (the default
/// range is refused; see the unit test of the verdict).
#[test]
fn a_chosen_range_overlapping_a_host_route_is_a_warning() {
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "main"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    let Some(route) = routes
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|dest| dest.contains('/'))
    else {
        weave_tests::skip::skip("no host route to overlap");
        return;
    };
    let weaver = Weaver::builder().range(route).start();
    let log = weaver.log();
    assert!(
        log.contains(&format!(
            "--ipalloc-range {route} overlaps with existing route(s) {route}"
        )),
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
}
