//! The bridge and the host's routing table, against the real kernel (run as root).

mod common;

use common::{BridgeGuard, LinkGuard, host_link_exists, ip, net, unique_name};
use weavenet::{NetError, delete_bridge, ensure_bridge, find_bridge, overlapping_routes};

#[tokio::test]
async fn bridge_is_created_once_with_its_mtu_and_deleted() {
    let br = BridgeGuard::new();
    let (bridge, created) = ensure_bridge(&br.name, weavenet::DEFAULT_MTU)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(bridge.name, br.name);
    assert_eq!(bridge.mtu, 65535, "the kernel took MTU 65535 for a bridge");

    let shown = ip(&["-d", "-o", "link", "show", "dev", &br.name]);
    assert!(shown.contains("mtu 65535"), "{shown}");
    assert!(shown.contains("<BROADCAST,MULTICAST,UP"), "{shown}");
    assert!(shown.contains(" bridge "), "{shown}");
    let accept_ra =
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/accept_ra", br.name)).unwrap();
    assert_eq!(accept_ra.trim(), "0");

    let (again, created) = ensure_bridge(&br.name, 1376).await.unwrap();
    assert!(!created);
    assert_eq!(again, bridge, "an existing bridge keeps its MTU");
    assert_eq!(find_bridge(&br.name).await.unwrap(), Some(bridge));

    assert!(delete_bridge(&br.name).await.unwrap());
    assert!(!host_link_exists(&br.name));
    assert_eq!(find_bridge(&br.name).await.unwrap(), None);
    assert!(!delete_bridge(&br.name).await.unwrap());
}

#[tokio::test]
async fn existing_down_bridge_is_brought_up() {
    let br = BridgeGuard::new();
    ip(&["link", "add", &br.name, "type", "bridge"]);
    let (bridge, created) = ensure_bridge(&br.name, 1376).await.unwrap();
    assert!(!created);
    assert_eq!(bridge.mtu, 1500, "not ours to change");
    let shown = ip(&["-o", "link", "show", "dev", &br.name]);
    assert!(shown.contains(",UP"), "{shown}");
}

#[tokio::test]
async fn bridge_with_a_small_mtu() {
    let br = BridgeGuard::new();
    let (bridge, created) = ensure_bridge(&br.name, 1376).await.unwrap();
    assert!(created);
    assert_eq!(bridge.mtu, 1376);
    assert!(ip(&["-o", "link", "show", "dev", &br.name]).contains("mtu 1376"));
}

#[tokio::test]
async fn a_link_of_another_type_is_not_a_bridge() {
    let (name, peer) = (unique_name("wvt"), unique_name("wvp"));
    let _links = LinkGuard(vec![name.clone()]);
    ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);

    let err = ensure_bridge(&name, 1376).await.unwrap_err();
    assert!(
        matches!(&err, NetError::NotABridge(n) if *n == name),
        "{err}"
    );
    let err = find_bridge(&name).await.unwrap_err();
    assert!(matches!(err, NetError::NotABridge(_)), "{err}");
    let err = delete_bridge(&name).await.unwrap_err();
    assert!(matches!(err, NetError::NotABridge(_)), "{err}");
    assert!(host_link_exists(&name), "left alone");
}

#[tokio::test]
async fn routes_overlapping_a_range() {
    let br = BridgeGuard::new();
    ensure_bridge(&br.name, 1376).await.unwrap();
    // A subnet unlikely to be in use, distinct per test process.
    let third = std::process::id() % 250;
    let subnet = format!("10.251.{third}.0/24");
    ip(&[
        "addr",
        "add",
        &format!("10.251.{third}.1/24"),
        "dev",
        &br.name,
    ]);

    let found = overlapping_routes(net("10.251.0.0/16"), None)
        .await
        .unwrap();
    assert!(found.contains(&net(&subnet)), "{found:?}");
    let found = overlapping_routes(net(&format!("10.251.{third}.128/25")), None)
        .await
        .unwrap();
    assert!(found.contains(&net(&subnet)), "{found:?}");

    let skipped = overlapping_routes(net("10.251.0.0/16"), Some(&br.name))
        .await
        .unwrap();
    assert!(!skipped.contains(&net(&subnet)), "{skipped:?}");

    let everything = overlapping_routes(net("0.0.0.0/0"), None).await.unwrap();
    assert!(everything.contains(&net(&subnet)));
    assert!(
        !everything.contains(&net("0.0.0.0/0")),
        "the default route is no conflict"
    );
    let elsewhere = overlapping_routes(net("10.251.0.0/16"), None)
        .await
        .unwrap();
    assert!(elsewhere.iter().all(|r| r.prefix_len() > 0));
    assert_eq!(
        overlapping_routes(net("203.0.113.0/24"), None)
            .await
            .unwrap(),
        vec![],
        "TEST-NET-3 is routed nowhere but by the default route"
    );
}
