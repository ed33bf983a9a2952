//! Every everyday docker CLI command gives the same output and exit code through the proxy as
//! against the daemon directly.
//!
//! Read-only commands run twice on the same object. Commands that change state run on twins:
//! one object made directly, one through the proxy, each driven through its own path; names and
//! ids are then replaced by placeholders before the outputs are compared.

use weave_tests::{Docker, Output, Proxy, Scope, target_daemon, test_image};

/// The daemon directly and the proxy in front of it, with one scope for everything made.
struct Twins {
    direct: Docker,
    proxied: Docker,
    scope: Scope,
    _proxy: Proxy,
}

impl Twins {
    fn new() -> Self {
        let proxy = Proxy::start();
        Self {
            direct: Docker::new(target_daemon()),
            proxied: proxy.docker(),
            scope: Scope::new(),
            _proxy: proxy,
        }
    }

    /// Runs the same command both ways and asserts identical exit code, stdout and stderr.
    #[track_caller]
    fn same(&self, args: &[&str]) -> Output {
        let direct = self.direct.run(args);
        let proxied = self.proxied.run(args);
        assert_eq!(
            proxied, direct,
            "docker {args:?}: proxy (left) differs from daemon (right)"
        );
        proxied
    }

    /// Runs `args` with `{}` standing for the direct twin's name on the daemon and for the
    /// proxied twin's name through the proxy, and compares after putting `{}` back.
    #[track_caller]
    fn twin(&self, what: &str, args: &[&str]) -> Output {
        let direct_name = self.scope.name(&format!("d-{what}"));
        let proxied_name = self.scope.name(&format!("p-{what}"));
        let fill =
            |name: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", name)).collect() };
        let run = |docker: &Docker, name: &str| {
            let args = fill(name);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = docker.run(&args);
            Output {
                code: out.code,
                stdout: normalize(&out.stdout, name),
                stderr: normalize(&out.stderr, name),
            }
        };
        let direct = run(&self.direct, &direct_name);
        let proxied = run(&self.proxied, &proxied_name);
        assert_eq!(
            proxied, direct,
            "docker {args:?}: proxy (left) differs from daemon (right)"
        );
        proxied
    }
}

/// Replaces the twin's name and any 64- or 12-hex-digit id, which differ between twins.
fn normalize(text: &str, name: &str) -> String {
    let text = text.replace(name, "{}");
    text.split_inclusive(|c: char| !c.is_ascii_hexdigit())
        .map(|piece| {
            let word = piece.trim_end_matches(|c: char| !c.is_ascii_hexdigit());
            if (word.len() == 64 || word.len() == 12)
                && word
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                piece.replacen(word, "<id>", 1)
            } else {
                piece.to_owned()
            }
        })
        .collect()
}

#[test]
fn system_and_image_commands() {
    let image = test_image();
    let t = Twins::new();
    t.same(&["version"]).ok();
    t.same(&["version", "--format", "{{json .Server}}"]).ok();
    // Counters in `info` move while other tests run; the identity of the daemon does not.
    t.same(&["info", "--format", "{{.ID}} {{.ServerVersion}} {{.Driver}} {{.KernelVersion}} {{.OperatingSystem}} {{.NCPU}} {{.MemTotal}}"]).ok();
    t.same(&[
        "images",
        "--no-trunc",
        "--filter",
        "reference=weave-test-busybox",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
    ])
    .ok();
    t.same(&["image", "inspect", &image]).ok();
    t.same(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.CreatedBy}} {{.Size}}",
        &image,
    ])
    .ok();
    let missing = t.same(&["image", "inspect", "weave-test-no-such-image:1"]);
    assert_eq!(missing.code, 1);
}

