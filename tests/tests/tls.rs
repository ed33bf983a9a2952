//! TLS on the proxy's TCP listeners (`--tls`, `--tlsverify`) and to a TCP daemon
//! (`DOCKER_TLS_VERIFY`), driven by the real docker CLI with certificates made per test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use weave_tests::pki::Pki;
use weave_tests::raw;
use weave_tests::{Docker, Output, Proxy, Scope, target_daemon, test_image};

/// A CA and what it signed, as PEM files laid out like a docker client's `DOCKER_CERT_PATH`
/// (`ca.pem`, `cert.pem`, `key.pem`) plus the server's `server-cert.pem` and
/// `server-key.pem`, as in Docker's "protect the daemon socket" guide.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A proxy in front of the daemon that also listens on TCP with `tls_flags`; returns it and
/// its `tcp://127.0.0.1:PORT`.
fn tls_proxy(tls_flags: &[String]) -> (Proxy, String) {
    let host = format!("tcp://127.0.0.1:{}", free_port());
    let mut args = vec!["-H", host.as_str()];
    args.extend(tls_flags.iter().map(String::as_str));
    (Proxy::start_with(&target_daemon(), &args), host)
}

/// `docker GLOBAL ARGS` against `host`, with stdin when given.
fn docker(host: &str, global: &[String], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let all: Vec<&str> = global
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    Docker::new(host).run_with_stdin(&all, stdin)
}

