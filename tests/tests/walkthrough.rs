//! The seed documents' command blocks, run verbatim by bash on a clean daemon, one test per
//! block (each launching what the block assumes first), with their output checked; and the
//! `weave` command's own life cycle: launching twice, stop and launch keeping addresses, reset
//! leaving nothing behind.
//!
//! `ubuntu` is the busybox test image under that name: no registry is reachable here.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use weave_tests::pki::Pki;
use weave_tests::weave::WeaveShell;
use weave_tests::{Docker, Proxy, eventually, http};

const SOCKET: &str = "unix:///var/run/weave/weave.sock";

fn ok(out: weave_tests::Output) -> weave_tests::Output {
    assert_eq!(out.code, 0, "block failed: {out:#?}");
    out
}

/// Container ids are 64 hex digits.
fn is_id(line: &str) -> bool {
    line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn block_weave_launch() {
    let shell = WeaveShell::new();
    let out = ok(shell.run("host1$ weave launch".trim_start_matches("host1$ ")));
    let ids: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{out:#?}");
    assert!(ids.iter().all(|l| is_id(l)), "{out:#?}");
    let status = ok(shell.run("weave status")).stdout;
    for want in [
        "Service: router",
        "Service: ipam",
        "Service: dns",
        "Service: proxy",
    ] {
        assert!(status.contains(want), "{want} missing from:\n{status}");
    }
    assert!(status.contains(&format!("Address: {SOCKET}")), "{status}");
    // Least privilege: explicit capabilities, never --privileged.
    let inspect = Docker::daemon()
        .run(&[
            "inspect",
            "--format",
            "{{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.CapAdd}}",
            "weave",
            "weaveproxy",
        ])
        .stdout;
    for line in inspect.lines() {
        assert_eq!(
            line, "false host host always [NET_ADMIN NET_RAW SYS_ADMIN SYS_PTRACE]",
            "{inspect}"
        );
    }
}

#[test]
fn block_launch_router_and_launch_proxy() {
    let shell = WeaveShell::new();
    let out = ok(shell.run("weave launch-router && weave launch-proxy"));
    assert_eq!(
        out.stdout.lines().filter(|l| is_id(l)).count(),
        2,
        "{out:#?}"
    );
    let env = ok(shell.run("weave env")).stdout;
    assert_eq!(
        env.trim(),
        format!(
            "export DOCKER_HOST={SOCKET} ORIG_DOCKER_HOST={}",
            if shell.daemon_host() == "unix:///var/run/docker.sock" {
                "".to_owned()
            } else {
                shell.daemon_host()
            }
        )
    );
}

#[test]
fn block_launch_proxy_on_a_chosen_tcp_address() {
    let shell = WeaveShell::new();
    ok(shell.run("weave launch-router"));
    let port = free_port();
    let block = "host1$ weave launch-proxy -H tcp://127.0.0.1:9999".trim_start_matches("host1$ ");
    ok(shell.run(&block.replace("9999", &port.to_string())));
    let addr = format!("tcp://127.0.0.1:{port}");
    assert_eq!(
        ok(shell.run("weave config")).stdout.trim(),
        format!("-H={addr}")
    );
    let version = Docker::new(&addr).run(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(
        ok(version).stdout,
        ok(Docker::daemon().run(&["version", "--format", "{{.Server.Version}}"])).stdout
    );
}

#[test]
fn block_eval_weave_env_then_docker_ps() {
    let shell = WeaveShell::launched();
    for block in [
        "eval $(weave env)\ndocker ps",
        "eval \"$(weave env)\"\ndocker ps",
    ] {
        let out = ok(shell.run(&format!("{block}\necho \"DOCKER_HOST=$DOCKER_HOST\"")));
        assert!(out.stdout.contains("CONTAINER ID"), "{out:#?}");
        assert!(
            out.stdout.contains(&format!("DOCKER_HOST={SOCKET}")),
            "{out:#?}"
        );
        // The proxy and router themselves are listed through the proxy.
        assert!(out.stdout.contains("weaveproxy"), "{out:#?}");
    }
}

#[test]
fn block_eval_weave_env_restore() {
    let shell = WeaveShell::launched();
    let out = ok(shell.run(
        "eval $(weave env)\neval $(weave env --restore)\necho \"DOCKER_HOST=${DOCKER_HOST-unset}\"\ndocker ps >/dev/null",
    ));
    let want = if shell.daemon_host() == "unix:///var/run/docker.sock" {
        "DOCKER_HOST=unset".to_owned()
    } else {
        format!("DOCKER_HOST={}", shell.daemon_host())
    };
    assert!(out.stdout.contains(&want), "{out:#?}");
    // Without a preceding `eval $(weave env)` there is nothing to restore, and it says so.
    let nothing = shell.run("weave env --restore");
    assert_eq!(nothing.code, 1, "{nothing:#?}");
    assert!(
        nothing.stderr.contains("Nothing to restore"),
        "{nothing:#?}"
    );
}

#[test]
fn block_docker_weave_config_ps() {
    let shell = WeaveShell::launched();
    let out = ok(shell.run("host1$ docker $(weave config) ps".trim_start_matches("host1$ ")));
    assert!(out.stdout.contains("weaveproxy"), "{out:#?}");
    // With the proxy stopped, config and env print nothing (and succeed).
    ok(shell.run("weave stop-proxy"));
    for block in ["weave config", "weave env"] {
        let out = ok(shell.run(block));
        assert_eq!(out.stdout, "", "{block}: {out:#?}");
    }
}

#[test]
fn block_weave_stop_proxy_warns_when_the_client_points_at_it() {
    let shell = WeaveShell::launched();
    let out = ok(shell.run("eval $(weave env)\nweave stop-proxy"));
    assert!(out.stderr.contains("WARNING: It appears that your environment is configured to use the Weave Docker API proxy"), "{out:#?}");
    let state = Docker::daemon().run(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        "weaveproxy",
        "weave",
    ]);
    assert_eq!(ok(state).stdout, "exited\nrunning\n");
    // `weave stop` stops the router too, talking to the daemon, not to the stopped proxy.
    let out = ok(shell.run("eval $(weave env)\nweave stop"));
    assert!(out.stderr.contains("Proxy is not running."), "{out:#?}");
    let state = Docker::daemon().run(&["inspect", "--format", "{{.State.Status}}", "weave"]);
    assert_eq!(ok(state).stdout, "exited\n");
}

#[test]
fn blocks_of_usage_and_ipam_attach_ubuntu_through_the_proxy() {
    let shell = WeaveShell::launched();
    let env = "eval \"$(weave env)\"\n";
    // docker run -ti ubuntu (an interactive shell on a terminal).
    let out = shell.run_on_tty(
        &format!("{env}docker run -ti ubuntu"),
        "ip -4 -o addr show ethwe; exit\n",
    );
    assert!(out.stdout.contains("inet 10.3"), "{out:#?}");
    // docker create -ti ubuntu, then docker start <id>.
    let created = ok(shell.run(&format!("{env}docker create -ti ubuntu"))).stdout;
    let id = created.trim();
    assert!(is_id(id), "{created}");
    ok(shell.run(&format!("{env}docker start {id}")));
    let addr =
        ok(Docker::daemon().run(&["exec", id, "ip", "-4", "-o", "addr", "show", "ethwe"])).stdout;
    assert!(addr.contains("inet 10.3"), "{addr}");
    // Specific addresses and networks, on a terminal as the documentation shows them.
    let cases = [
        (
            "docker run -e WEAVE_CIDR=10.2.1.1/24 -ti ubuntu",
            vec!["inet 10.2.1.1/24"],
        ),
        (
            "docker run -ti -e WEAVE_CIDR=net:10.32.2.0/24 ubuntu",
            vec!["inet 10.32.2."],
        ),
        (
            "docker run -e WEAVE_CIDR=\"10.2.1.1/24 10.2.2.1/24\" -ti ubuntu",
            vec!["inet 10.2.1.1/24", "inet 10.2.2.1/24"],
        ),
    ];
    for (block, wants) in cases {
        let out = shell.run_on_tty(&format!("{env}{block}"), "ip -4 -o addr show ethwe; exit\n");
        for want in wants {
            assert!(
                out.stdout.contains(want),
                "{block}: {want} missing: {out:#?}"
            );
        }
    }
    let none = shell.run_on_tty(
        &format!("{env}docker run -ti -e WEAVE_CIDR=none ubuntu"),
        "ip link show ethwe || echo no-ethwe; exit\n",
    );
    assert!(none.stdout.contains("no-ethwe"), "{none:#?}");
}

#[test]
fn block_no_default_ipalloc_and_blank_weave_cidr() {
    let shell = WeaveShell::new();
    ok(shell.run("weave launch-router"));
    // The document writes `docker launch-proxy`; the command is weave's.
    ok(shell.run("weave launch-proxy --no-default-ipalloc"));
    let env = "eval \"$(weave env)\"\n";
    let plain = shell.run_on_tty(
        &format!("{env}docker run -ti ubuntu"),
        "ip link show ethwe || echo no-ethwe; exit\n",
    );
    assert!(plain.stdout.contains("no-ethwe"), "{plain:#?}");
    let blank = shell.run_on_tty(
        &format!("{env}docker run -ti -e WEAVE_CIDR=\"\" ubuntu"),
        "ip -4 -o addr show ethwe; exit\n",
    );
    assert!(blank.stdout.contains("inet 10.3"), "{blank:#?}");
}

#[test]
fn blocks_of_weave_run_and_weave_start_without_the_proxy() {
    let shell = WeaveShell::new();
    ok(shell.run("weave launch-router"));
    let id = ok(shell.run("weave run -ti ubuntu")).stdout;
    let id = id.trim();
    assert!(is_id(id), "{id}");
    let addr =
        ok(Docker::daemon().run(&["exec", id, "ip", "-4", "-o", "addr", "show", "ethwe"])).stdout;
    assert!(addr.contains("inet 10.3"), "{addr}");
    let fixed = ok(shell.run("weave run 10.2.1.1/24 -ti ubuntu")).stdout;
    let fixed = fixed.trim();
    let addr =
        ok(Docker::daemon().run(&["exec", fixed, "ip", "-4", "-o", "addr", "show", "ethwe"]))
            .stdout;
    assert!(addr.contains("inet 10.2.1.1/24"), "{addr}");
    // weave ps lists both; weave start re-attaches a stopped one.
    let ps = ok(shell.run("weave ps")).stdout;
    assert!(ps.contains("10.2.1.1/24"), "{ps}");
    ok(Docker::daemon().run(&["stop", "-t", "1", fixed]));
    let started = ok(shell.run(&format!("weave start 10.2.1.1/24 {fixed}"))).stdout;
    assert_eq!(started.trim(), "10.2.1.1");
    // weave detach removes the interface and releases the address.
    assert_eq!(
        ok(shell.run(&format!("weave detach {fixed}")))
            .stdout
            .trim(),
        "10.2.1.1"
    );
    let gone = Docker::daemon().run(&["exec", fixed, "ip", "link", "show", "ethwe"]);
    assert_ne!(gone.code, 0, "{gone:#?}");
}

/// `weave attach` writes the container's /etc/hosts as the proxy does: its hostname on the weave
/// address, its `--add-host` entries kept; `--no-rewrite-hosts` leaves Docker's file alone.
#[test]
fn weave_attach_puts_the_weave_address_first_in_etc_hosts() {
    let shell = WeaveShell::new();
    ok(shell.run("weave launch-router"));
    let start = |name: &str| {
        ok(shell.run(&format!(
            "docker run -d --add-host static.name:10.9.9.9 -h {name}.weave.local ubuntu sleep 1d"
        )))
        .stdout
        .trim()
        .to_owned()
    };
    let in_container = |id: &str, command: &[&str]| {
        let mut args = vec!["exec", id];
        args.extend(command);
        ok(Docker::daemon().run(&args)).stdout
    };

    let id = start("h1");
    let attached = ok(shell.run(&format!("weave attach 10.2.1.7/24 {id}"))).stdout;
    assert_eq!(attached.trim(), "10.2.1.7");
    assert_eq!(in_container(&id, &["hostname", "-i"]).trim(), "10.2.1.7");
    let hosts = in_container(&id, &["cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.9.9.9") && l.contains("static.name")),
        "--add-host entry lost:\n{hosts}"
    );

    let plain = start("h2");
    ok(shell.run(&format!(
        "weave attach --no-rewrite-hosts 10.2.1.8/24 {plain}"
    )));
    let own = in_container(&plain, &["hostname", "-i"]);
    assert!(
        !own.contains("10.2.1.8"),
        "Docker's /etc/hosts was rewritten: {own}"
    );
    assert!(
        in_container(&plain, &["ip", "-4", "-o", "addr", "show", "ethwe"]).contains("10.2.1.8/24")
    );
}

/// A `weave attach` that fails (here a claim of another container's address) frees only what it
/// took: the addresses the container had stay allocated to it, so nobody else can claim them.
#[test]
fn a_failed_weave_attach_keeps_the_containers_own_addresses() {
    let shell = WeaveShell::new();
    ok(shell.run("weave launch-router"));
    let start = || {
        ok(shell.run("docker run -d ubuntu sleep 1d"))
            .stdout
            .trim()
            .to_owned()
    };
    let (a, b, c) = (start(), start(), start());
    ok(shell.run(&format!("weave attach 10.2.1.7/24 {a}")));
    ok(shell.run(&format!("weave attach 10.2.1.9/24 {b}")));
    let refused = shell.run(&format!("weave attach 10.2.1.9/24 {a}"));
    assert_ne!(refused.code, 0, "{refused:#?}");
    let taken = shell.run(&format!("weave attach 10.2.1.7/24 {c}"));
    assert_ne!(
        taken.code, 0,
        "a's address was freed by its failed attach: {taken:#?}"
    );
    let ps = ok(shell.run(&format!("weave ps {a}"))).stdout;
    assert!(ps.contains("10.2.1.7/24"), "{ps}");
}

#[test]
fn block_weave_status_and_docker_logs_weaveproxy() {
    let shell = WeaveShell::launched();
    let status = ok(shell.run("weave status")).stdout;
    assert!(
        status.contains("Service: proxy\n         Status: running\n"),
        "{status}"
    );
    let logs = ok(shell.run("docker logs weaveproxy"));
    assert!(
        logs.stderr.contains("listening") || logs.stdout.contains("listening"),
        "{logs:#?}"
    );
    // A proxy that stopped is reported with why.
    ok(shell.run("weave stop-proxy"));
    let status = ok(shell.run("weave status")).stdout;
    assert!(
        status.contains("not running (exited, exit code 0"),
        "{status}"
    );
    // With nothing launched, status says so and fails.
    ok(shell.run("weave reset"));
    let none = shell.run("weave status");
    assert_eq!(none.code, 2, "{none:#?}");
    assert!(
        none.stderr
            .contains("weave container is not present. Have you launched it?"),
        "{none:#?}"
    );
}

#[test]
fn launching_twice_says_it_is_already_running_and_a_stale_container_is_replaced() {
    let shell = WeaveShell::launched();
    let again = shell.run("weave launch");
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(
        again
            .stderr
            .contains("weave is already running; you can stop it with 'weave stop'."),
        "{again:#?}"
    );
    let proxy_again = shell.run("weave launch-proxy");
    assert_eq!(proxy_again.code, 1, "{proxy_again:#?}");
    assert!(
        proxy_again.stderr.contains("already running"),
        "{proxy_again:#?}"
    );
    // Stopped containers are stale: launch replaces them.
    ok(shell.run("weave stop"));
    let relaunch = ok(shell.run("weave launch"));
    assert_eq!(relaunch.stdout.lines().count(), 2, "{relaunch:#?}");
}

#[test]
fn stop_then_launch_keeps_attached_containers_addresses() {
    let shell = WeaveShell::launched();
    let id = ok(shell.run(
        "eval \"$(weave env)\"\ndocker run -d -e WEAVE_CIDR=net:10.32.5.0/24 ubuntu sleep 1d",
    ))
    .stdout;
    let id = id.trim().to_owned();
    let addr = || {
        ok(Docker::daemon().run(&["exec", &id, "ip", "-4", "-o", "addr", "show", "ethwe"])).stdout
    };
    let before = addr();
    assert!(before.contains("inet 10.32.5."), "{before}");
    ok(shell.run("weave stop"));
    ok(shell.run("weave launch"));
    assert_eq!(addr(), before);
    let cidr = before.split_whitespace().nth(3).unwrap().to_owned();
    let held = ok(shell.run(&format!("curl -s 127.0.0.1:6784/ip/{id}"))).stdout;
    assert_eq!(
        held.trim(),
        cidr,
        "the router reclaimed the running container's address"
    );
    // A new container does not get the same address.
    let other = ok(shell.run("eval \"$(weave env)\"\ndocker run --rm -e WEAVE_CIDR=net:10.32.5.0/24 ubuntu ip -4 -o addr show ethwe")).stdout;
    assert!(!other.contains(&cidr), "{other} reuses {cidr}");
}

#[test]
fn launch_creates_the_weave_network_on_the_plugin_and_no_plugin_leaves_it_out() {
    let shell = WeaveShell::launched();
    let docker = Docker::daemon();
    let drivers = ok(docker.run(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{.IPAM.Driver}}",
        "weave",
    ]))
    .stdout;
    assert_eq!(drivers.trim(), "weave weave");
    // The router in its container serves the plugin where the host's Docker looks for it.
    let out = ok(shell.run("docker run --rm --net=weave ubuntu ip -4 -o addr show")).stdout;
    assert!(
        out.lines()
            .any(|l| l.contains(" ethwe0 ") && l.contains("inet 10.32.")),
        "{out}"
    );
    // A second launch finds the network there and keeps it.
    ok(shell.run("weave stop\nweave launch"));
    ok(docker.run(&["network", "inspect", "weave"]));
    ok(shell.run("weave reset"));
    let gone = docker.run(&["network", "inspect", "weave"]);
    assert_ne!(gone.code, 0, "reset left the network: {gone:#?}");

    ok(shell.run("weave launch --no-plugin"));
    let none = docker.run(&["network", "inspect", "weave"]);
    assert_ne!(none.code, 0, "--no-plugin made the network: {none:#?}");
    let status = ok(shell.run("weave status")).stdout;
    assert!(!status.contains("Service: plugin"), "{status}");
}

