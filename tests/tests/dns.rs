//! weaveDNS and naming, end to end: `weaver` with DNS and `weaveproxy` running, containers
//! started through the proxy find each other by name (`c1`, `c1.weave.local`), their
//! `/etc/hosts` lists the weave address first, names follow the containers' lives, names outside
//! the domain go to the upstream servers, and `--rewrite-inspect` shows the weave address.
//!
//! Each router's DNS listens on port 53 of an address of its own on its bridge
//! ([`weave_tests::weaver::WeaverBuilder::dns`]), so tests run side by side; containers reach it
//! through their default route to the host, as they reach `docker0`'s address with a single weave.
//! The upstream "internet" is a second router answering for `example.test.`.

use std::time::Duration;

use weave_tests::netns::ethwe;
use weave_tests::{Docker, Output, Scope, WeaveHost, Weaver, eventually, test_image};

/// How long a name may take to appear or go (the issue asks for removal within a second).
const NAME_PATIENCE: Duration = Duration::from_secs(1);

/// A weave with DNS, its upstream name servers read from `resolv_conf` when given.
fn weave_with_dns(resolv_conf: Option<&std::path::Path>, proxy_args: &[&str]) -> WeaveHost {
    let mut weaver = Weaver::builder().dns();
    if let Some(path) = resolv_conf {
        weaver = weaver.arg("--resolv-conf").arg(path.to_str().unwrap());
    }
    WeaveHost::start_with(weaver, proxy_args)
}

/// `docker run --rm FLAGS busybox sh -c SCRIPT` through `docker`, labelled in `scope`.
fn sh(docker: &Docker, scope: &Scope, flags: &[&str], script: &str) -> Output {
    let image = test_image();
    let label = scope.label();
    let mut args = vec!["run", "--rm", "--label", &label];
    args.extend_from_slice(flags);
    args.extend([image.as_str(), "sh", "-c", script]);
    docker.run(&args)
}

/// A detached `sleep` named `name` (not scoped: some tests need exact names), labelled in `scope`.
fn sleeper(docker: &Docker, scope: &Scope, name: &str, flags: &[&str]) -> String {
    let image = test_image();
    let label = scope.label();
    let mut args = vec!["run", "-d", "--label", &label, "--name", name];
    args.extend_from_slice(flags);
    args.extend([image.as_str(), "sleep", "300"]);
    docker.run(&args).ok();
    weave_ip(name)
}

/// The first weave address of a running container.
#[track_caller]
fn weave_ip(container: &str) -> String {
    weave_ip_now(container).unwrap_or_else(|| panic!("{container} has no ethwe"))
}

/// The first weave address of the container, if it runs with one now (not while restarting).
fn weave_ip_now(container: &str) -> Option<String> {
    let addr = ethwe(container)?.addrs.into_iter().next()?;
    Some(addr.split('/').next()?.to_owned())
}

/// A name unique to this test run with no dash in it, for names that must match patterns.
fn token(scope: &Scope) -> String {
    scope.name("x").replace('-', "")
}