fn run(mut command: Command) -> Output {
    let out = command.output().expect("the docker CLI runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SERVER_VERSION: [&str; 3] = ["version", "--format", "{{.Server.Version}}"];

#[test]
fn tlsverify_serves_clients_with_certificates_and_refuses_the_rest() {
    let (image, scope, pki) = (test_image(), Scope::new(), Pki::new());
    let (proxy, host) = tls_proxy(&pki.server_flags(true));
    let client = pki.client_flags(&host);
    let daemon_version = Docker::daemon().run(&SERVER_VERSION).ok().stdout;

    // The flags the weave docs and Docker's TLS guide give, and the environment form.
    let out = docker(&host, &client, &SERVER_VERSION, None).ok();
    assert_eq!(out.stdout, daemon_version);
    let mut env_form = Docker::new(&host).command(&SERVER_VERSION);
    env_form
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", pki.dir());
    assert_eq!(run(env_form).ok().stdout, daemon_version);

    // Hijacked streams, stdin EOF included: `run -i` and `exec -i`.
    let label = scope.label();
    let name = scope.name("tls-run");
    let out = docker(
        &host,
        &client,
        &[
            "run", "--rm", "-i", "--label", &label, "--name", &name, &image, "cat",
        ],
        Some(b"through TLS\n"),
    )
    .ok();
    assert_eq!(out.stdout, "through TLS\n");
    let ticker = scope.name("tls-ticker");
    docker(
        &host,
        &client,
        &[
            "run",
            "-d",
            "--label",
            &label,
            "--name",
            &ticker,
            &image,
            "sh",
            "-c",
            "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done",
        ],
        None,
    )
    .ok();
    let out = docker(
        &host,
        &client,
        &["exec", "-i", &ticker, "cat"],
        Some(b"exec through TLS\n"),
    )
    .ok();
    assert_eq!(out.stdout, "exec through TLS\n");

    // A chunked stream that never ends: `logs -f` delivers lines as they come.
    let global: Vec<&str> = client.iter().map(String::as_str).collect();
    let mut args = global.clone();
    args.extend(["logs", "-f", &ticker]);
    let (mut follow, mut lines) = Docker::new(&host).spawn_lines(&args);
    for want in ["tick0", "tick1", "tick2"] {
        assert_eq!(lines.next().unwrap().unwrap(), want);
    }
    follow.kill().unwrap();
    follow.wait().unwrap();

    // No client certificate: an empty DOCKER_CERT_PATH leaves the CLI without one.
    let empty = tempfile::tempdir().unwrap();
    let mut no_cert =
        Docker::new(&host).command(&["--tlsverify", "--tlscacert", &pki.path("ca.pem"), "version"]);
    no_cert.env("DOCKER_CERT_PATH", empty.path());
    let out = run(no_cert);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("certificate"), "{out:#?}");

    // A certificate from another CA, though the client trusts the proxy's.
    let stranger = Pki::new();
    let mixed = pki.mixed_with(&stranger);
    let mut other_ca = Docker::new(&host).command(&SERVER_VERSION);
    other_ca
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", mixed.path());
    let out = run(other_ca);
    assert_ne!(out.code, 0, "{out:#?}");

    // Plain HTTP to the TLS port gets no HTTP answer, from a raw client or the CLI.
    let reply = plain_http(&host);
    assert!(
        !reply.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    let out = Docker::new(&host).run(&SERVER_VERSION);
    assert_ne!(out.code, 0, "{out:#?}");

    // Each refusal ended one connection, at debug; the proxy still serves.
    assert_eq!(
        docker(&host, &client, &SERVER_VERSION, None).ok().stdout,
        daemon_version
    );
    let log = proxy.log();
    assert!(
        log.matches("TLS handshake failed").count() >= 3,
        "expected a failed handshake per refused client:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("TLS") && (l.contains(" WARN ") || l.contains(" ERROR "))),
        "{log}"
    );
}

/// Sends a plain HTTP request to a TLS port and returns whatever comes back before the close.
fn plain_http(host: &str) -> Vec<u8> {
    let addr = host.strip_prefix("tcp://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let started = Instant::now();
    stream.read_to_end(&mut reply).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the proxy never closed"
    );
    reply
}

#[test]
fn tls_without_verify_asks_for_no_client_certificate() {
    let pki = Pki::new();
    let (_proxy, host) = tls_proxy(&pki.server_flags(false));
    let daemon_version = Docker::daemon().run(&SERVER_VERSION).ok().stdout;
    // `--tls` alone: encrypted, neither side checked. The CLI still reads a ca.pem, which here
    // is another CA's: the proxy's certificate is not verified, and no client one is shown.
    let stranger = Pki::new();
    let only_ca = tempfile::tempdir().unwrap();
    std::fs::copy(stranger.dir().join("ca.pem"), only_ca.path().join("ca.pem")).unwrap();
    let mut tls_only = Docker::new(&host).command(&["--tls", "-H", &host]);
    tls_only
        .args(SERVER_VERSION)
        .env("DOCKER_CERT_PATH", only_ca.path());
    assert_eq!(run(tls_only).ok().stdout, daemon_version);
    // Verifying the proxy (its certificate names 127.0.0.1) without showing one.
    let verify_server = [
        "--tlsverify".to_owned(),
        "--tlscacert".to_owned(),
        pki.path("ca.pem"),
        "-H".to_owned(),
        host.clone(),
    ];
    let mut command = Docker::new(&host).command(&[]);
    let empty = tempfile::tempdir().unwrap();
    command
        .args(&verify_server)
        .args(SERVER_VERSION)
        .env("DOCKER_CERT_PATH", empty.path());
    assert_eq!(run(command).ok().stdout, daemon_version);
}

#[test]
fn a_proxy_reaches_a_tls_daemon_as_the_docker_cli_would() {
    let image = test_image();
    let pki = Pki::new();
    // Proxy A plays a daemon that requires client certificates; proxy B forwards to it.
    let (_front, host) = tls_proxy(&pki.server_flags(true));
    let cert_path = pki.dir().display().to_string();
    let tls_env = [
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", cert_path.as_str()),
    ];
    let chained = Proxy::start_with_env(&host, &[], &tls_env);
    let daemon_version = Docker::daemon().run(&SERVER_VERSION).ok().stdout;
    assert_eq!(
        chained.docker().run(&SERVER_VERSION).ok().stdout,
        daemon_version
    );
    let out = chained
        .docker()
        .run_with_stdin(
            &["run", "--rm", "-i", &image, "cat"],
            Some(b"over two TLS hops\n"),
        )
        .ok();
    assert_eq!(out.stdout, "over two TLS hops\n");

    // B trusting another CA refuses A's certificate, and says so in a 502.
    let stranger = Pki::new();
    let wrong_ca = stranger.mixed_with(&pki);
    let wrong_path = wrong_ca.path().display().to_string();
    let misled = Proxy::start_with_env(
        &host,
        &[],
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", wrong_path.as_str()),
        ],
    );
    let (head, body) = raw::roundtrip(misled.socket(), "GET", "/_ping", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(head.status, 502, "{body}");
    assert!(body.contains("TLS handshake"), "{body}");
    assert!(body.contains("certificate"), "{body}");
    let out = misled.docker().run(&SERVER_VERSION);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("TLS handshake"), "{out:#?}");
}

#[test]
fn bad_tls_settings_stop_the_proxy_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("missing.pem");
    let missing = missing.display().to_string();
    let proxy = weave_tests::proxy::binary();
    let start = |args: &[&str]| {
        let out = Command::new(&proxy)
            .args(["-H", "tcp://127.0.0.1:0", "--docker-api", &target_daemon()])
            .args(["--data-dir", &dir.path().join("data").display().to_string()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A flag problem is a usage error (64); an unreadable file an I/O one (1).
    let (code, stderr) = start(&["--tlsverify", "--tlscert", &missing, "--tlskey", &missing]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--tlsverify needs --tlscacert"), "{stderr}");
    let (code, stderr) = start(&["--tls", "--tlscert", &missing, "--tlskey", &missing]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--tlscert") && stderr.contains(&missing),
        "{stderr}"
    );
}