#[test]
fn reset_leaves_nothing_behind() {
    let shell = WeaveShell::launched();
    ok(shell.run("eval \"$(weave env)\"\ndocker run --rm ubuntu true"));
    let out = ok(shell.run("weave reset"));
    assert!(out.stdout.contains("removed bridge weave"), "{out:#?}");
    let containers =
        ok(Docker::daemon().run(&["ps", "-a", "--filter", "label=works.weave.role", "-q"])).stdout;
    assert_eq!(containers, "");
    let network = Docker::daemon().run(&["network", "inspect", "weave"]);
    assert_ne!(network.code, 0, "the network weave is left: {network:#?}");
    let link = std::process::Command::new("ip")
        .args(["link", "show", "weave"])
        .output()
        .unwrap();
    assert!(!link.status.success(), "the weave bridge is still there");
    let rules = std::process::Command::new("iptables")
        .args(["-S"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("weave"), "rules left: {rules}");
    assert!(
        !std::path::Path::new("/var/run/weave/weave.sock").exists(),
        "the socket is left"
    );
    assert!(
        !std::path::Path::new("/var/lib/weave/ipam.json").exists(),
        "saved addresses left"
    );
    // The router's API is gone too.
    eventually("the router's port to close", Duration::from_secs(5), || {
        (std::net::TcpStream::connect("127.0.0.1:6784").is_err()).then_some(())
    });
}

/// The body of the answer to `GET /` at `target`, or nothing, within about a second.
fn http_get(target: std::net::SocketAddr) -> String {
    http::Request::get("/")
        .patience(Duration::from_secs(1))
        .send(&target.to_string())
        .map(|reply| reply.body)
        .unwrap_or_default()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `/tls` on the host, as the document has it, made for the test and removed after it.
struct HostTlsDir;

impl HostTlsDir {
    fn with(pki: &Pki) -> Self {
        let dir = std::path::Path::new("/tls");
        assert!(
            !dir.exists(),
            "/tls exists and is not this test's: move it away to run this test"
        );
        std::fs::create_dir(dir).unwrap();
        for name in ["ca.pem", "server-cert.pem", "server-key.pem"] {
            std::fs::copy(pki.dir().join(name), dir.join(name)).unwrap();
        }
        Self
    }
}

impl Drop for HostTlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all("/tls");
    }
}