#[test]
fn containers_find_each_other_by_name_and_fqdn_with_any_search_setting() {
    let scope = Scope::new();
    let weave = weave_with_dns(None, &[]);
    let docker = weave.docker();
    let c1 = scope.name("c1");
    let ip = sleeper(&docker, &scope, &c1, &[]);
    assert_eq!(
        weave.weaver.names(),
        [(
            format!("{c1}.weave.local."),
            ip.clone(),
            weave_tests::netns::full_id(&c1)
        )]
    );

    // busybox's ping resolves through the C library: /etc/hosts, then DNS with the search list.
    let lookups = format!(
        "nslookup {c1}.weave.local && ping -c1 -W3 {c1} && ping -c1 -W3 {c1}.weave.local \
         && cat /etc/resolv.conf"
    );
    let dns = weave.weaver.dns_addr().unwrap().to_owned();
    let cases: [(&str, Vec<&str>); 4] = [
        ("no name", vec![]),
        ("a name of its own", vec!["--name", "PLACEHOLDER"]),
        ("-h x.weave.local", vec!["-h", "seetwo.weave.local"]),
        (
            "--dns-search weave.local",
            vec!["--dns-search", "weave.local"],
        ),
    ];
    let own_name = scope.name("client");
    for (what, mut flags) in cases {
        for flag in &mut flags {
            if *flag == "PLACEHOLDER" {
                *flag = own_name.as_str();
            }
        }
        let out = sh(&docker, &scope, &flags, &lookups);
        assert_eq!(out.code, 0, "{what}: {out:#?}");
        let text = out.out();
        assert!(
            text.contains(&format!("PING {c1} ({ip})")),
            "{what}: {c1} is {ip}: {text}"
        );
        assert!(
            text.contains(&format!("nameserver {dns}")),
            "{what}: weaveDNS is a name server: {text}"
        );
    }

    // The reverse lookup names the container.
    let out = sh(&docker, &scope, &[], &format!("nslookup {ip}"));
    assert!(
        out.out().contains(&format!("{c1}.weave.local")),
        "PTR {ip}: {out:#?}"
    );
    // An unknown name in the domain does not exist, and nothing hangs on it.
    let out = sh(&docker, &scope, &[], "nslookup nobody.weave.local");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.out().contains("NXDOMAIN") || out.stderr.contains("NXDOMAIN"),
        "{out:#?}"
    );
}

#[test]
fn hosts_file_lists_the_weave_address_first_and_keeps_add_host() {
    let scope = Scope::new();
    let weave = weave_with_dns(None, &[]);
    let docker = weave.docker();
    let script = "hostname -i; ping -c1 -W3 static.name; cat /etc/hosts";
    for user in ["0:0", "1000:1000"] {
        let name = scope.name(&format!("hosts{}", &user[..1]));
        let out = sh(
            &docker,
            &scope,
            &[
                "--name",
                &name,
                "--user",
                user,
                "-e",
                "WEAVE_CIDR=10.2.1.1/24",
                "--add-host",
                "static.name:10.9.9.9",
            ],
            script,
        );
        assert_eq!(out.code, 0, "user {user}: {out:#?}");
        let mut lines = out.out().lines();
        assert_eq!(lines.next(), Some("10.2.1.1"), "user {user}: {out:#?}");
        assert!(
            out.out().contains("PING static.name (10.9.9.9)"),
            "user {user}: --add-host still resolves: {out:#?}"
        );
        assert!(
            out.out()
                .contains(&format!("10.2.1.1        {name}.weave.local {name}")),
            "user {user}: {out:#?}"
        );
    }

    // A later edit of the file by Docker (a network connect) keeps the weave line first.
    let network = scope.name("net");
    Docker::daemon()
        .run(&["network", "create", "--label", &scope.label(), &network])
        .ok();
    let name = scope.name("connected");
    sleeper(&docker, &scope, &name, &["-e", "WEAVE_CIDR=10.2.1.2/24"]);
    Docker::daemon()
        .run(&["network", "connect", &network, &name])
        .ok();
    let hosts = Docker::daemon()
        .run(&["exec", &name, "cat", "/etc/hosts"])
        .ok();
    let first = hosts
        .out()
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty());
    assert_eq!(
        first.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "10.2.1.2",
            &format!("{name}.weave.local") as &str,
            &name
        ]),
        "{hosts:#?}"
    );
    Docker::daemon()
        .run(&["network", "disconnect", "-f", &network, &name])
        .ok();
    Docker::daemon().run(&["rm", "-f", &name]).ok();
    Docker::daemon().run(&["network", "rm", &network]).ok();

    // --no-rewrite-hosts leaves Docker's file alone.
    drop(weave);
    let weave = weave_with_dns(None, &["--no-rewrite-hosts"]);
    let out = sh(
        &weave.docker(),
        &scope,
        &["-e", "WEAVE_CIDR=10.2.1.1/24"],
        "hostname -i",
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!out.out().contains("10.2.1.1"), "{out:#?}");
}

