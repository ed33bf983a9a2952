//! Engine API protocol fidelity through the proxy, at the HTTP level: version prefixes, `_ping`
//! headers, big response chunks, hijacked attach/exec streams (101 upgrade, legacy 200, half-close,
//! detach), websocket attach, bollard, and daemon errors passed through verbatim.
//!
//! Where the point is fidelity, the same request goes to the daemon's own socket and the two
//! answers are compared; the daemon under test decides what is right (API 1.41 and 1.45 differ).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use weave_tests::daemon::target_socket;
use weave_tests::raw::{
    Conn, Head, READ_PATIENCE, chunked_roundtrip, encode_query, masked_text_frame, roundtrip,
};
use weave_tests::{Docker, Proxy, Scope, engine, eventually, test_image};

#[test]
fn versioned_and_bare_paths_and_ping_headers_match_the_daemon() {
    let proxy = Proxy::start();
    let daemon = target_socket();
    let api = daemon_api_version();

    for path in [
        "/_ping".to_owned(),
        format!("/v{api}/_ping"),
        "/v1.41/_ping".to_owned(),
    ] {
        let (head, body) = roundtrip(proxy.socket(), "GET", &path, &[], b"");
        assert_eq!(
            (head.status, body.as_slice()),
            (200, &b"OK"[..]),
            "GET {path}"
        );
    }
    for path in ["/version".to_owned(), format!("/v{api}/version")] {
        let (head, body) = roundtrip(proxy.socket(), "GET", &path, &[], b"");
        assert_eq!(head.status, 200, "GET {path}");
        let version: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(version["ApiVersion"], api.as_str(), "GET {path}");
    }
    // A versioned and a bare path to the same object reach the same daemon object.
    let (_, bare) = roundtrip(proxy.socket(), "GET", "/info", &[], b"");
    let (_, versioned) = roundtrip(proxy.socket(), "GET", &format!("/v{api}/info"), &[], b"");
    let id = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["ID"].clone();
    assert_eq!(id(&bare), id(&versioned));
    assert!(id(&bare).is_string(), "GET /info has an ID");

    for method in ["HEAD", "GET"] {
        let (direct, _) = roundtrip(&daemon, method, "/_ping", &[], b"");
        let (proxied, _) = roundtrip(proxy.socket(), method, "/_ping", &[], b"");
        eprintln!("{method} /_ping direct:  {direct:?}\n{method} /_ping proxied: {proxied:?}");
        assert_eq!(proxied.status, direct.status, "{method} /_ping status");
        for name in ["API-Version", "Docker-Experimental", "OSType"] {
            assert!(direct.header(name).is_some(), "the daemon sends {name}");
            assert_eq!(
                proxied.header(name),
                direct.header(name),
                "{method} /_ping header {name}"
            );
        }
    }
}

#[test]
fn a_response_chunk_over_64_kib_arrives_intact() {
    let scope = Scope::new();
    let proxy = Proxy::start();
    let daemon = target_socket();
    let tag = scope.name("big-label");
    // Four 50 KiB label values on continuation lines: one image whose list entry is ~200 KiB,
    // while every Dockerfile line stays under 64 KiB, a line scanner's usual limit.
    let values: Vec<String> = (0..4u64).map(|i| noise(50 * 1024, i + 1)).collect();
    let mut dockerfile = String::from("FROM scratch\nLABEL");
    for (i, value) in values.iter().enumerate() {
        dockerfile.push_str(&format!(" \\\n  big{i}={value}"));
    }
    dockerfile.push('\n');
    let label = scope.label();
    Docker::daemon()
        .run_with_stdin(
            &["build", "-q", "--label", &label, "-t", &tag, "-"],
            Some(dockerfile.as_bytes()),
        )
        .ok();

    let filters = encode_query(&json!({ "label": [label] }).to_string());
    let path = format!("/images/json?filters={filters}");
    let (direct_head, direct_chunks) = chunked_roundtrip(&daemon, &path);
    let (proxied_head, proxied_chunks) = chunked_roundtrip(proxy.socket(), &path);
    let sizes = |chunks: &[Vec<u8>]| chunks.iter().map(Vec::len).collect::<Vec<_>>();
    eprintln!(
        "GET /images/json: direct chunks {:?}, proxied chunks {:?}",
        sizes(&direct_chunks),
        sizes(&proxied_chunks)
    );
    assert_eq!((direct_head.status, proxied_head.status), (200, 200));
    // The premise: the daemon really sends one chunk larger than 64 KiB.
    assert!(
        direct_chunks.iter().any(|c| c.len() > 64 * 1024),
        "the daemon sent no chunk over 64 KiB: {:?}",
        sizes(&direct_chunks)
    );
    let direct = direct_chunks.concat();
    let proxied = proxied_chunks.concat();
    assert_eq!(proxied.len(), direct.len(), "body length");
    assert!(
        proxied == direct,
        "the proxied body differs from the daemon's"
    );
    let images: Value = serde_json::from_slice(&proxied).unwrap();
    let labels = &images[0]["Labels"];
    for (i, value) in values.iter().enumerate() {
        assert_eq!(labels[format!("big{i}")], value.as_str(), "label big{i}");
    }
}

