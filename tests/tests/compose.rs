//! docker-compose through the proxy (Debian's Compose v1, and Compose v2 when configured): a small
//! project's whole life cycle compared with the daemon's own answers, and a 50-service `up -d`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use weave_tests::daemon::compose_programs;
use weave_tests::{
    Docker, Output, Proxy, Scope, WeaveHost, Weaver, eventually, skip, target_daemon, test_image,
};

/// Logs appear as soon as the containers run; the client service also waits for the web one.
const LOGS_PATIENCE: Duration = Duration::from_secs(30);

const MANY: usize = 50;

/// The range the test routers allocate from (Weave Net's own default).
const WEAVE_RANGE: &str = "10.32.0.0/12";

#[test]
fn three_service_project_up_ps_logs_down_match_the_daemon() {
    let image = test_image();
    for program in installed_programs() {
        let scope = Scope::new();
        let proxy = Proxy::start();
        let label = scope.label();
        let spec = json!({
            "version": "2.4",
            "services": {
                "web": {
                    "image": image,
                    "labels": [label],
                    "command": ["sh", "-c",
                        "mkdir -p /www && echo hello-from-web > /www/index.html \
                         && echo web-ready && exec httpd -f -p 8080 -h /www"],
                },
                // Finds `web` by name: the network compose created through the proxy has
                // service discovery, and `depends_on` made `web` first. (No fetch across
                // containers: Docker 26 from scripts/docker26.sh runs with --iptables=false
                // under the host's FORWARD DROP, so its containers cannot reach each other.)
                "client": {
                    "image": image,
                    "labels": [label],
                    "depends_on": ["web"],
                    "command": ["sh", "-c",
                        "until nslookup web >/dev/null 2>&1; do sleep 0.2; done; \
                         echo client-found-web; exec sleep 300"],
                },
                "idle": {
                    "image": image,
                    "labels": [label],
                    "command": ["sh", "-c", "echo idle-ready; exec sleep 300"],
                },
            },
            "networks": {"default": {"labels": [label]}},
        });
        let project = Project::new(&program, &scope, "three", &spec);
        let (via_proxy, direct) = (proxy.host(), target_daemon());

        let started = Instant::now();
        project.run(&via_proxy, &["up", "-d"]).ok();
        let up = started.elapsed();

        // Each listing through the proxy, checked, then compared with the daemon's own.
        let compared = |args: &[&str]| {
            let proxied = sorted_lines(&project.run(&via_proxy, args).ok().stdout);
            let own = sorted_lines(&project.run(&direct, args).ok().stdout);
            assert_eq!(
                proxied, own,
                "{program} {args:?}: through the proxy vs direct"
            );
            proxied
        };
        let running = compared(&["ps", "--services", "--filter", "status=running"]);
        assert_eq!(
            running,
            ["client", "idle", "web"],
            "{program}: every service is running"
        );
        let ids = compared(&["ps", "-q"]);
        assert_eq!(ids.len(), 3, "{program}: {ids:?}");
        let table = project.run(&via_proxy, &["ps"]).ok();
        assert_eq!(
            table.stdout.matches(" Up ").count() + table.stdout.matches(" Up\n").count(),
            3,
            "{program}: three containers are up:\n{}",
            table.stdout
        );
        assert_eq!(
            without_clock(&table.stdout),
            without_clock(&project.run(&direct, &["ps"]).ok().stdout),
            "{program} ps: through the proxy vs direct"
        );

        let logs = eventually(
            &format!("{program} logs to show what every service echoed"),
            LOGS_PATIENCE,
            || {
                let logs = project.run(&via_proxy, &["logs", "--no-color"]).ok();
                let lines = log_lines(&logs.stdout);
                [
                    ("web", "web-ready"),
                    ("client", "client-found-web"),
                    ("idle", "idle-ready"),
                ]
                .iter()
                .all(|(service, message)| {
                    lines.iter().any(|l| logged_by(l, service) == Some(message))
                })
                .then_some(lines)
            },
        );
        let own_logs = project.run(&direct, &["logs", "--no-color"]).ok();
        assert_eq!(
            logs,
            log_lines(&own_logs.stdout),
            "{program} logs: through the proxy vs direct"
        );

        // `exec` hijacks the connection, as `docker exec` does; the page is served by `web`.
        let page = project
            .run(
                &via_proxy,
                &[
                    "exec",
                    "-T",
                    "web",
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    "http://127.0.0.1:8080/",
                ],
            )
            .ok();
        assert_eq!(page.stdout, "hello-from-web\n", "{program} exec");

        let down = project.down(&via_proxy);
        eprintln!("{program}: 3 services up -d {up:?}, down {down:?}");
    }
}