#[test]
fn names_go_with_the_container_and_come_back_with_a_restart() {
    let scope = Scope::new();
    let mut weave = weave_with_dns(None, &[]);
    let docker = weave.docker();
    let c1 = scope.name("c1");
    let ip = sleeper(&docker, &scope, &c1, &[]);
    let fqdn = format!("{c1}.weave.local.");
    let registered = |weave: &WeaveHost| {
        weave
            .weaver
            .names()
            .into_iter()
            .filter(|(name, _, _)| *name == fqdn)
            .map(|(_, addr, _)| addr)
            .collect::<Vec<_>>()
    };
    assert_eq!(registered(&weave), [ip]);

    // A restarted router finds the names of the running containers again.
    weave.weaver.restart();
    assert_eq!(
        registered(&weave),
        [weave_ip(&c1)],
        "after a router restart"
    );

    // A restart (through the proxy, and straight on the daemon) registers it again.
    docker.run(&["restart", "-t", "1", &c1]).ok();
    eventually("the name after docker restart", NAME_PATIENCE * 5, || {
        let ip = weave_ip_now(&c1)?;
        (registered(&weave) == [ip]).then_some(())
    });
    Docker::daemon().run(&["restart", "-t", "1", &c1]).ok();
    eventually(
        "the name after a restart behind the proxy",
        Duration::from_secs(10),
        || {
            let ip = weave_ip_now(&c1)?;
            (registered(&weave) == [ip]).then_some(())
        },
    );
    let resolved = sh(&docker, &scope, &[], &format!("ping -c1 -W3 {c1}"));
    assert_eq!(resolved.code, 0, "{resolved:#?}");

    // Stopped: the name goes at once, not after the address's grace period.
    Docker::daemon().run(&["stop", "-t", "1", &c1]).ok();
    eventually("the name to go when stopped", NAME_PATIENCE, || {
        registered(&weave).is_empty().then_some(())
    });
    Docker::daemon().run(&["start", &c1]).ok();
    eventually(
        "the name after docker start",
        Duration::from_secs(10),
        || (!registered(&weave).is_empty()).then_some(()),
    );

    // Removed: gone within a second, and no longer resolvable.
    Docker::daemon().run(&["rm", "-f", &c1]).ok();
    eventually("the name to go when removed", NAME_PATIENCE, || {
        registered(&weave).is_empty().then_some(())
    });
    let out = sh(&docker, &scope, &[], &format!("nslookup {c1}.weave.local"));
    assert_ne!(out.code, 0, "{out:#?}");
}

#[test]
fn hostnames_are_derived_from_names_and_labels() {
    // The original's test 680: a match with a named group, a label, and both.
    let scope = Scope::new();
    let t = token(&scope);
    let pattern = ["--hostname-match", "^[^-]+-(?P<appname>[^-]*)-[^-]+$"];
    let replacement = ["--hostname-replacement", "$appname"];
    let label = ["--hostname-from-label", "hostname-label"];
    let configs: [(&str, Vec<&str>); 3] = [
        ("match", [pattern, replacement].concat()),
        ("label", label.to_vec()),
        ("both", [pattern, replacement, label].concat()),
    ];
    for (what, proxy_args) in configs {
        let weave = weave_with_dns(None, &proxy_args);
        let docker = weave.docker();
        let run = |name: &str, label: Option<&str>| {
            let label_arg = label.map(|l| format!("hostname-label={l}"));
            let mut flags = vec![];
            if let Some(l) = &label_arg {
                flags.extend(["--label", l.as_str()]);
            }
            sleeper(&docker, &scope, name, &flags)
        };
        let (one, two, plain) = match what {
            "match" => (
                run(&format!("{t}-seeone-1io9qd9i0wd"), None),
                run(&format!("{t}-seetwo-128hbaJ881"), None),
                run(&format!("doesnotmatchpattern{t}"), None),
            ),
            "label" => (
                run(&format!("{t}a"), Some(&format!("seeone{t}"))),
                run(&format!("seetwo{t}"), Some("")),
                run(&format!("doesnotmatchpattern{t}"), None),
            ),
            _ => (
                run(&format!("{t}b"), Some(&format!("{t}-seeone-1io9qd9i0wd"))),
                run(&format!("{t}-seetwo-128hbaJ881"), None),
                run(&format!("doesnotmatchpattern{t}"), None),
            ),
        };
        let (n1, n2) = match what {
            "label" => (format!("seeone{t}"), format!("seetwo{t}")),
            _ => ("seeone".to_owned(), "seetwo".to_owned()),
        };
        let plain_name = format!("doesnotmatchpattern{t}");
        let names: Vec<(String, String)> = weave
            .weaver
            .names()
            .into_iter()
            .map(|(name, addr, _)| (name, addr))
            .collect();
        let mut want = vec![
            (format!("{n1}.weave.local."), one),
            (format!("{n2}.weave.local."), two.clone()),
            (format!("{plain_name}.weave.local."), plain),
        ];
        want.sort();
        assert_eq!(names, want, "{what}");
        // And from inside a container, by the derived name.
        let out = sh(&docker, &scope, &[], &format!("ping -c1 -W3 {n2}"));
        assert!(
            out.out().contains(&format!("({two})")),
            "{what}: {n2} is {two}: {out:#?}"
        );
        let _ = Docker::daemon().run(&[
            "rm",
            "-f",
            &format!("{t}-seeone-1io9qd9i0wd"),
            &format!("{t}-seetwo-128hbaJ881"),
            &format!("doesnotmatchpattern{t}"),
            &format!("{t}a"),
            &format!("seetwo{t}"),
            &format!("{t}b"),
        ]);
    }
}

