//! Listening and upstream transports: unix sockets shaped like Docker's, TCP both ways.

use std::os::unix::fs::MetadataExt;

use weave_tests::daemon::target_socket;
use weave_tests::{Docker, Proxy, target_daemon, test_image};

#[test]
fn unix_socket_takes_owner_group_and_mode_from_the_docker_socket() {
    let proxy = Proxy::start();
    let docker = std::fs::metadata(target_socket()).unwrap();
    let ours = std::fs::metadata(proxy.socket()).unwrap();
    assert_eq!(
        (ours.uid(), ours.gid(), ours.mode() & 0o7777),
        (docker.uid(), docker.gid(), docker.mode() & 0o7777)
    );
}

#[test]
fn tcp_listener_in_front_of_a_tcp_upstream() {
    let image = test_image();
    // A first proxy serves TCP in front of the daemon's unix socket; a second one forwards to
    // that over TCP. Both transports are then on the path of every byte.
    let port = free_port();
    let tcp_addr = format!("tcp://127.0.0.1:{port}");
    let front = Proxy::start_with(&target_daemon(), &["-H", &tcp_addr]);
    let over_tcp = Docker::new(&tcp_addr);
    assert_eq!(
        over_tcp
            .run(&["version", "--format", "{{.Server.APIVersion}}"])
            .ok()
            .stdout,
        front
            .docker()
            .run(&["version", "--format", "{{.Server.APIVersion}}"])
            .ok()
            .stdout
    );
    let chained = Proxy::start_with(&tcp_addr, &[]);
    let out = chained
        .docker()
        .run_with_stdin(&["run", "-i", "--rm", &image, "cat"], Some(b"over tcp\n"))
        .ok();
    assert_eq!(out.stdout, "over tcp\n");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