/// Fifty services through the rewriting proxy, up and down, with both compose programs (Weave
/// Net's users hit timeouts here, weaveworks/weave#3704). Not against a daemon whose libnetwork
/// deadlocks under such churn (Docker 20.10.24 here, where it did).
#[test]
fn fifty_service_project_comes_up_without_timeouts() {
    if let Some(why) = weave_tests::daemon::churn_deadlock() {
        println!("{why}");
        return;
    }
    let image = test_image();
    for program in installed_programs() {
        let scope = Scope::new();
        // A router and the rewriting proxy: every container is attached to the weave network
        // as it starts.
        let host = WeaveHost::start();
        let proxy = &host.proxy;
        let label = scope.label();
        let services: serde_json::Map<String, Value> = (1..=MANY)
            .map(|n| {
                // On the default bridge, as in weaveworks/weave#3704 (the original proxy's
                // timeouts at 50 services): each create is one the proxy rewrites for weave
                // (image inspect, new entrypoint, weavewait bind), not one on a compose
                // network that it would forward untouched.
                let service = json!({
                    "image": image,
                    "labels": [label],
                    "network_mode": "bridge",
                    "command": ["sleep", "300"],
                });
                (format!("s{n:02}"), service)
            })
            .collect();
        let spec = json!({"version": "2.4", "services": services});
        let project = Project::new(&program, &scope, "many", &spec);
        let via_proxy = proxy.host();

        let started = Instant::now();
        let up = project.run(&via_proxy, &["up", "-d"]);
        let up_time = started.elapsed();
        assert_eq!(
            up.code, 0,
            "{program}: up -d of {MANY} services failed after {up_time:?}: {up:#?}"
        );

        let running = project
            .run(
                &via_proxy,
                &["ps", "--services", "--filter", "status=running"],
            )
            .ok();
        assert_eq!(
            sorted_lines(&running.stdout).len(),
            MANY,
            "{program}: running services: {running:?}"
        );
        let filter = format!("label=com.docker.compose.project={}", project.name);
        let own = Docker::new(target_daemon())
            .run(&[
                "ps",
                "--filter",
                &filter,
                "--filter",
                "status=running",
                "--no-trunc",
                "--format",
                "{{.Command}}",
            ])
            .ok();
        assert_eq!(
            own.stdout.lines().count(),
            MANY,
            "{program}: the daemon's own count of running containers"
        );
        let waiting = own.stdout.lines().filter(|c| c.contains("\"/w/w ")).count();
        assert_eq!(
            waiting, MANY,
            "{program}: every create went through the weave rewrite:\n{}",
            own.stdout
        );

        let down_time = project.down(&via_proxy);
        eprintln!("{program}: {MANY} services up -d {up_time:?}, down {down_time:?}");
    }
}