#[test]
fn names_outside_the_domain_are_asked_upstream() {
    // The "internet": a second router's weaveDNS, answering for example.test.
    let mut upstream = Weaver::builder()
        .dns()
        .arg("--dns-domain")
        .arg("example.test.")
        .start();
    let (status, body) = upstream.request(
        "PUT",
        "/name/0123456789ab/192.0.2.77",
        "fqdn=www.example.test",
    );
    assert_eq!(status, 204, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!(
            "# the test's upstream\nnameserver {}\n",
            upstream.dns_addr().unwrap()
        ),
    )
    .unwrap();

    let scope = Scope::new();
    let weave = weave_with_dns(Some(&resolv_conf), &[]);
    let docker = weave.docker();
    let out = sh(
        &docker,
        &scope,
        &[],
        "nslookup www.example.test; ping -c1 -W1 www.example.test; true",
    );
    assert!(
        out.out().contains("PING www.example.test (192.0.2.77)"),
        "{out:#?}"
    );
    let out = sh(&docker, &scope, &[], "nslookup nothing.example.test");
    assert!(
        out.out().contains("NXDOMAIN") || out.stderr.contains("NXDOMAIN"),
        "the upstream's NXDOMAIN is relayed: {out:#?}"
    );

    // With the upstream stopped (its address stays, nothing answers on it), an outside name
    // fails with SERVFAIL; weave names work.
    upstream.stop();
    let c1 = scope.name("c1");
    let ip = sleeper(&docker, &scope, &c1, &[]);
    let out = sh(
        &docker,
        &scope,
        &[],
        &format!("nslookup www.example.test; ping -c1 -W3 {c1}"),
    );
    assert!(
        out.out().contains("SERVFAIL") || out.stderr.contains("SERVFAIL"),
        "{out:#?}"
    );
    assert!(out.out().contains(&format!("({ip})")), "{out:#?}");
}

#[test]
fn without_dns_the_proxy_sets_and_registers_nothing() {
    let scope = Scope::new();
    let weave = weave_with_dns(None, &["--without-dns"]);
    let docker = weave.docker();
    let c1 = scope.name("c1");
    sleeper(
        &docker,
        &scope,
        &c1,
        &["--add-host", "static.name:10.9.9.9"],
    );
    let inspect = Docker::daemon()
        .run(&[
            "inspect",
            "-f",
            "{{.Config.Hostname}} {{.Config.Domainname}} {{.HostConfig.Dns}}",
            &c1,
        ])
        .ok();
    assert!(
        !inspect.out().contains("weave.local") && inspect.out().ends_with(" []"),
        "{inspect:#?}"
    );
    assert_eq!(weave.weaver.names(), []);
    // Nothing resolves the container's name, but its --add-host name still resolves in it.
    let out = sh(&docker, &scope, &[], &format!("ping -c1 -W1 {c1}"));
    assert!(out.stderr.contains("bad address"), "{out:#?}");
    let out = Docker::daemon().run(&["exec", &c1, "sh", "-c", "ping -c1 -W1 static.name; true"]);
    assert!(out.out().contains("(10.9.9.9)"), "{out:#?}");
}