/// The TLS section: a client reaching Docker over TCP gets the proxy on port 12375; launched with
/// the daemon's flags (host paths under /tls), it serves TLS and requires client certificates;
/// the docker CLI reaches it per invocation and `by default` through `~/.docker`, and a client
/// without a certificate, or with one from another CA, is refused.
#[test]
fn block_tls_launch_proxy_and_both_client_blocks() {
    let pki = Pki::new();
    let _tls = HostTlsDir::with(&pki);
    let shell = WeaveShell::new();
    // A Docker endpoint over TCP for the client (a pass-through proxy in front of the daemon).
    let daemon_tcp = format!("tcp://127.0.0.1:{}", free_port());
    let _front = Proxy::start_with(&shell.daemon_host(), &["-H", &daemon_tcp]);
    let tcp = [("DOCKER_HOST", daemon_tcp.as_str())];
    ok(shell.run_with("weave launch-router", &tcp, None));
    let block = "host1$ weave launch-proxy --tls-verify --tls-cacert=/tls/ca.pem \\
             --tls-cert=/tls/server-cert.pem --tls-key=/tls/server-key.pem";
    ok(shell.run_with(block.trim_start_matches("host1$ "), &tcp, None));
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(pki.dir().join(name), shell.home().join(name)).unwrap();
    }
    // The document spells the client flags --tls-verify, --tls-cacert...; the docker CLI has only
    // ever accepted --tlsverify, --tlscacert, --tlscert and --tlskey, and host1 is this host.
    let per_invocation = "docker --tlsverify --tlscacert=ca.pem --tlscert=cert.pem \\
         --tlskey=key.pem -H=tcp://127.0.0.1:12375 version";
    let out = ok(shell.run_with(per_invocation, &tcp, None));
    assert!(out.stdout.contains("Server:"), "{out:#?}");
    let by_default = "mkdir -pv ~/.docker