#[test]
fn services_reach_each_other_by_service_name_over_weave() {
    let image = test_image();
    for program in installed_programs() {
        let scope = Scope::new();
        // weaveDNS names each container after its compose service (a label compose sets).
        let host = WeaveHost::start_with(
            Weaver::builder().dns(),
            &["--hostname-from-label", "com.docker.compose.service"],
        );
        let label = scope.label();
        // On Docker's default bridge: on a compose network Docker's own DNS would answer `web`
        // with the compose network's address before weaveDNS is asked.
        let spec = json!({
            "version": "2.4",
            "services": {
                "web": {
                    "image": image,
                    "labels": [label],
                    "network_mode": "bridge",
                    "command": ["sh", "-c",
                        "mkdir -p /www && echo hello-from-web > /www/index.html \
                         && exec httpd -f -p 8080 -h /www"],
                },
                "client": {
                    "image": image,
                    "labels": [label],
                    "network_mode": "bridge",
                    "depends_on": ["web"],
                    "command": ["sh", "-c",
                        "until wget -q -O - http://web:8080/; do sleep 0.2; done; \
                         ping -c1 -W3 web; exec sleep 300"],
                },
            },
        });
        let project = Project::new(&program, &scope, "dns", &spec);
        let via_proxy = host.proxy.host();
        project.run(&via_proxy, &["up", "-d"]).ok();
        let web_id = project.run(&via_proxy, &["ps", "-q", "web"]).ok();
        let web_ip = weave_tests::netns::ethwe(web_id.out())
            .expect("web is attached")
            .addrs[0]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let logs = eventually(
            &format!("{program}: client to fetch from web by name"),
            LOGS_PATIENCE,
            || {
                let logs = project
                    .run(&via_proxy, &["logs", "--no-color", "client"])
                    .ok();
                logs.stdout
                    .contains("hello-from-web")
                    .then_some(logs.stdout)
            },
        );
        assert!(
            logs.contains(&format!("PING web ({web_ip})")),
            "{program}: `web` is its weave address {web_ip}:\n{logs}"
        );
        project.down(&via_proxy);
    }
}

/// A stock Compose file (services only: no `network_mode`, no `networks:` for them) through the
/// rewriting proxy: each service keeps the project network Compose made and gets `ethwe` with an
/// address from the weave range beside it; it reaches the other by service name, which resolves
/// to the other's weave address (weaveDNS knows it by that name); `WEAVE_CIDR=none` opts out and
/// a network the file names is left to the plugin; `down` gives every address back.
#[test]
fn stock_project_through_the_proxy_is_on_weave_by_service_name() {
    let image = test_image();
    for program in installed_programs() {
        let scope = Scope::new();
        let host = WeaveHost::start_with(Weaver::builder().dns(), &[]);
        let label = scope.label();
        let sleeper = |extra: Value| {
            let mut service = json!({
                "image": image,
                "labels": [label],
                "command": ["sleep", "300"],
            });
            for (key, value) in extra.as_object().expect("an object") {
                service[key] = value.clone();
            }
            service
        };
        let spec = json!({
            "version": "2.4",
            "services": {
                "web": sleeper(json!({})),
                "client": sleeper(json!({})),
                "optout": sleeper(json!({"environment": ["WEAVE_CIDR=none"]})),
                // On a network the file names: the user chose it, so it stays the plugin's.
                "named": sleeper(json!({"networks": ["front"]})),
            },
            "networks": {"front": {"labels": [label]}},
        });
        let project = Project::new(&program, &scope, "stock", &spec);
        let via_proxy = host.proxy.host();
        project.run(&via_proxy, &["up", "-d"]).ok();

        let id = |service: &str| {
            let out = project.run(&via_proxy, &["ps", "-q", service]).ok();
            out.out().to_owned()
        };
        let weave_ip = |service: &str| {
            let ethwe = weave_tests::netns::ethwe(&id(service))
                .unwrap_or_else(|| panic!("{program}: {service} has no ethwe"));
            assert_eq!(ethwe.addrs.len(), 1, "{program}: {service}: {ethwe:?}");
            let addr = ethwe.addrs[0].split('/').next().unwrap().to_owned();
            assert!(
                weave_tests::netns::in_subnet(&addr, WEAVE_RANGE),
                "{program}: {service} has {addr}, outside {WEAVE_RANGE}"
            );
            addr
        };
        let (web, client) = (weave_ip("web"), weave_ip("client"));
        assert_ne!(web, client, "{program}");
        for service in ["optout", "named"] {
            assert!(
                weave_tests::netns::ethwe(&id(service)).is_none(),
                "{program}: {service} was attached"
            );
        }
        // Compose's own network is still there, beside weave.
        let networks = Docker::new(target_daemon())
            .run(&[
                "inspect",
                "--format",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                &id("web"),
            ])
            .ok();
        assert_eq!(
            networks.out(),
            format!("{}_default", project.name),
            "{program}: web's Docker networks"
        );

        // By service name, to the weave address, from either side.
        project.ping_each_other(
            &via_proxy,
            [("web", web.as_str()), ("client", client.as_str())],
        );
        // Compose's own view is unchanged by the rewrite: `up` again recreates nothing.
        let ids =
            |project: &Project| sorted_lines(&project.run(&via_proxy, &["ps", "-q"]).ok().stdout);
        let before = ids(&project);
        project.run(&via_proxy, &["up", "-d"]).ok();
        assert_eq!(
            ids(&project),
            before,
            "{program}: a second up recreated containers"
        );
        let names = host.weaver.names();
        for (service, addr) in [("web", web.as_str()), ("client", client.as_str())] {
            assert!(
                names
                    .iter()
                    .any(|(name, a, _)| name == &format!("{service}.weave.local.") && a == addr),
                "{program}: weaveDNS knows {service} as {addr}: {names:?}"
            );
        }

        project.down(&via_proxy);
        eventually(
            &format!("{program}: every address given back after down"),
            Duration::from_secs(10),
            || host.weaver.owned().is_empty().then_some(()),
        );
    }
}