#[test]
fn attach_upgrades_and_legacy_streams_match_the_daemon() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let daemon = target_socket();
    let id = Docker::daemon().run_detached(&scope, "cat", &["-i"], &image, &["cat"]);
    let mut differences = Vec::new();

    for prefix in ["", "/v1.41"] {
        for upgrade in [true, false] {
            let path =
                format!("{prefix}/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1");
            let case = format!("attach {path} upgrade={upgrade}");
            let mut direct = Conn::open(&daemon);
            let direct_head = direct.hijack(&path, b"", upgrade);
            let token = format!("direct-{prefix}-{upgrade}\n");
            direct.send(token.as_bytes());
            assert_eq!(direct.stdout_until(&token), token, "{case}: direct echo");
            drop(direct);

            let mut proxied = Conn::open(proxy.socket());
            let proxied_head = proxied.hijack(&path, b"", upgrade);
            eprintln!("{case}\n  direct:  {direct_head:?}\n  proxied: {proxied_head:?}");
            differences.extend(hijack_head_differences(
                &case,
                &direct_head,
                &proxied_head,
                upgrade,
            ));
            let token = format!("proxied-{prefix}-{upgrade}\n");
            proxied.send(token.as_bytes());
            assert_eq!(proxied.stdout_until(&token), token, "{case}: echo");
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn attach_half_close_ends_stdin_and_then_the_stream() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    for upgrade in [true, false] {
        // `StdinOnce`: the end of the attached stdin is the end of the container's stdin.
        let name = scope.name(&format!("once-{upgrade}"));
        let body = json!({
            "Image": image, "Cmd": ["cat"], "Labels": scope.labels(),
            "OpenStdin": true, "StdinOnce": true,
            "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
        });
        let id = create_direct(&name, &body);
        let mut conn = Conn::open(proxy.socket());
        let head = conn.hijack(
            &format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1"),
            b"",
            upgrade,
        );
        assert_eq!(head.status, if upgrade { 101 } else { 200 }, "{head:?}");
        let (status, _) = roundtrip(
            &target_socket(),
            "POST",
            &format!("/containers/{id}/start"),
            &[],
            b"",
        );
        assert_eq!(status.status, 204, "start");
        conn.send(b"last words\n");
        conn.shutdown_write();
        let (stdout, stderr) = conn.frames_to_eof();
        assert_eq!(
            (stdout.as_str(), stderr.as_str()),
            ("last words\n", ""),
            "upgrade={upgrade}"
        );
        let state = eventually("the container to exit", Duration::from_secs(10), || {
            let state =
                engine::get_json(&target_socket(), &format!("/containers/{id}/json"))["State"]
                    .clone();
            (state["Running"] == false).then_some(state)
        });
        assert_eq!(state["ExitCode"], 0, "upgrade={upgrade}: {state}");
    }
}

#[test]
fn exec_start_upgrades_legacy_half_close_and_detach_match_the_daemon() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let daemon = target_socket();
    let id = Docker::daemon().run_detached(&scope, "exec", &[], &image, &["sleep", "300"]);
    let start = json!({ "Detach": false, "Tty": false }).to_string();
    let mut differences = Vec::new();

    for prefix in ["", "/v1.41"] {
        for upgrade in [true, false] {
            let case = format!("exec start prefix={prefix:?} upgrade={upgrade}");
            let direct_exec = create_exec(&id, &["cat"], false);
            let mut direct = Conn::open(&daemon);
            let direct_head = direct.hijack(
                &format!("{prefix}/exec/{direct_exec}/start"),
                start.as_bytes(),
                upgrade,
            );
            drop(direct);

            let exec = create_exec(&id, &["cat"], false);
            let mut proxied = Conn::open(proxy.socket());
            let proxied_head = proxied.hijack(
                &format!("{prefix}/exec/{exec}/start"),
                start.as_bytes(),
                upgrade,
            );
            eprintln!("{case}\n  direct:  {direct_head:?}\n  proxied: {proxied_head:?}");
            differences.extend(hijack_head_differences(
                &case,
                &direct_head,
                &proxied_head,
                upgrade,
            ));
            proxied.send(b"ping\n");
            assert_eq!(proxied.stdout_until("ping\n"), "ping\n", "{case}: echo");
            // Half-close: the exec's `cat` sees EOF, exits, and the stream ends.
            proxied.send(b"pong\n");
            proxied.shutdown_write();
            let (stdout, _) = proxied.frames_to_eof();
            assert_eq!(stdout, "pong\n", "{case}: output after the half-close");
            let state = eventually("the exec to end", Duration::from_secs(10), || {
                let state = engine::get_json(&target_socket(), &format!("/exec/{exec}/json"));
                (state["Running"] == false).then_some(state)
            });
            assert_eq!(state["ExitCode"], 0, "{case}: {state}");
        }
    }

    // A TTY exec: a raw (not multiplexed) stream, whatever the API version.
    let tty_start = json!({ "Detach": false, "Tty": true }).to_string();
    let direct_exec = create_exec(&id, &["cat"], true);
    let direct_head = Conn::open(&daemon).hijack(
        &format!("/exec/{direct_exec}/start"),
        tty_start.as_bytes(),
        true,
    );
    let exec = create_exec(&id, &["cat"], true);
    let mut proxied = Conn::open(proxy.socket());
    let proxied_head = proxied.hijack(&format!("/exec/{exec}/start"), tty_start.as_bytes(), true);
    eprintln!("tty exec start\n  direct:  {direct_head:?}\n  proxied: {proxied_head:?}");
    differences.extend(hijack_head_differences(
        "tty exec start",
        &direct_head,
        &proxied_head,
        true,
    ));
    assert_eq!(
        proxied_head.header("Content-Type"),
        Some("application/vnd.docker.raw-stream")
    );
    proxied.send(b"on a tty\n");
    let seen = proxied.raw_until("on a tty");
    assert!(seen.contains("on a tty"), "{seen:?}");

    // Detached: an ordinary response, no hijack.
    let detach = json!({ "Detach": true, "Tty": false }).to_string();
    let direct_exec = create_exec(&id, &["true"], false);
    let (direct_head, direct_body) = roundtrip(
        &daemon,
        "POST",
        &format!("/exec/{direct_exec}/start"),
        &[("Content-Type", "application/json")],
        detach.as_bytes(),
    );
    let exec = create_exec(&id, &["sh", "-c", "exit 0"], false);
    let (head, body) = roundtrip(
        proxy.socket(),
        "POST",
        &format!("/exec/{exec}/start"),
        &[("Content-Type", "application/json")],
        detach.as_bytes(),
    );
    eprintln!(
        "detached exec start\n  direct:  {direct_head:?} {direct_body:?}\n  proxied: {head:?} {body:?}"
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        (head.status, head.header("Content-Type"), body),
        (
            direct_head.status,
            direct_head.header("Content-Type"),
            direct_body
        )
    );
    let state = eventually("the detached exec to end", Duration::from_secs(10), || {
        let state = engine::get_json(&target_socket(), &format!("/exec/{exec}/json"));
        (state["Running"] == false && state["Pid"] != 0).then_some(state)
    });
    assert_eq!(state["ExitCode"], 0, "{state}");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn websocket_attach_upgrades_and_carries_frames_both_ways() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let id = Docker::daemon().run_detached(&scope, "ws", &["-i"], &image, &["cat"]);
    let path = format!("/containers/{id}/attach/ws?stream=1&stdin=1&stdout=1");
    // RFC 6455's own example key: its accept value is known independently of any daemon.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";

    let mut direct = Conn::open(&target_socket());
    let direct_head = direct.websocket(&path, key);
    drop(direct);
    let mut conn = Conn::open(proxy.socket());
    let head = conn.websocket(&path, key);
    eprintln!("websocket attach\n  direct:  {direct_head:?}\n  proxied: {head:?}");
    assert_eq!((head.status, direct_head.status), (101, 101));
    assert_eq!(
        head.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    for name in ["Upgrade", "Connection", "Sec-WebSocket-Accept"] {
        assert_eq!(
            head.header(name).map(str::to_ascii_lowercase),
            direct_head.header(name).map(str::to_ascii_lowercase),
            "header {name}"
        );
    }
    conn.send(&masked_text_frame(b"over a websocket\n"));
    let mut echoed = Vec::new();
    while !String::from_utf8_lossy(&echoed).contains("over a websocket\n") {
        let (opcode, payload) = conn.ws_frame();
        assert!(matches!(opcode, 1 | 2), "a data frame, got opcode {opcode}");
        echoed.extend_from_slice(&payload);
    }
    assert_eq!(String::from_utf8_lossy(&echoed), "over a websocket\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bollard_lifecycle_images_and_events_match_the_daemon() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let direct = bollard_client(&target_socket()).await;
    let proxied = bollard_client(proxy.socket()).await;

    // `since` a moment ago: whenever each subscription reaches the daemon, it replays what it
    // missed, so both streams must hold exactly the same events.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let filters = HashMap::from([("label", vec![scope.label()])]);
    let options = bollard::query_parameters::EventsOptionsBuilder::default()
        .since(&since.to_string())
        .filters(&filters)
        .build();
    let mut direct_events = collect_events(direct.events(Some(options.clone())));
    let mut proxied_events = collect_events(proxied.events(Some(options)));

    let via_daemon = lifecycle(&direct, &scope, "direct", &image).await;
    let via_proxy = lifecycle(&proxied, &scope, "proxied", &image).await;
    assert_eq!(via_proxy, via_daemon);
    assert_eq!(via_proxy.exit_code, 3);
    assert_eq!(via_proxy.logs, ["err: err\n", "out: out\n"]);
    assert!(via_proxy.gone, "removed");

    let images = HashMap::from([("reference", vec![image.clone()])]);
    let list = || {
        Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .filters(&images)
                .build(),
        )
    };
    let direct_images = serde_json::to_value(direct.list_images(list()).await.unwrap()).unwrap();
    let proxied_images = serde_json::to_value(proxied.list_images(list()).await.unwrap()).unwrap();
    assert_eq!(proxied_images, direct_images);
    assert_eq!(
        proxied_images.as_array().map(Vec::len),
        Some(1),
        "{proxied_images}"
    );

    // Both containers were created and destroyed: each stream saw the same events, in order.
    let until_both_destroyed = async |events: &mut tokio::sync::mpsc::UnboundedReceiver<Value>| {
        let mut seen = Vec::new();
        let destroyed = |seen: &[Value]| seen.iter().filter(|e| e["Action"] == "destroy").count();
        while destroyed(&seen) < 2 {
            let event = tokio::time::timeout(READ_PATIENCE, events.recv())
                .await
                .expect("events keep arriving")
                .expect("the event stream stays open");
            seen.push(event);
        }
        seen
    };
    let direct_seen = until_both_destroyed(&mut direct_events).await;
    let proxied_seen = until_both_destroyed(&mut proxied_events).await;
    let actions: Vec<&str> = proxied_seen
        .iter()
        .map(|e| e["Action"].as_str().unwrap_or_default())
        .collect();
    eprintln!("events through the proxy: {actions:?}");
    assert_eq!(proxied_seen, direct_seen);
    for action in ["create", "start", "die", "destroy"] {
        assert_eq!(
            actions.iter().filter(|a| **a == action).count(),
            2,
            "two {action} events in {actions:?}"
        );
    }
}

/// Polls an event stream in its own task (bollard sends the request on the first poll).
fn collect_events(
    events: impl futures_util::Stream<
        Item = Result<bollard::models::EventMessage, bollard::errors::Error>,
    > + Send
    + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut events = Box::pin(events);
        // An error ends the stream, which the receiver sees as the channel closing.
        while let Some(Ok(event)) = events.next().await {
            if tx.send(serde_json::to_value(event).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn daemon_errors_pass_through_verbatim() {
    let proxy = Proxy::start();
    let daemon = target_socket();
    let api = daemon_api_version();
    let bad_filter = format!("/containers/json?filters={}", encode_query("{not json"));
    for path in [
        "/containers/nosuch/json".to_owned(),
        format!("/v{api}/containers/nosuch/json"),
        "/images/nosuch:nosuch/json".to_owned(),
        "/networks/nosuch".to_owned(),
        bad_filter,
    ] {
        let (direct_head, direct_body) = roundtrip(&daemon, "GET", &path, &[], b"");
        let (head, body) = roundtrip(proxy.socket(), "GET", &path, &[], b"");
        eprintln!(
            "GET {path}: {} {}",
            head.status,
            String::from_utf8_lossy(&body).trim()
        );
        assert!(direct_head.status >= 400, "GET {path} is an error directly");
        assert_eq!(
            (
                head.status,
                head.reason.as_str(),
                head.header("Content-Type")
            ),
            (
                direct_head.status,
                direct_head.reason.as_str(),
                direct_head.header("Content-Type")
            ),
            "GET {path}"
        );
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&direct_body),
            "GET {path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and daemon helpers.

/// What one bollard client observed of one container's life.
#[derive(Debug, PartialEq, Eq)]
struct Lifecycle {
    exit_code: i64,
    logs: Vec<String>,
    cmd: Value,
    gone: bool,
}

async fn lifecycle(docker: &bollard::Docker, scope: &Scope, who: &str, image: &str) -> Lifecycle {
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    };
    let name = scope.name(who);
    let label = scope.label();
    let (key, value) = label.split_once('=').expect("a key=value label");
    let labels = HashMap::from([(key.to_owned(), value.to_owned())]);
    let config = bollard::models::ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(
            ["sh", "-c", "echo out; echo err >&2; exit 3"]
                .map(str::to_owned)
                .to_vec(),
        ),
        // Left alone by the proxy: this is about the protocol, not about weave's rewrite.
        env: Some(vec!["WEAVE_CIDR=none".to_owned()]),
        labels: Some(labels),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            config,
        )
        .await
        .unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    let waited: Vec<_> = docker.wait_container(&created.id, None).collect().await;
    let exit_code = match waited.as_slice() {
        [Err(bollard::errors::Error::DockerContainerWaitError { code, .. })] => *code,
        [Ok(response)] => response.status_code,
        other => panic!("{who}: wait answered {other:?}"),
    };
    let logs: Vec<String> = docker
        .logs(
            &created.id,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        )
        .map(|item| match item.unwrap() {
            bollard::container::LogOutput::StdOut { message } => {
                format!("out: {}", String::from_utf8_lossy(&message))
            }
            bollard::container::LogOutput::StdErr { message } => {
                format!("err: {}", String::from_utf8_lossy(&message))
            }
            other => format!("other: {other:?}"),
        })
        .collect()
        .await;
    // The two streams are copied by separate daemon goroutines: their order is not the point.
    let mut logs = logs;
    logs.sort();
    let inspect = docker.inspect_container(&created.id, None).await.unwrap();
    let cmd = serde_json::to_value(inspect.config.and_then(|c| c.cmd)).unwrap();
    docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    let gone = matches!(
        docker.inspect_container(&created.id, None).await,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        })
    );
    Lifecycle {
        exit_code,
        logs,
        cmd,
        gone,
    }
}

async fn bollard_client(socket: &Path) -> bollard::Docker {
    bollard::Docker::connect_with_unix(
        socket.to_str().expect("socket path is UTF-8"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("bollard connects")
    .negotiate_version()
    .await
    .expect("bollard negotiates the API version")
}

/// The daemon's own API version, from `GET /version` on its socket.
fn daemon_api_version() -> String {
    let (_, body) = roundtrip(&target_socket(), "GET", "/version", &[], b"");
    let version: Value = serde_json::from_slice(&body).unwrap();
    version["ApiVersion"].as_str().unwrap().to_owned()
}

/// `POST /containers/create` on the daemon's own socket; returns the id.
fn create_direct(name: &str, body: &Value) -> String {
    post_created(&format!("/containers/create?name={name}"), body)
}

/// Creates an exec directly on the daemon, with stdin and stdout attached; returns its id.
fn create_exec(container: &str, cmd: &[&str], tty: bool) -> String {
    let body = json!({
        "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
        "Tty": tty, "Cmd": cmd,
    });
    post_created(&format!("/containers/{container}/exec"), &body)
}

/// `POST path` with a JSON body on the daemon's own socket, answered `201 {"Id": …}`; the id.
fn post_created(path: &str, body: &Value) -> String {
    let (head, answer) = roundtrip(
        &target_socket(),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(head.status, 201, "{}", String::from_utf8_lossy(&answer));
    let created: Value = serde_json::from_slice(&answer).unwrap();
    created["Id"].as_str().unwrap().to_owned()
}
/// The proxy's hijack answer has the status the client asked for (`101` with the upgrade
/// headers, the legacy `200` without), as the daemon's has. Header differences are returned
/// rather than asserted, so that the stream itself is still exercised and every difference of a
/// test is reported at once.
#[must_use]
fn hijack_head_differences(
    case: &str,
    direct: &Head,
    proxied: &Head,
    upgrade: bool,
) -> Vec<String> {
    let want = if upgrade { 101 } else { 200 };
    assert_eq!(direct.status, want, "{case}: the daemon's own status");
    assert_eq!(proxied.status, want, "{case}: status");
    let mut differences = Vec::new();
    let mut differ = |what: &str, proxied: Option<&str>, direct: Option<&str>| {
        if proxied != direct {
            differences.push(format!(
                "{case}: {what}: the proxy sent {proxied:?}, the daemon {direct:?}"
            ));
        }
    };
    differ(
        "Content-Type",
        proxied.header("Content-Type"),
        direct.header("Content-Type"),
    );
    if upgrade {
        let upgrade = proxied.header("Upgrade").map(str::to_ascii_lowercase);
        differ("Upgrade", upgrade.as_deref(), Some("tcp"));
    } else {
        // The legacy stream is a body delimited by the connection's close, as the daemon frames
        // it; a `Content-Length: 0` would tell any HTTP-aware client that the body is empty.
        for framing in ["Content-Length", "Transfer-Encoding"] {
            assert_eq!(
                direct.header(framing),
                None,
                "{case}: the daemon's {framing}"
            );
            differ(framing, proxied.header(framing), None);
        }
    }
    differences
}

/// `len` pseudo-random alphanumerics (xorshift), so nothing about the value is regular.
fn noise(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

#[test]
fn relayed_bytes_are_counted_by_stream_and_direction() {
    let scope = Scope::new();
    let image = test_image();
    let metrics = weave_tests::weaver::free_tcp_addr();
    let proxy = Proxy::start_with(&weave_tests::target_daemon(), &["--metrics-addr", &metrics]);
    let label = scope.label();

    // A hijacked stream: stdin through an attached `cat`, which the docker CLI sends as it is.
    let stdin = noise(300_000, 3);
    let before = relayed_bytes(&metrics);
    let out = proxy
        .docker()
        .run_with_stdin(
            &["run", "-i", "--rm", "--label", &label, &image, "cat"],
            Some(stdin.as_bytes()),
        )
        .ok();
    assert_eq!(out.stdout.len(), stdin.len(), "cat's output");
    let after = relayed_bytes(&metrics);
    let grew = |key: &str| after[key] - before[key];
    assert_eq!(grew("hijacked to_daemon"), stdin.len() as u64);
    // Its output comes back multiplexed: the bytes and a header per frame.
    assert!(grew("hijacked to_client") > stdin.len() as u64);

    // A body stream: an archive passed through as the daemon sent it.
    let id = Docker::daemon()
        .run(&["create", "--label", &label, &image, "true"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let before = relayed_bytes(&metrics);
    let (head, archive) = roundtrip(
        proxy.socket(),
        "GET",
        &format!("/containers/{id}/archive?path=/etc"),
        &[],
        b"",
    );
    assert_eq!(head.status, 200);
    let after = relayed_bytes(&metrics);
    assert_eq!(
        after["body to_client"] - before["body to_client"],
        archive.len() as u64
    );
}

/// `weaveproxy_relayed_bytes_total` from the proxy's metrics, keyed `"<stream> <direction>"`.
fn relayed_bytes(metrics_addr: &str) -> HashMap<String, u64> {
    let (status, text) = weave_tests::http::request(metrics_addr, "GET", "/metrics", "")
        .expect("the metrics answer");
    assert_eq!(status, 200, "{text}");
    let counts: HashMap<String, u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("weaveproxy_relayed_bytes_total{stream=\""))
        .filter_map(|rest| {
            let (stream, rest) = rest.split_once("\",direction=\"")?;
            let (direction, count) = rest.split_once("\"} ")?;
            Some((format!("{stream} {direction}"), count.parse().ok()?))
        })
        .collect();
    assert_eq!(counts.len(), 4, "{text}");
    counts
}