#[test]
fn rewrite_inspect_shows_the_weave_address_even_right_after_run() {
    let scope = Scope::new();
    let weave = weave_with_dns(None, &["--rewrite-inspect"]);
    let docker = weave.docker();
    let name = scope.name("c1");
    // `run -d` and `inspect` back to back: the inspect waits for the attach.
    docker.run_detached(
        &scope,
        "c1",
        &["-e", "WEAVE_CIDR=10.2.7.9/24"],
        &test_image(),
        &["sleep", "300"],
    );
    let format = "{{.NetworkSettings.IPAddress}}/{{.NetworkSettings.IPPrefixLen}} {{.NetworkSettings.MacAddress}}";
    let shown = docker.run(&["inspect", "-f", format, &name]).ok();
    let ethwe = ethwe(&name).expect("attached");
    assert_eq!(
        shown.out(),
        format!("10.2.7.9/24 {}", ethwe.mac),
        "{shown:#?}"
    );
    // The daemon itself still shows its own.
    let direct = Docker::daemon().run(&["inspect", "-f", format, &name]).ok();
    assert!(!direct.out().starts_with("10.2.7.9"), "{direct:#?}");
    // Without the flag, the proxy shows Docker's.
    drop(weave);
    let weave = weave_with_dns(None, &[]);
    let plain = weave.docker().run(&["inspect", "-f", format, &name]).ok();
    assert_eq!(plain.out(), direct.out());
}

#[test]
fn dns_defaults_to_dockers_bridge_address() {
    // Weave Net's default: port 53 of Docker's bridge. Only one router can have it, so this test
    // runs alone (.config/nextest.toml).
    let scope = Scope::new();
    let weave = WeaveHost::start_with(Weaver::builder().dns_on_docker_bridge(), &[]);
    let (status, address) = weave.weaver.request("GET", "/dns-address", "");
    assert_eq!(status, 200);
    let gateway = docker_bridge_address();
    assert_eq!(address, gateway);
    let docker = weave.docker();
    let c1 = scope.name("c1");
    let ip = sleeper(&docker, &scope, &c1, &[]);
    let out = sh(
        &docker,
        &scope,
        &[],
        &format!("cat /etc/resolv.conf; ping -c1 -W3 {c1}"),
    );
    assert!(
        out.out().contains(&format!("nameserver {gateway}")),
        "{out:#?}"
    );
    assert!(out.out().contains(&format!("({ip})")), "{out:#?}");
}

/// The address containers on the target daemon's default network reach the host at.
fn docker_bridge_address() -> String {
    let out = Docker::daemon()
        .run(&[
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}} {{index .Options \"com.docker.network.bridge.name\"}}",
        ])
        .ok();
    let mut parts = out.out().split_whitespace();
    let first = parts.next().unwrap_or_default();
    if first.parse::<std::net::Ipv4Addr>().is_ok() {
        return first.to_owned();
    }
    let bridge = if first.is_empty() { "docker0" } else { first };
    let addr = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&addr.stdout)
        .split_whitespace()
        .nth(3)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no address on {bridge}"))
        .to_owned()
}

#[test]
fn a_read_only_container_still_gets_its_hosts_file() {
    // `--read-only` makes Docker mount /etc/hosts read-only inside the container; the proxy
    // writes the file Docker mounted there, from the host's side.
    let scope = Scope::new();
    let weave = weave_with_dns(None, &[]);
    let out = sh(
        &weave.docker(),
        &scope,
        &["--read-only", "-e", "WEAVE_CIDR=10.2.1.3/24"],
        "hostname -i",
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.out(), "10.2.1.3", "{out:#?}");
}