/// The opt-outs hold for a stock Compose file as for `docker run`: with `--no-default-ipalloc`
/// only a service that sets `WEAVE_CIDR` is attached.
#[test]
fn stock_project_opts_out_with_no_default_ipalloc() {
    let image = test_image();
    for program in installed_programs() {
        let scope = Scope::new();
        let host = WeaveHost::start_with(Weaver::builder(), &["--no-default-ipalloc"]);
        let label = scope.label();
        let spec = json!({
            "version": "2.4",
            "services": {
                "plain": {"image": image, "labels": [label], "command": ["sleep", "300"]},
                "asks": {
                    "image": image,
                    "labels": [label],
                    "environment": ["WEAVE_CIDR="],
                    "command": ["sleep", "300"],
                },
            },
        });
        let project = Project::new(&program, &scope, "optout", &spec);
        let via_proxy = host.proxy.host();
        project.run(&via_proxy, &["up", "-d"]).ok();
        let id = |service: &str| {
            let out = project.run(&via_proxy, &["ps", "-q", service]).ok();
            out.out().to_owned()
        };
        assert!(
            weave_tests::netns::ethwe(&id("plain")).is_none(),
            "{program}: plain was attached"
        );
        assert!(
            weave_tests::netns::ethwe(&id("asks")).is_some(),
            "{program}: asks was not attached"
        );
        project.down(&via_proxy);
    }
}