cp -v {ca,cert,key}.pem ~/.docker
eval \"$(weave env)\"
export DOCKER_TLS_VERIFY=1
docker version
echo \"DOCKER_HOST=$DOCKER_HOST\"";
    let out = ok(shell.run_with(by_default, &tcp, None));
    assert!(out.stdout.contains("Server:"), "{out:#?}");
    assert!(
        out.stdout.contains("DOCKER_HOST=tcp://127.0.0.1:12375"),
        "{out:#?}"
    );
    // No client certificate: refused.
    // (~/.docker now holds a client certificate, which the CLI would present by default.)
    let empty = tempfile::tempdir().unwrap();
    let anonymous = shell.run_with(
        "docker --tls --tlscacert=ca.pem -H=tcp://127.0.0.1:12375 version",
        &[("DOCKER_CERT_PATH", empty.path().to_str().unwrap())],
        None,
    );
    assert_ne!(anonymous.code, 0, "{anonymous:#?}");
    assert!(!anonymous.stdout.contains("Server:"), "{anonymous:#?}");
    // A certificate from another CA: refused.
    let other = Pki::new();
    let mixed = pki.mixed_with(&other);
    let stranger = shell.run(&format!(
        "docker --tlsverify --tlscacert={0}/ca.pem --tlscert={0}/cert.pem --tlskey={0}/key.pem -H=tcp://127.0.0.1:12375 version",
        mixed.path().display()
    ));
    assert_ne!(stranger.code, 0, "{stranger:#?}");
    assert!(!stranger.stdout.contains("Server:"), "{stranger:#?}");
}

