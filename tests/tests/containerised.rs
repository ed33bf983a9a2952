//! `weaveproxy` running inside a container binds weavewait from a path that exists on the host.
//!
//! The proxy installs weavewait under its data directory and tells the daemon to bind that
//! directory into containers; the daemon resolves bind sources on the host. So when the proxy
//! itself runs in a container, the data directory is mounted at the same path inside and out,
//! and the weaveexec image's own `/w/w`, `/w-nomcast/w`, `/w-noop/w` are the source.
//!
//! No router runs here, so the container is only created through the proxy and started on the
//! daemon after the proxy has stopped: it waits in weavewait, which is all this test needs.

use std::fs;
use std::time::Duration;

use weave_tests::daemon::target_socket;
use weave_tests::proxy::{binary, weavewait_layout};
use weave_tests::{Docker, Scope, eventually, test_image};

#[test]
fn a_containerised_proxy_binds_weavewait_from_the_host() {
    let busybox = test_image();
    let scope = Scope::new();
    let daemon = Docker::daemon();
    let label = scope.label();

    // An image like weaveexec: FROM scratch, the static proxy and the weavewait builds at /w*.
    let context = tempfile::tempdir().unwrap();
    fs::copy(binary(), context.path().join("weaveproxy")).unwrap();
    weavewait_layout(context.path());
    fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /\nENTRYPOINT [\"/weaveproxy\"]\n",
    )
    .unwrap();
    let image = format!("{}:proxy", scope.name("img"));
    daemon.build(&scope, &image, context.path());

    // The socket directory and the data directory are the same paths inside and out.
    let shared = tempfile::Builder::new()
        .prefix("weaveproxy-ct")
        .tempdir()
        .unwrap();
    let shared_dir = shared.path().to_str().unwrap().to_owned();
    let socket = format!("{shared_dir}/proxy.sock");
    let data = format!("{shared_dir}/data");
    let docker_socket = target_socket();
    let proxy_name = scope.name("proxy");
    daemon.run_detached(
        &scope,
        "proxy",
        &[
            "-v",
            &format!("{}:/var/run/docker.sock", docker_socket.display()),
            "-v",
            &format!("{shared_dir}:{shared_dir}"),
        ],
        &image,
        &[
            "-H",
            &format!("unix://{socket}"),
            "--docker-api",
            "unix:///var/run/docker.sock",
            "--data-dir",
            &data,
            "--no-default-ipalloc",
        ],
    );
    let proxied = Docker::new(format!("unix://{socket}"));
    eventually(
        "the containerised proxy to answer",
        Duration::from_secs(20),
        || (proxied.run(&["version"]).code == 0).then_some(()),
    );

    // Created through the proxy; started on the daemon once the proxy is gone, so that it runs
    // (waiting in weavewait) although no router is there to attach it.
    let name = scope.name("app");
    proxied
        .run(&[
            "create",
            "--label",
            &label,
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=10.2.1.1/24",
            &busybox,
            "echo",
            "ok",
        ])
        .ok();
    let source = daemon
        .run(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{if eq .Destination \"/w\"}}{{.Source}}{{end}}{{end}}",
            &name,
        ])
        .ok()
        .out()
        .to_owned();
    assert!(
        source.starts_with(&data),
        "bound from {source:?}, not under {data}"
    );
    // The path the daemon bound exists on the host, with the image's /w/w in it...
    let installed = fs::read(format!("{source}/w")).unwrap();
    assert_eq!(installed, fs::read(context.path().join("w/w")).unwrap());
    // ...and runs inside the container: weavewait with no program is its usage error.
    daemon.run(&["stop", "-t", "10", &proxy_name]).ok();
    daemon.run(&["start", &name]).ok();
    let usage = daemon.run(&["exec", &name, "/w/w"]);
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.starts_with("weavewait:"), "{usage:?}");

    let logs = daemon.run(&["logs", &proxy_name]);
    assert!(logs.stderr.contains("listening"), "{logs:?}");
}