/// A project whose default network is the plugin's weave network (`networks: default:
/// external`), against the daemon itself: every service gets `ethwe` from the plugin, reaches
/// the others by service name (Docker's DNS knows Compose's aliases on that network), and
/// `down` gives every address back and leaves the network to its owner. The plugin and its
/// network have names of their own here, so that a real `weave` network is never touched.
#[test]
fn project_on_the_external_weave_network_comes_up_and_goes_down_clean() {
    let image = test_image();
    let plugin = format!("weavetest{}compose", std::process::id());
    let weaver = Weaver::builder().plugin(&plugin).start();
    let docker = Docker::new(target_daemon());
    for program in installed_programs() {
        let scope = Scope::new();
        let label = scope.label();
        let net = scope.name("weave");
        docker
            .run(&[
                "network",
                "create",
                "-d",
                &plugin,
                "--ipam-driver",
                &plugin,
                "--label",
                &label,
                &net,
            ])
            .ok();
        // Compose v1 reads `external: {name: N}`; v2 wants `external: true` and `name: N`.
        let default = if program == "docker-compose" {
            json!({"external": {"name": net}})
        } else {
            json!({"external": true, "name": net})
        };
        let service = json!({"image": image, "labels": [label], "command": ["sleep", "300"]});
        let spec = json!({
            "version": "2.4",
            "services": {"web": service, "client": service},
            "networks": {"default": default},
        });
        let project = Project::new(&program, &scope, "external", &spec);
        let direct = target_daemon();
        project.run(&direct, &["up", "-d"]).ok();

        let weave_ip = |service: &str| {
            let out = project
                .run(&direct, &["exec", "-T", service, "ip", "-o", "-4", "addr"])
                .ok();
            let addr = weave_tests::cli::weave_addr(&out.stdout)
                .and_then(|cidr| cidr.split('/').next().map(str::to_owned))
                .unwrap_or_else(|| panic!("{program}: {service} has no ethwe:\n{}", out.stdout));
            assert!(
                weave_tests::netns::in_subnet(&addr, WEAVE_RANGE),
                "{program}: {service} has {addr}, outside {WEAVE_RANGE}"
            );
            addr
        };
        let (web, client) = (weave_ip("web"), weave_ip("client"));
        assert_ne!(web, client, "{program}");
        let mut held: Vec<String> = weaver.owned().into_values().flatten().collect();
        held.sort();
        let mut want = vec![format!("{web}/12"), format!("{client}/12")];
        want.sort();
        assert_eq!(
            held, want,
            "{program}: the router holds what the services have"
        );
        project.ping_each_other(
            &direct,
            [("web", web.as_str()), ("client", client.as_str())],
        );

        let started = Instant::now();
        project.run(&direct, &["down", "-t", "0"]).ok();
        let down = started.elapsed();
        eventually(
            &format!("{program}: every address given back after down"),
            Duration::from_secs(10),
            || weaver.owned().is_empty().then_some(()),
        );
        // External: `down` leaves it, and it is empty.
        let left = docker
            .run(&[
                "network",
                "inspect",
                "--format",
                "{{len .Containers}}",
                &net,
            ])
            .ok();
        assert_eq!(
            left.out(),
            "0",
            "{program}: the external network after down"
        );
        docker.run(&["network", "rm", &net]).ok();
        eprintln!("{program}: on the external network, down took {down:?}");
    }
}

/// The program's version line, or `None` (after saying why) when Debian's v1 is not installed.
/// A Compose v2 named by `WEAVE_TEST_COMPOSE_V2` must exist: someone asked for it.
/// The compose programs to test that are installed, each announced with its version.
fn installed_programs() -> impl Iterator<Item = String> {
    compose_programs().into_iter().filter(|program| {
        compose_version(program)
            .inspect(|version| eprintln!("== {program}: {version}"))
            .is_some()
    })
}