/// With no TLS flag, launch-proxy copies the TLS settings of the dockerd that serves the client's
/// socket (its command line here); `--no-detect-tls` turns that off.
#[test]
fn launch_proxy_copies_the_daemons_tls_settings() {
    let pki = Pki::new();
    let shell = WeaveShell::new();
    let dir = tempfile::Builder::new()
        .prefix("weave-dockerd")
        .tempdir()
        .unwrap();
    // A process called dockerd that serves `d.sock` (a link to the real socket) with TLS.
    let socket = dir.path().join("d.sock");
    std::os::unix::fs::symlink(weave_tests::daemon::target_socket(), &socket).unwrap();
    let script = dir.path().join("dockerd");
    std::fs::write(&script, "#!/bin/sh\nsleep 600\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut fake = std::process::Command::new(&script)
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .arg("--tlsverify")
        .arg(format!("--tlscacert={}", pki.path("ca.pem")))
        .arg("--tlscert")
        .arg(pki.path("server-cert.pem"))
        .arg(format!("--tlskey={}", pki.path("server-key.pem")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group, so that its `sleep` goes with it.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = nix::unistd::Pid::from_raw(i32::try_from(fake.id()).unwrap());
    let host = format!("unix://{}", socket.display());
    let env = [("DOCKER_HOST", host.as_str())];
    let port = free_port();
    let launch = format!("weave launch-router && weave launch-proxy -H tcp://127.0.0.1:{port}");
    let launched = shell.run_with(&launch, &env, None);
    let client = |flags: &str| {
        shell.run(&format!(
            "docker {flags} -H tcp://127.0.0.1:{port} version --format '{{{{.Server.Version}}}}'"
        ))
    };
    let verified = client(&format!(
        "--tlsverify --tlscacert={} --tlscert={} --tlskey={}",
        pki.path("ca.pem"),
        pki.path("cert.pem"),
        pki.path("key.pem")
    ));
    let plain = client("");
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = fake.wait();
    ok(launched);
    ok(verified);
    assert_ne!(plain.code, 0, "plain HTTP was served: {plain:#?}");

    ok(shell.run_with(
        "weave stop-proxy && weave launch-proxy --no-detect-tls -H tcp://127.0.0.1:12375",
        &env,
        None,
    ));
    ok(shell.run("docker -H tcp://127.0.0.1:12375 version"));
}

/// `docker run --rm -v /var/run/docker.sock:/var/run/docker.sock weaveworks/weaveexec <command>`
/// is the weave command: it launches, reports (reaching the router through its container, as it
/// is not on the host's network itself), and resets.
#[test]
fn the_image_is_the_weave_command() {
    let shell = WeaveShell::new();
    let socket = weave_tests::daemon::target_socket();
    let socket = socket.display();
    // The document's form for the machine's daemon; another daemon's socket is passed as is.
    let prefix = if shell.daemon_host() == "unix:///var/run/docker.sock" {
        "docker run --rm -v /var/run/docker.sock:/var/run/docker.sock weaveworks/weaveexec"
            .to_owned()
    } else {
        format!(
            "docker run --rm -v {socket}:{socket} -e DOCKER_HOST=unix://{socket} weaveworks/weaveexec"
        )
    };
    let image = weave_tests::weave::weaveexec_image();
    let prefix = prefix.replace("weaveworks/weaveexec", &image);
    let version = ok(shell.run(&format!("{prefix} version"))).stdout;
    assert!(
        version.starts_with(&format!("weave {}\n", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let launch = ok(shell.run(&format!("{prefix} launch")));
    assert_eq!(
        launch.stdout.lines().filter(|l| is_id(l)).count(),
        2,
        "{launch:#?}"
    );
    let status = ok(shell.run(&format!("{prefix} status"))).stdout;
    assert!(status.contains("Service: ipam"), "{status}");
    assert!(status.contains(&format!("Address: {SOCKET}")), "{status}");
    let env = ok(shell.run(&format!("{prefix} env"))).stdout;
    assert!(
        env.starts_with(&format!("export DOCKER_HOST={SOCKET}")),
        "{env}"
    );
    // A container attached through the proxy shows up in `weave ps`, run in the router.
    let id =
        ok(shell
            .run("eval \"$(weave env)\"\ndocker run -d -e WEAVE_CIDR=10.2.7.7/24 ubuntu sleep 1d"))
        .stdout;
    let ps = ok(shell.run(&format!("{prefix} ps {}", id.trim()))).stdout;
    assert!(ps.contains("10.2.7.7/24"), "{ps}");
    let reset = ok(shell.run(&format!("{prefix} reset")));
    assert!(reset.stdout.contains("removed bridge weave"), "{reset:#?}");
}

/// `compose/weave.yml` launches the router and proxy from the image (with each Compose program),
/// `weave env` finds that proxy, and the example app in `compose/app` runs through it: its client
/// fetches the web service's page by name over the weave network.
#[test]
fn compose_launches_weave_and_the_example_app_runs_through_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let weave_yml = root.join("compose/weave.yml");
    let app_yml = root.join("compose/app/docker-compose.yml");
    let image = weave_tests::weave::weaveexec_image();
    let socket = weave_tests::daemon::target_socket();
    for program in weave_tests::daemon::compose_programs() {
        let shell = WeaveShell::new();
        let vars = [
            ("WEAVE_IMAGE", image.as_str()),
            ("DOCKER_SOCK", socket.to_str().unwrap()),
            ("COMPOSE", program.as_str()),
        ];
        let project = format!("wvt{}", std::process::id());
        ok(shell.run_with(
            &format!(
                "$COMPOSE -p {project}weave -f {} up -d",
                weave_yml.display()
            ),
            &vars,
            None,
        ));
        eventually(
            "the proxy launched by compose",
            Duration::from_secs(30),
            || {
                let env = shell.run("weave env");
                env.stdout.contains(SOCKET).then_some(())
            },
        );
        let app = shell.run_with(
            &format!(
                "eval \"$(weave env)\"\n$COMPOSE -p {project}app -f {} up --abort-on-container-exit --exit-code-from client",
                app_yml.display()
            ),
            &vars,
            None,
        );
        let down = shell.run_with(
            &format!(
                "eval \"$(weave env)\"\n$COMPOSE -p {project}app -f {} down",
                app_yml.display()
            ),
            &vars,
            None,
        );
        let app = ok(app);
        assert!(
            app.stdout.contains("hello from 10.3"),
            "{program}: {app:#?}"
        );
        assert!(app.stdout.contains("inet 10.32.9."), "{program}: {app:#?}");
        ok(down);
        ok(shell.run_with(
            &format!("$COMPOSE -p {project}weave -f {} down", weave_yml.display()),
            &vars,
            None,
        ));
    }
}

/// The address of `ethwe` in container `id`, `a.b.c.d/len`.
fn ethwe_cidr(id: &str) -> String {
    let out =
        ok(Docker::daemon().run(&["exec", id, "ip", "-4", "-o", "addr", "show", "ethwe"])).stdout;
    out.split_whitespace().nth(3).unwrap_or_default().to_owned()
}

/// `weave expose` gives the host an address in a subnet (and a name), so it reaches the
/// containers there; `weave hide` takes it away again.
#[test]
fn expose_lets_the_host_reach_containers_and_hide_undoes_it() {
    let shell = WeaveShell::launched();
    let env = "eval \"$(weave env)\"\n";
    let id = ok(shell.run(&format!(
        "{env}docker run -d -e WEAVE_CIDR=net:10.32.6.0/24 ubuntu \
         sh -c 'mkdir /www && echo from-the-weave-network > /www/index.html && exec httpd -f -p 8080 -h /www'"
    )))
    .stdout
    .trim()
    .to_owned();
    let cidr = ethwe_cidr(&id);
    let ip: std::net::Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    let target = std::net::SocketAddr::from((ip, 8080));
    // The page itself, not just a connection: some hosts' default route accepts any connection.
    let reach = || http_get(target).contains("from-the-weave-network");
    assert!(!reach(), "the host reached {target} before expose");
    let exposed = ok(shell.run("weave expose net:10.32.6.0/24 -h host.weave.local")).stdout;
    let host_ip = exposed.trim().to_owned();
    assert!(host_ip.starts_with("10.32.6."), "{exposed}");
    eventually(
        "the host to reach the container",
        Duration::from_secs(5),
        || reach().then_some(()),
    );
    let ps = ok(shell.run("weave ps")).stdout;
    assert!(
        ps.lines()
            .any(|l| l.starts_with("weave:expose ") && l.ends_with(&format!("{host_ip}/24"))),
        "{ps}"
    );
    let lookup = ok(shell.run(&format!(
        "{env}docker run --rm -e WEAVE_CIDR=net:10.32.6.0/24 ubuntu nslookup host.weave.local"
    )))
    .stdout;
    assert!(lookup.contains(&host_ip), "{lookup}");
    // Exposing again changes nothing; hide removes the address, the name and the allocation.
    assert_eq!(
        ok(shell.run("weave expose net:10.32.6.0/24")).stdout.trim(),
        host_ip
    );
    assert_eq!(ok(shell.run("weave hide")).stdout.trim(), host_ip);
    assert!(!reach(), "the host still reaches {target} after hide");
    let ps = ok(shell.run("weave ps")).stdout;
    assert!(!ps.contains("weave:expose"), "{ps}");
    let held = ok(shell.run("curl -s 127.0.0.1:6784/ip/weave:expose")).stdout;
    assert!(!held.contains(&host_ip), "still allocated: {held}");
}

/// `weave dns-add` names a container (or any address) in weaveDNS; `dns-remove` takes it back.
#[test]
fn dns_add_and_dns_remove_name_containers_and_addresses() {
    let shell = WeaveShell::launched();
    let env = "eval \"$(weave env)\"\n";
    let id = ok(shell.run(&format!("{env}docker run -d ubuntu sleep 1d")))
        .stdout
        .trim()
        .to_owned();
    let ip = ethwe_cidr(&id).split('/').next().unwrap().to_owned();
    let lookup = |name: &str| {
        shell
            .run(&format!("{env}docker run --rm ubuntu nslookup {name}"))
            .stdout
    };
    ok(shell.run(&format!("weave dns-add {id} -h extra.weave.local")));
    assert!(
        lookup("extra.weave.local").contains(&ip),
        "extra.weave.local does not resolve to {ip}"
    );
    // weave dns-lookup asks weaveDNS from the host, as `dig +short` would.
    let found = ok(shell.run("weave dns-lookup extra.weave.local")).stdout;
    assert_eq!(found.trim(), ip);
    ok(shell.run("weave dns-add 10.9.9.9 -h outside.weave.local"));
    assert!(lookup("outside.weave.local").contains("10.9.9.9"));
    ok(shell.run(&format!("weave dns-remove {id} -h extra.weave.local")));
    ok(shell.run("weave dns-remove 10.9.9.9 -h outside.weave.local"));
    for name in ["extra.weave.local", "outside.weave.local"] {
        eventually(
            &format!("{name} to stop resolving"),
            Duration::from_secs(3),
            || (!lookup(name).contains("Address: 10.")).then_some(()),
        );
    }
    let unknown = ok(shell.run("weave dns-lookup extra.weave.local")).stdout;
    assert_eq!(unknown, "", "a removed name still resolves");
    // docker run $(weave dns-args) points a container at weaveDNS without the proxy.
    let args = ok(shell.run("weave dns-args")).stdout;
    assert!(
        args.starts_with("--dns=") && args.contains(" --dns-search=weave.local"),
        "{args}"
    );
    ok(shell.run("weave dns-add 10.9.9.9 -h outside.weave.local"));
    // An unqualified name, through the search domain (10.9.9.9 does not answer pings).
    let resolved =
        ok(shell
            .run("docker run --rm $(weave dns-args) ubuntu sh -c 'ping -c1 -W1 outside; true'"));
    assert!(resolved.stdout.contains("(10.9.9.9)"), "{resolved:#?}");
    ok(shell.run("weave dns-remove 10.9.9.9 -h outside.weave.local"));
    // Without a name to register, it says what is missing.
    let bare = shell.run("weave dns-add 10.9.9.9");
    assert_eq!(bare.code, 1, "{bare:#?}");
    assert!(bare.stderr.contains("-h FQDN"), "{bare:#?}");
}
