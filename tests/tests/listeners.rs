//! Listeners never widen exposure: the real `weaveproxy` refuses plain HTTP on an address the
//! network can reach unless told `--tls=false`, and warns at start when it is.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

use weave_tests::{Docker, Proxy, target_daemon};

const SERVER_VERSION: [&str; 3] = ["version", "--format", "{{.Server.Version}}"];
/// The start-up warning's words for a plain listener on the network.
const WARNING: &str = "plain HTTP to the network";

/// An IPv4 address of this host that is not loopback: Docker's bridge `docker0` when there is
/// one (only this host and its containers route to it, so the tests open nothing to the
/// network), else the first other one.
fn non_loopback_address() -> Ipv4Addr {
    let found: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .expect("the host's addresses can be listed")
        .filter_map(|ifa| {
            let ip = ifa.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback()).then_some((ifa.interface_name, ip))
        })
        .collect();
    found
        .iter()
        .find(|(name, _)| name == "docker0")
        .or_else(|| found.first())
        .map(|(_, ip)| *ip)
        .expect("this host has a non-loopback IPv4 address")
}

fn free_port(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn plain_http_on_the_network_is_refused_naming_tls_false() {
    let dir = tempfile::tempdir().unwrap();
    let ip = non_loopback_address();
    let every = "-H tcp://0.0.0.0:0".to_owned();
    let cases = [
        ("tcp://0.0.0.0:0".to_owned(), every.clone()),
        (":0".to_owned(), every),
        (format!("tcp://{ip}:0"), format!("-H tcp://{ip}:0")),
    ];
    for (addr, named) in cases {
        let out = Command::new(weave_tests::proxy::binary())
            .args(["-H", &addr, "--docker-api", &target_daemon()])
            .args(["--data-dir", &dir.path().join("data").display().to_string()])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A usage error (64), before anything is bound.
        assert_eq!(out.status.code(), Some(64), "{addr}: {stderr}");
        for needle in [named.as_str(), "--tls=false", "plain HTTP"] {
            assert!(
                stderr.contains(needle),
                "{addr}: {needle} missing: {stderr}"
            );
        }
    }
}

#[test]
fn tls_false_serves_plain_http_on_the_network_and_warns() {
    let ip = non_loopback_address();
    let addr = format!("tcp://{ip}:{}", free_port(ip));
    let proxy = Proxy::start_with(&target_daemon(), &["-H", &addr, "--tls=false"]);
    let daemon_version = Docker::daemon().run(&SERVER_VERSION).ok().stdout;
    // Served only once every listener is bound, so the start-up log is complete by then.
    let over_tcp = Docker::new(&addr).run(&SERVER_VERSION).ok().stdout;
    assert_eq!(over_tcp, daemon_version);
    let log = proxy.log();
    let warning = log
        .lines()
        .find(|line| line.contains(WARNING))
        .unwrap_or_else(|| panic!("no warning in the log:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&addr), "{warning}");
}

#[test]
fn loopback_listeners_need_no_flag_and_get_no_warning() {
    let addr = format!("tcp://127.0.0.1:{}", free_port(Ipv4Addr::LOCALHOST));
    let proxy = Proxy::start_with(&target_daemon(), &["-H", &addr]);
    Docker::new(&addr).run(&SERVER_VERSION).ok();
    let log = proxy.log();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains(WARNING), "{log}");
}