fn compose_version(program: &str) -> Option<String> {
    match Command::new(program).arg("version").output() {
        Ok(out) => {
            assert!(out.status.success(), "{program} version: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && program == "docker-compose" => {
            skip::skip(&format!(
                "{program} is not installed (Debian package docker-compose)"
            ));
            None
        }
        Err(err) => panic!("{program} cannot run: {err}"),
    }
}

/// A compose project in its own directory; dropping it runs `down -v` against the daemon itself,
/// because compose's networks are removed only by `down`, and the proxy may be the thing that
/// broke.
#[derive(Debug)]
struct Project {
    program: String,
    name: String,
    file: PathBuf,
    _dir: TempDir,
}

impl Project {
    /// Writes `spec` (JSON is YAML, so both compose versions read it) as the compose file.
    fn new(program: &str, scope: &Scope, what: &str, spec: &Value) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weave-compose")
            .tempdir()
            .expect("a temporary directory");
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(&file, spec.to_string()).expect("the compose file is written");
        Self {
            program: program.to_owned(),
            name: scope.name(what),
            file,
            _dir: dir,
        }
    }

    /// Each of two services pings the other by service name (through `host`), and the name
    /// resolves to the other's weave address.
    fn ping_each_other(&self, host: &str, services: [(&str, &str); 2]) {
        let program = &self.program;
        for (from, (to, addr)) in [(services[1].0, services[0]), (services[0].0, services[1])] {
            let ping = self
                .run(host, &["exec", "-T", from, "ping", "-c1", "-W5", to])
                .ok();
            assert!(
                ping.stdout.contains(&format!("PING {to} ({addr})")),
                "{program}: {from} pings {to} at its weave address {addr}:\n{}",
                ping.stdout
            );
        }
    }

    /// Runs `PROGRAM -p NAME -f FILE ARGS` against `host`.
    fn run(&self, host: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .current_dir(self.file.parent().expect("the file is in a directory"))
            .env("DOCKER_HOST", host)
            .stdin(Stdio::null());
        // Nothing from the caller's environment may pick the project or file, point at another
        // endpoint, or stretch compose's own request timeout (v1's default is 60 s).
        for var in [
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_API_VERSION",
            "COMPOSE_FILE",
            "COMPOSE_PROJECT_NAME",
            "COMPOSE_PROFILES",
            "COMPOSE_HTTP_TIMEOUT",
            "COMPOSE_PARALLEL_LIMIT",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().expect("compose runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `down -v -t 0` through `host`, which must remove every container and the network of the
    /// project, as the daemon itself reports: how long it took.
    #[track_caller]
    fn down(&self, host: &str) -> Duration {
        let started = Instant::now();
        self.run(host, &["down", "-v", "-t", "0"]).ok();
        let took = started.elapsed();
        assert_nothing_left(&self.program, &self.name);
        took
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = self.run(
            &target_daemon(),
            &["down", "-v", "-t", "0", "--remove-orphans"],
        );
        if out.code != 0 {
            eprintln!("cleanup: {} down failed: {out:#?}", self.program);
        }
    }
}

/// `down` removed every container and the network of `project`, as the daemon itself reports.
#[track_caller]
fn assert_nothing_left(program: &str, project: &str) {
    let docker = Docker::new(target_daemon());
    let filter = format!("label=com.docker.compose.project={project}");
    let containers = docker.run(&["ps", "-aq", "--filter", &filter]).ok();
    assert_eq!(
        containers.out(),
        "",
        "{program}: containers left after down"
    );
    let networks = docker.run(&["network", "ls", "--format", "{{.Name}}"]).ok();
    let left: Vec<&str> = networks
        .stdout
        .lines()
        .filter(|n| n.starts_with(project))
        .collect();
    assert!(
        left.is_empty(),
        "{program}: networks left after down: {left:?}"
    );
}

/// The message of a `logs` line if `service` wrote it (`<container>  | <message>`, where the
/// container is `web_1` in v1 and `web-1` in v2).
fn logged_by<'a>(line: &'a str, service: &str) -> Option<&'a str> {
    let (container, message) = line.split_once(" | ")?;
    let container = container.trim();
    let numbered = container.strip_prefix(service)?;
    numbered
        .strip_prefix(['_', '-'])
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .map(|_| message)
}

/// `logs` output, sorted (containers' lines interleave as they arrive) and without the padding
/// after the container name, whose width v2 picks from the containers it has seen so far.
fn log_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = sorted_lines(&strip_ansi(text))
        .into_iter()
        .map(|line| match line.split_once(" | ") {
            Some((container, message)) => format!("{} | {message}", container.trim()),
            None => line,
        })
        .collect();
    lines.sort_unstable();
    lines
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort_unstable();
    lines
}

/// Compose v2 clears each log line with `ESC [2K` even when writing to a pipe.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: `ESC [`, parameters, then one final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `ps` table without the words that change with the clock ("Up 3 seconds", "2 minutes
/// ago") and without the column padding those words move.
fn without_clock(table: &str) -> Vec<Vec<String>> {
    const CLOCK: [&str; 11] = [
        "ago", "second", "seconds", "minute", "minutes", "about", "less", "than", "a", "an", "hour",
    ];
    table
        .lines()
        .map(|line| {
            line.split_whitespace()
                .filter(|w| !w.bytes().all(|b| b.is_ascii_digit()))
                .filter(|w| !CLOCK.contains(&w.to_ascii_lowercase().as_str()))
                .map(str::to_owned)
                .collect()
        })
        .collect()
}
