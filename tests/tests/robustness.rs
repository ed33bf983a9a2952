//! The proxy under stress and abuse: an unreachable daemon, clients hanging up mid-stream (no fd
//! leak), stuck clients (no stall), 200 concurrent clients, malformed HTTP (4xx, never forwarded)
//! and graceful SIGTERM.
//!
//! What the daemon receives is observed with a fake daemon on a private socket that records every
//! request, where the real one could not show it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weave_tests::daemon::target_socket;
use weave_tests::http::Request;
use weave_tests::raw::{Conn, Head, READ_PATIENCE, encode_query, exchange};
use weave_tests::{Docker, Proxy, Scope, eventually, poll, target_daemon, test_image};

#[test]
fn an_unreachable_daemon_gets_502_naming_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent.sock");
    let proxy = Proxy::start_with(&format!("unix://{}", missing.display()), &[]);
    check_502_naming(&proxy, &missing);
}

#[test]
fn a_daemon_that_goes_away_gets_502_naming_its_socket() {
    let fake = FakeDaemon::start();
    let proxy = Proxy::start_with(&fake.host(), &[]);
    let (head, _) = exchange(
        proxy.socket(),
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    );
    assert_eq!(head.status, 200, "through the fake daemon");
    let socket = fake.path.clone();
    drop(fake);
    check_502_naming(&proxy, &socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_hanging_up_mid_stream_leave_no_descriptor_behind() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let socket = proxy.socket().to_owned();
    let id = Docker::daemon().run_detached(
        &scope,
        "streams",
        &["-i"],
        &image,
        &["sh", "-c", "echo ready; exec cat"],
    );

    // Warm-up: idle connections to the daemon stay pooled, so the baseline is taken after as
    // many concurrent plain requests as the proxy will ever have pooled. Streams cut short never
    // go back to the pool, so the count can only return to this or below (idle ones expire).
    for _ in 0..3 {
        let pings = (0..8).map(|_| {
            let socket = socket.clone();
            tokio::spawn(async move { ping(&socket).await })
        });
        for ping in pings {
            assert_eq!(ping.await.unwrap(), 200);
        }
    }
    let baseline = settled_fd_count(&proxy);

    let name = scope.name("aborted-build");
    let labels = encode_query(&scope.labels().to_string());
    let build_path = format!("/build?t={name}&labels={labels}&rm=1&forcerm=1");
    let kinds = ["events", "logs", "attach", "build"];
    let mut peak = 0;
    let mut opened = [0usize; 4];
    for batch in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let kind = (batch * 50 + i) % kinds.len();
            opened[kind] += 1;
            let (socket, id, build_path) = (socket.clone(), id.clone(), build_path.clone());
            tasks.push(tokio::spawn(async move {
                open_stream(&socket, kind, &id, &build_path).await
            }));
        }
        let mut streams = Vec::new();
        for task in tasks {
            streams.push(task.await.unwrap());
        }
        peak = peak.max(proxy.fd_count());
        drop(streams);
    }
    // Idle pooled connections that other tests' events added meanwhile expire after 90 s.
    let settled = eventually(
        "the proxy's descriptors to return to the baseline",
        Duration::from_secs(100),
        || {
            let now = proxy.fd_count();
            (now <= baseline).then_some(now)
        },
    );
    eprintln!(
        "fds: baseline {baseline}, peak {peak} with 50 streams open, {settled} after \
         {} events + {} logs + {} attach + {} build streams were dropped",
        opened[0], opened[1], opened[2], opened[3]
    );
    // Each open stream holds a client connection and a daemon connection of its own. (Not
    // `baseline + 100`: the streams may reuse idle pooled connections that the baseline counted,
    // and the proxy's event watcher pools some while other tests start containers.)
    assert!(
        peak >= 2 * 50,
        "the streams really were open at once (peak {peak} fds)"
    );
    // The half-sent build context never became an image.
    let images = Docker::daemon()
        .run(&[
            "image",
            "ls",
            "-q",
            "--filter",
            &format!("reference={name}"),
        ])
        .ok();
    assert_eq!(
        images.out(),
        "",
        "an image was built from a cut-off context"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_client_never_stalls_another() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let socket = proxy.socket().to_owned();
    let id = Docker::daemon().run_detached(&scope, "archive", &[], &image, &["sleep", "300"]);
    const BIG: usize = 32 * 1024 * 1024;
    Docker::daemon()
        .run(&[
            "exec",
            &id,
            "sh",
            "-c",
            &format!("head -c {BIG} /dev/zero > /tmp/big"),
        ])
        .ok();
    let rss_before = proxy.rss_kib();

    // Half a request head, then nothing.
    let mut half_head = tokio::net::UnixStream::connect(&socket).await.unwrap();
    half_head
        .write_all(b"GET /_ping HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // A 32 MiB download and an event stream that nobody reads.
    let mut archive = tokio::net::UnixStream::connect(&socket).await.unwrap();
    archive
        .write_all(
            format!(
                "GET /containers/{id}/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut events = tokio::net::UnixStream::connect(&socket).await.unwrap();
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: docker\r\n\r\n")
        .await
        .unwrap();

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let sent = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(5), ping(&socket))
            .await
            .unwrap_or_else(|_| panic!("ping {i} took over 5 s"));
        assert_eq!(status, 200, "ping {i}");
        slowest = slowest.max(sent.elapsed());
    }
    let rss_during = proxy.rss_kib();
    eprintln!(
        "100 pings beside stuck clients: {:?} in all, slowest {slowest:?}; proxy RSS {rss_before} \
         KiB before, {rss_during} KiB with a 32 MiB download unread",
        started.elapsed()
    );
    // A stall would last as long as the stuck clients do; 2 s only absorbs a loaded machine.
    assert!(
        slowest < Duration::from_secs(2),
        "a ping took {slowest:?} beside stuck clients"
    );
    // The unread download waits in the socket buffers, not in the proxy's memory.
    assert!(
        rss_during < rss_before + 16 * 1024,
        "proxy RSS grew from {rss_before} to {rss_during} KiB for an unread download"
    );

    // The stalled download is intact once its reader wakes up.
    let mut downloaded = Vec::new();
    tokio::time::timeout(READ_PATIENCE, archive.read_to_end(&mut downloaded))
        .await
        .expect("the download finishes")
        .unwrap();
    assert!(
        downloaded.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &downloaded[..64]
    );
    assert!(
        downloaded.len() > BIG,
        "downloaded {} bytes, want over {BIG}",
        downloaded.len()
    );
    drop((half_head, events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_clients_are_served() {
    const CLIENTS: usize = 200;
    let proxy = Proxy::start();
    let socket = proxy.socket().to_owned();
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (socket, barrier) = (socket.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                let mut conn = tokio::net::UnixStream::connect(&socket).await.unwrap();
                // Every client is connected before any of them asks.
                barrier.wait().await;
                conn.write_all(
                    b"GET /containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let mut answer = Vec::new();
                tokio::time::timeout(READ_PATIENCE, conn.read_to_end(&mut answer))
                    .await
                    .expect("an answer within the patience")
                    .unwrap();
                answer
            })
        })
        .collect();
    let mut ok = 0;
    for client in clients {
        let answer = client.await.unwrap();
        let head = Head::parse(&answer);
        assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&answer));
        let body = &answer[answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        assert!(body.starts_with(b"["), "a container list: {body:?}");
        ok += 1;
    }
    eprintln!(
        "{ok} concurrent GET /containers/json: {:?}",
        started.elapsed()
    );
    assert_eq!(ok, CLIENTS);
}

#[test]
fn malformed_requests_get_4xx_and_never_reach_the_daemon() {
    let fake = FakeDaemon::start();
    let proxy = Proxy::start_with(&fake.host(), &[]);
    let daemon = target_socket();
    let huge_header = |size: usize| {
        let mut req = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Huge: ".to_vec();
        req.resize(req.len() + size, b'a');
        req.extend_from_slice(b"\r\n\r\n");
        req
    };
    let many_headers = {
        let mut req = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n".to_vec();
        for i in 0..2000 {
            req.extend_from_slice(format!("X-Header-{i}: {i}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    };
    let bad_chunk = b"POST /containers/create HTTP/1.1\r\nHost: docker\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
        zz\r\n{}\r\n0\r\n\r\n"
        .to_vec();
    let cases: [(&str, Vec<u8>); 7] = [
        ("garbage request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec()),
        (
            "request line without a version",
            b"GET /containers/json\r\nHost: docker\r\n\r\n".to_vec(),
        ),
        (
            "space inside the target",
            b"GET /containers /json HTTP/1.1\r\nHost: docker\r\n\r\n".to_vec(),
        ),
        ("1 MiB header", huge_header(1024 * 1024)),
        ("2 MiB header", huge_header(2 * 1024 * 1024)),
        ("2000 header lines", many_headers),
        ("bad chunk size in a create body", bad_chunk),
    ];
    let mut report = Vec::new();
    for (case, request) in &cases {
        let proxied = send_malformed(proxy.socket(), request);
        // The bad create body is not sent to the real daemon: it might create a container.
        let direct = if case.starts_with("bad chunk") {
            "not tried".to_owned()
        } else {
            describe(send_malformed(&daemon, request).as_ref())
        };
        report.push(format!(
            "{case}: proxy {}, dockerd {direct}",
            describe(proxied.as_ref())
        ));
        let status = proxied.as_ref().map(|h| h.status);
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)),
            "{case}: the proxy answered {proxied:?}"
        );
        // The proxy keeps serving.
        let (head, body) = exchange(
            proxy.socket(),
            b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
        );
        assert_eq!(
            (head.status, body.as_slice()),
            (200, FAKE_ANSWER.as_bytes()),
            "after {case}"
        );
    }
    eprintln!("{}", report.join("\n"));
    let seen: Vec<String> = fake.seen().iter().map(|s| s.request_line()).collect();
    // Besides the pings: the proxy's own requests (its version probe, and the events stream and
    // container list that attach containers started behind its back).
    let own = |l: &str| {
        l == "GET /version HTTP/1.1"
            || l == "GET /containers/json HTTP/1.1"
            || (l.starts_with("GET /events?") && l.ends_with(" HTTP/1.1"))
    };
    assert!(
        seen.iter().all(|l| own(l) || l == "GET /_ping HTTP/1.1"),
        "only the good requests reached the daemon: {seen:#?}"
    );
    assert_eq!(
        seen.iter().filter(|l| *l == "GET /_ping HTTP/1.1").count(),
        cases.len(),
        "every good request after a bad one reached the daemon: {seen:#?}"
    );
}

#[test]
fn content_length_with_chunked_never_reaches_the_daemon_with_both() {
    let fake = FakeDaemon::start();
    let proxy = Proxy::start_with(&fake.host(), &[]);
    // The chunked body is what counts (RFC 9112 §6.3); the Content-Length lies about it.
    let payload = br#"{"Image":"busybox","Env":["WEAVE_CIDR=none"]}"#;
    let chunked = |path: &str, te_first: bool| {
        let framing = if te_first {
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"
        } else {
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n{framing}\r\n\
             {:x}\r\n",
            payload.len()
        )
        .into_bytes();
        req.extend_from_slice(payload);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        req
    };
    let mut report = Vec::new();
    for path in ["/containers/create", "/v1.41/build"] {
        for te_first in [false, true] {
            let case = format!("POST {path} with CL+TE (TE first: {te_first})");
            let before = fake.seen().len();
            let mut conn = Conn::open(proxy.socket());
            conn.send(&chunked(path, te_first));
            let (head, _) = conn.response("POST");
            // RFC 9112 §6.1: a server MUST close the connection after such a request.
            let closed = next_request_is_refused(conn.stream_mut());
            let forwarded: Vec<Seen> = fake.seen()[before..]
                .iter()
                .filter(|s| s.request_line().starts_with("POST"))
                .cloned()
                .collect();
            report.push(format!(
                "{case}: {} {}; connection closed after it: {closed}; daemon saw {:?}",
                head.status,
                head.reason,
                forwarded.iter().map(Seen::framing).collect::<Vec<_>>()
            ));
            // hyper follows RFC 9112 §6.3 (Transfer-Encoding wins) and closes the connection
            // afterwards as §6.1 requires. What goes on is one framing only: the proxy re-frames
            // the create body it rewrites with a Content-Length, and hyper's client drops the
            // stale Content-Length of a streamed body.
            let want_framing = if path.ends_with("/create") {
                (Some(payload.len().to_string()), None)
            } else {
                (None, Some("chunked".to_owned()))
            };
            assert_eq!(head.status, 200, "{case}: accepted as chunked");
            assert!(
                closed,
                "{case}: the connection is closed after the response"
            );
            assert_eq!(forwarded.len(), 1, "{case}: forwarded once");
            assert_eq!(
                forwarded[0].framing(),
                want_framing,
                "{case}:\n{}",
                forwarded[0].head
            );
            assert_eq!(
                forwarded[0].body, payload,
                "{case}: the daemon got the chunked payload"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn content_length_with_chunked_create_on_the_real_daemon() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let name = scope.name("cl-te");
    let payload = json!({
        "Image": image, "Cmd": ["true"], "Env": ["WEAVE_CIDR=none"],
        "Labels": scope.labels(),
    })
    .to_string();
    let req = format!(
        "POST /containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{payload}\r\n0\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    let (head, body) = exchange(proxy.socket(), &req);
    let exists = Docker::daemon()
        .run(&[
            "container",
            "inspect",
            "--format",
            "{{.Config.Image}}",
            &name,
        ])
        .stdout;
    eprintln!(
        "CL+TE create through the proxy: {} {}; container: {:?}",
        head.status,
        String::from_utf8_lossy(&body).trim(),
        exists.trim()
    );
    // Transfer-Encoding wins (RFC 9112 §6.3): the container is exactly the one the whole
    // chunked body describes, not one cut short at the Content-Length.
    assert_eq!(head.status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        exists.trim(),
        image,
        "the container created from the chunked body"
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones() {
    let image = test_image();
    let scope = Scope::new();
    let mut proxy = Proxy::start_with(&target_daemon(), &["--shutdown-grace", "10"]);
    // The socket accepts before the proxy serves; one answer shows it serves.
    let (head, _) = exchange(
        proxy.socket(),
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    // busybox `sleep` as PID 1 ignores SIGTERM: `stop?t=3` takes three seconds, then SIGKILL.
    let id = Docker::daemon().run_detached(&scope, "stop", &[], &image, &["sleep", "300"]);
    let filters = encode_query(&json!({ "container": [id], "event": ["kill"] }).to_string());
    let mut events = Conn::open(&target_socket());
    events.request("GET", &format!("/events?filters={filters}"), &[], b"");
    assert_eq!(events.head().status, 200);

    let socket = proxy.socket().to_owned();
    let stop_path = format!("/containers/{id}/stop?t=3");
    let in_flight = std::thread::spawn(move || {
        let answer = Request::post(&stop_path)
            .patience(READ_PATIENCE)
            .send_unix(&socket);
        (answer, Instant::now())
    });
    // The daemon has sent the container its SIGTERM: the stop request is in flight.
    events.raw_until("\"kill\"");
    let signalled = Instant::now();
    proxy.signal(Signal::SIGTERM);
    // Everything is observed first and asserted after, so one failure does not hide the others.
    let refused = poll(Duration::from_secs(5), || {
        UnixStream::connect(proxy.socket())
            .err()
            .map(|err| (Instant::now(), err))
    });
    let (answer, finished) = in_flight.join().unwrap();
    let exited = poll(Duration::from_secs(15), || {
        has_exited(proxy.pid()).then_some(())
    });
    let exit = exited.map(|()| proxy.wait_exit(Duration::from_secs(1)));
    let left_behind = proxy.socket().exists();
    let status = answer.as_ref().ok().map(|reply| reply.status);
    eprintln!(
        "SIGTERM with `POST /containers/…/stop?t=3` in flight: it answered {status:?} {:?} after \
         the signal; new connections refused: {:?}; proxy exit: {exit:?}; socket file left \
         behind: {left_behind}",
        finished - signalled,
        refused
            .as_ref()
            .map(|(at, err)| (*at - signalled, err.to_string())),
    );
    assert_eq!(status, Some(204), "{answer:?}");
    let (refused_at, _) = refused.expect("new connections are refused after SIGTERM");
    assert!(
        refused_at < finished,
        "new connections were accepted until the request in flight had finished"
    );
    let exit = exit.expect("the proxy exits after the request in flight");
    assert!(exit.success(), "the proxy exited with {exit}");
    assert!(!left_behind, "{} is left behind", proxy.socket().display());
}

/// Whether a child process has exited (a zombie nobody has waited for yet counts).
fn has_exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn check_502_naming(proxy: &Proxy, socket: &Path) {
    let mut conn = Conn::open(proxy.socket());
    // Twice on one connection, then on a new one: the proxy keeps serving.
    for attempt in 0..3 {
        if attempt == 2 {
            conn = Conn::open(proxy.socket());
        }
        conn.send(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
        let (head, body) = conn.response("GET");
        assert_eq!(head.status, 502, "attempt {attempt}: {head:?}");
        assert_eq!(head.header("Content-Type"), Some("application/json"));
        let error: Value = serde_json::from_slice(&body).unwrap();
        let message = error["message"].as_str().expect("a message");
        eprintln!("attempt {attempt}: 502 {message}");
        assert!(
            message.contains(&socket.display().to_string()),
            "the message names {}: {message}",
            socket.display()
        );
        assert_eq!(error.as_object().map(|o| o.len()), Some(1), "{error}");
    }
}

/// The proxy's descriptor count once it stops changing (connections close asynchronously).
fn settled_fd_count(proxy: &Proxy) -> usize {
    let mut last = (proxy.fd_count(), 0);
    eventually("the fd count to settle", Duration::from_secs(10), || {
        let now = proxy.fd_count();
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
        (last.1 >= 10).then_some(now)
    })
}

async fn ping(socket: &Path) -> u16 {
    let mut conn = tokio::net::UnixStream::connect(socket).await.unwrap();
    conn.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    Head::parse(&answer).status
}

/// Opens one stream of the given kind through the proxy and returns it established.
async fn open_stream(
    socket: &Path,
    kind: usize,
    container: &str,
    build_path: &str,
) -> tokio::net::UnixStream {
    let mut conn = tokio::net::UnixStream::connect(socket).await.unwrap();
    let request = match kind {
        0 => "GET /events HTTP/1.1\r\nHost: docker\r\n\r\n".to_owned(),
        1 => format!(
            "GET /containers/{container}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n\r\n"
        ),
        2 => format!(
            "POST /containers/{container}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n\
             Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        ),
        _ => format!(
            "POST {build_path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        ),
    };
    conn.write_all(request.as_bytes()).await.unwrap();
    if kind == 3 {
        // Half of a context: a tar header announcing 4 KiB of Dockerfile, and 1 KiB of it.
        let mut part = tar_header("Dockerfile", 4096);
        part.extend_from_slice(&[b'#'; 1024]);
        conn.write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .await
            .unwrap();
        conn.write_all(&part).await.unwrap();
        conn.write_all(b"\r\n").await.unwrap();
        return conn;
    }
    let mut received = Vec::new();
    let want = if kind == 1 {
        b"ready\n".as_slice()
    } else {
        b"\r\n\r\n"
    };
    while !received.windows(want.len()).any(|w| w == want) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_PATIENCE, conn.read(&mut chunk))
            .await
            .expect("the stream answers")
            .unwrap();
        assert!(
            n > 0,
            "the stream ended: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
    let status = Head::parse(&received).status;
    assert_eq!(
        status,
        if kind == 2 { 101 } else { 200 },
        "{}",
        kinds_name(kind)
    );
    conn
}

fn kinds_name(kind: usize) -> &'static str {
    ["events", "logs", "attach", "build"][kind]
}

/// A ustar header for a regular file of `size` bytes.
fn tar_header(name: &str, size: usize) -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// Sends a malformed request (possibly too big for the peer to read) and returns the answer's
/// head, if any came before the peer closed.
fn send_malformed(socket: &Path, request: &[u8]) -> Option<Head> {
    let conn = UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(READ_PATIENCE)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let request = request.to_vec();
    // The peer may stop reading and close early: writing must not block the reading.
    let write = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut reader = conn;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
            Err(err) => panic!("reading the answer to a malformed request: {err}"),
        }
    }
    drop(reader);
    write.join().unwrap();
    (!answer.is_empty()).then(|| Head::parse(&answer))
}

fn describe(head: Option<&Head>) -> String {
    head.map_or_else(
        || "closed without an answer".to_owned(),
        |h| format!("{} {}", h.status, h.reason),
    )
}

/// After a response, whether the server refuses a further request on the same connection.
fn next_request_is_refused(conn: &mut UnixStream) -> bool {
    if conn
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return true;
    }
    let mut byte = [0u8; 1];
    !matches!(conn.read(&mut byte), Ok(1))
}

// ---------------------------------------------------------------------------------------------
// A fake daemon that records what reaches it.

/// One request as the daemon received it: the head verbatim and the de-chunked body.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn request_line(&self) -> String {
        self.head.lines().next().unwrap_or_default().to_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// `(Content-Length, Transfer-Encoding)` as received.
    fn framing(&self) -> (Option<String>, Option<String>) {
        (
            self.header("Content-Length"),
            self.header("Transfer-Encoding"),
        )
    }
}

/// What the fake daemon answers to everything; enough of `GET /version` for the proxy's start.
const FAKE_ANSWER: &str = r#"{"fake":true,"ApiVersion":"1.41"}"#;

/// A unix socket that answers every request with `200` [`FAKE_ANSWER`] and records it.
#[derive(Debug)]
struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
}

impl FakeDaemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake-docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (recorder, stopping, live) = (Arc::clone(&seen), Arc::clone(&stop), Arc::clone(&conns));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(clone) = conn.try_clone() {
                    live.lock().unwrap().push(clone);
                }
                let recorder = Arc::clone(&recorder);
                std::thread::spawn(move || serve_fake(conn, &recorder));
            }
        });
        Self {
            _dir: dir,
            path,
            seen,
            stop,
            conns,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag and lets go of the socket.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
        // A daemon that goes away takes its connections with it, pooled ones included.
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve_fake(mut conn: UnixStream, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut more = |conn: &mut UnixStream, buf: &mut Vec<u8>| match conn.read(&mut chunk) {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    };
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !more(&mut conn, &mut buf) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut request = Seen {
            head,
            body: Vec::new(),
        };
        let chunked = request
            .header("Transfer-Encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    if !more(&mut conn, &mut buf) {
                        return;
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                    return;
                };
                while buf.len() < line_end + 2 + size + 2 {
                    if !more(&mut conn, &mut buf) {
                        return;
                    }
                }
                request
                    .body
                    .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = request.header("Content-Length") {
            let len: usize = len.parse().unwrap_or(0);
            while buf.len() < len {
                if !more(&mut conn, &mut buf) {
                    return;
                }
            }
            request.body = buf.drain(..len).collect();
        }
        seen.lock().unwrap().push(request);
        let body = FAKE_ANSWER;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