#[test]
fn container_lifecycle_commands() {
    let image = test_image();
    let t = Twins::new();
    let label = t.scope.label();
    let run_d = [
        "run", "-d", "--label", &label, "--name", "{}", &image, "sleep", "300",
    ];

    let out = t.twin("life", &run_d).ok();
    assert_eq!(out.stdout, "<id>\n");
    t.twin(
        "life",
        &[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.Config.Cmd}} {{.Config.Labels}}",
            "{}",
        ],
    )
    .ok();
    t.twin("life", &["pause", "{}"]).ok();
    t.twin("life", &["inspect", "--format", "{{.State.Status}}", "{}"])
        .ok();
    t.twin("life", &["unpause", "{}"]).ok();
    t.twin("life", &["rename", "{}", "{}-renamed"]).ok();
    t.twin("life-renamed", &["kill", "{}"]).ok();
    let waited = t.twin("life-renamed", &["wait", "{}"]).ok();
    assert_eq!(waited.stdout, "137\n");
    t.twin("life-renamed", &["rm", "{}"]).ok();
    let gone = t.twin("life-renamed", &["inspect", "{}"]);
    assert_eq!(gone.code, 1, "{gone:?}");

    t.twin("stop", &run_d).ok();
    t.twin("stop", &["stop", "-t", "1", "{}"]).ok();
    t.twin(
        "stop",
        &[
            "ps",
            "-a",
            "--filter",
            "name={}",
            "--format",
            "{{.Names}} {{.Command}} {{.Labels}}",
        ],
    )
    .ok();
    t.twin("stop", &["rm", "-f", "{}"]).ok();

    let echoed = t.same(&[
        "run",
        "--rm",
        "--label",
        &label,
        &image,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 5",
    ]);
    assert_eq!(
        (echoed.code, echoed.stdout.as_str(), echoed.stderr.as_str()),
        (5, "out\n", "err\n")
    );
    let missing = t.twin("missing", &["rm", "{}"]);
    assert_eq!(missing.code, 1);
}

#[test]
fn inspection_of_a_running_container() {
    let image = test_image();
    let t = Twins::new();
    let name = t.scope.name("running");
    let label = t.scope.label();
    t.direct.run_detached(
        &t.scope,
        "running",
        &["-p", "127.0.0.1::8080"],
        &image,
        &["sleep", "300"],
    );
    t.same(&["inspect", &name]).ok();
    t.same(&["port", &name]).ok();
    t.same(&["port", &name, "8080/tcp"]).ok();
    t.same(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.Labels}} {{.Ports}}",
    ])
    .ok();
    t.same(&["ps", "-q", "--filter", &format!("label={label}")])
        .ok();
    t.same(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.ID}}",
        &name,
    ])
    .ok();
    // PIDs and times are the same process seen twice; the whole table must match.
    let top = t.same(&["top", &name]).ok();
    assert!(top.stdout.contains("sleep 300"), "{top:?}");
    t.same(&["logs", &name]).ok();
    t.same(&["diff", &name]).ok();
}

#[test]
fn network_and_volume_commands() {
    let t = Twins::new();
    let label = t.scope.label();
    let filter = format!("label={label}");
    let created = t
        .twin("net", &["network", "create", "--label", &label, "{}"])
        .ok();
    assert_eq!(created.stdout, "<id>\n");
    t.same(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ])
    .ok();
    t.twin(
        "net",
        &[
            "network",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
            "{}",
        ],
    )
    .ok();
    t.twin("net", &["network", "rm", "{}"]).ok();
    t.twin("net", &["network", "rm", "{}"]);

    t.twin("vol", &["volume", "create", "--label", &label, "{}"])
        .ok();
    t.same(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}} {{.Driver}}",
    ])
    .ok();
    t.twin(
        "vol",
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
            "{}",
        ],
    )
    .ok();
    t.twin("vol", &["volume", "rm", "{}"]).ok();
    let gone = t.twin("vol", &["volume", "rm", "{}"]);
    assert_eq!(gone.code, 1, "{gone:?}");
}

#[test]
fn normalize_replaces_names_and_ids_only() {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let text = format!("{id} wvt-x-d-a 0123456789ab deadbeef\n");
    assert_eq!(normalize(&text, "wvt-x-d-a"), "<id> {} <id> deadbeef\n");
}
