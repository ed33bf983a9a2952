//! `bench`: weaveproxy against the Docker daemon it fronts, measured in the same run, reported as
//! ratios of medians in markdown tables (run by `scripts/bench.sh`, which writes BENCHMARKS.md).
//!
//! Every measurement alternates direct and proxied rounds (ABBA order), so drift in the machine's
//! load falls on both sides alike. Nothing here asserts on time: a missed target is reported, not
//! failed. The client is one current-thread tokio runtime speaking HTTP/1.1 with hyper over unix
//! sockets, so what is timed is the socket round trip and not a CLI's start-up.
//!
//! Usage: `bench [ping] [list] [streams] [load] [create]` (no argument runs every part) against the daemon
//! `WEAVE_TEST_DOCKER` names, with the `weaveproxy` beside this binary or `WEAVEPROXY_BIN`.
//!
//! The release profile aborts on panic, so nothing in here panics on a daemon's answer: errors
//! travel back to `main`, and the labelled containers are removed on the way out. `scripts/bench.sh`
//! also removes them by label and stops the proxy by pid if this process dies anyway.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use weave_tests::daemon::target_socket;
use weave_tests::{Scope, target_daemon, test_image};

/// Sequential `/_ping`s per side and connection mode.
const PINGS: usize = 2_000;
/// Containers that exist while `/containers/json` is timed.
const LISTED_CONTAINERS: usize = 50;
/// Sequential `/containers/json` requests per side.
const LISTS: usize = 400;
/// Size of every bulk stream.
const STREAM_BYTES: u64 = 256 * 1024 * 1024;
/// Timed runs of each bulk stream per side.
const STREAM_RUNS: usize = 5;
/// Concurrent clients in the load test, and requests each makes per round.
const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 3;
/// Timed rounds of the load test per side.
const LOAD_ROUNDS: usize = 4;

/// `POST /containers/create` per side, in rounds of [`CREATE_ROUND`].
const CREATES: usize = 200;
const CREATE_ROUND: usize = 25;

/// The label that `scripts/bench.sh` removes containers by if this process dies before cleaning up.
const RUN_LABEL_ENV: &str = "WEAVE_BENCH_RUN";
/// Where to write the proxy's pid, so `scripts/bench.sh` can stop it if this process dies.
const PIDFILE_ENV: &str = "WEAVE_BENCH_PIDFILE";

type Body = Full<Bytes>;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: no tokio runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(report) => {
            print!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<String> {
    let image = test_image();
    let scope = Scope::new();
    let daemon = Side::new("direct", target_socket());
    let version = daemon_version(&daemon).await?;
    eprintln!("bench: daemon {version} at {}", target_daemon());

    let router = FakeRouter::start().await?;
    let mut proxy = ProxyProcess::spawn(&target_daemon(), &router.addr)?;
    let via_proxy = Side::new("proxy", proxy.socket.clone());
    let sides = [daemon, via_proxy];
    let fixtures = Fixtures::new(&sides, &scope, &image);
    // The scope's drop removes the containers on every path out of here but an abort.
    let result = measure(&sides, &mut proxy, &fixtures, &scope, &router).await;
    if let Some(status) = proxy.exited() {
        eprintln!(
            "bench: weaveproxy exited early ({status}); its log:\n{}",
            proxy.log()
        );
    }
    drop(proxy);
    let mut report = result?;
    let _ = writeln!(
        report,
        "\n_Daemon: Docker {version} at `{}`._",
        target_daemon()
    );
    Ok(report)
}

async fn measure(
    sides: &[Side; 2],
    proxy: &mut ProxyProcess,
    fixtures: &Fixtures<'_>,
    scope: &Scope,
    router: &FakeRouter,
) -> anyhow::Result<String> {
    // `bench streams load` runs only those parts; no arguments runs everything.
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wants = |part: &str| chosen.is_empty() || chosen.iter().any(|c| c == part);
    let mut memory = vec![("idle, just started".to_owned(), proxy.rss_kib()?)];
    let mut out = String::new();

    if wants("ping") {
        eprintln!("bench: /_ping latency");
        out.push_str(&ping_latency(sides).await?);
    }

    let list_path = format!(
        "/containers/json?all=1&filters={}",
        percent_encode(&json!({ "label": [scope.label()] }).to_string())
    );
    if wants("create") {
        eprintln!("bench: /containers/create latency");
        out.push_str(&create_latency(fixtures, proxy.pid(), router).await?);
    }

    if wants("list") || wants("load") {
        eprintln!("bench: creating {LISTED_CONTAINERS} containers");
        fixtures.create_idle(LISTED_CONTAINERS).await?;
    }
    if wants("list") {
        eprintln!("bench: /containers/json latency");
        out.push_str(&list_latency(sides, &list_path, LISTED_CONTAINERS, proxy.pid()).await?);
    }

    if wants("streams") {
        eprintln!("bench: 256 MiB streams");
        let worker = fixtures.create_running().await?;
        exec_run(
            &sides[0],
            &worker,
            &[
                "dd",
                "if=/dev/zero",
                "of=/big",
                "bs=1048576",
                &format!("count={}", STREAM_BYTES / (1024 * 1024)),
            ],
        )
        .await
        .context("making the 256 MiB file")?;
        let watch = RssWatch::start(proxy.pid());
        let streams = bulk_streams(sides, &worker, proxy.pid()).await;
        memory.push(("peak during the 256 MiB streams".to_owned(), watch.stop()));
        out.push_str(&streams?);
    }

    if wants("load") {
        eprintln!("bench: {CLIENTS} concurrent clients");
        memory.push((
            format!("before the {CLIENTS}-client load"),
            proxy.rss_kib()?,
        ));
        let watch = RssWatch::start(proxy.pid());
        let load = concurrent_load(sides, &list_path, proxy.pid()).await;
        memory.push((
            format!("peak under {CLIENTS} concurrent clients"),
            watch.stop(),
        ));
        out.push_str(&load?);
    }
    memory.push(("idle, at the end".to_owned(), proxy.rss_kib()?));

    out.push_str("\n### 5. Proxy memory (VmRSS)\n\n| when | VmRSS |\n|---|---:|\n");
    for (when, kib) in memory {
        let _ = writeln!(out, "| {when} | {} |", mib(kib));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------- 1. ping ---

async fn ping_latency(sides: &[Side; 2]) -> anyhow::Result<String> {
    let mut out = format!(
        "\n### 1. `GET /_ping` latency ({PINGS} sequential requests per side)\n\n\
         | connection | direct p50 | proxy p50 | added at p50 | direct p99 | proxy p99 | added at p99 | target | result |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---|\n"
    );
    for reuse in [true, false] {
        // Warm both sides (the proxy's upstream pool, the daemon's goroutines) untimed.
        for side in sides {
            pings(side, 200, reuse).await?;
        }
        let mut samples = [Vec::with_capacity(PINGS), Vec::with_capacity(PINGS)];
        const ROUNDS: usize = 4;
        for round in 0..ROUNDS {
            for i in abba(round) {
                samples[i].extend(pings(&sides[i], PINGS / ROUNDS, reuse).await?);
            }
        }
        let [direct, proxied] = samples.map(Samples::new);
        let added50 = proxied.quantile(0.50) - direct.quantile(0.50);
        let added99 = proxied.quantile(0.99) - direct.quantile(0.99);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | < +100 µs at p50 | {} |",
            if reuse {
                "one keep-alive connection"
            } else {
                "new connection per request"
            },
            micros(direct.quantile(0.50)),
            micros(proxied.quantile(0.50)),
            signed_micros(added50),
            micros(direct.quantile(0.99)),
            micros(proxied.quantile(0.99)),
            signed_micros(added99),
            verdict(added50 < 100e-6),
        );
    }
    Ok(out)
}

/// `n` sequential pings, on one connection or a new one each; connection set-up is part of the
/// time in the second case, as it is for a CLI that dials per request.
async fn pings(side: &Side, n: usize, reuse: bool) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    let mut sender = if reuse {
        Some(side.connect().await?)
    } else {
        None
    };
    for _ in 0..n {
        if let Some(sender) = sender.as_mut() {
            sender.ready().await?;
            let started = Instant::now();
            ping_once(sender).await?;
            times.push(started.elapsed().as_secs_f64());
        } else {
            let started = Instant::now();
            let mut fresh = side.connect().await?;
            ping_once(&mut fresh).await?;
            times.push(started.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

async fn ping_once(sender: &mut SendRequest<Body>) -> anyhow::Result<()> {
    let response = sender.send_request(get("/_ping")).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(
        status == StatusCode::OK && body.as_ref() == b"OK",
        "/_ping answered {status} {body:?}"
    );
    Ok(())
}

// ------------------------------------------------------------------------------ 2. listing ---

async fn list_latency(
    sides: &[Side; 2],
    path: &str,
    listed: usize,
    proxy_pid: u32,
) -> anyhow::Result<String> {
    let mut wrapped = [0, 0];
    for (i, side) in sides.iter().enumerate() {
        let (_, listing) = lists(side, path, 20).await?;
        ensure!(
            listing.containers == listed,
            "{} listed {} containers, expected {listed}",
            side.name,
            listing.containers
        );
        wrapped[i] = listing.wrapped;
    }
    // Whether the expensive path was measured: the daemon shows `/w/w`, the proxy hides it.
    let rewritten = if wrapped == [listed, 0] {
        "created through the proxy; every answer parsed and rewritten by it"
    } else {
        "**not rewritten by the proxy** (no `/w/w` to hide), so only forwarded"
    };
    let mut samples = [Vec::with_capacity(LISTS), Vec::with_capacity(LISTS)];
    let mut body_bytes = 0;
    let mut proxy_cpu = 0.0;
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        for i in abba(round) {
            let cpu_before = cpu_seconds(proxy_pid);
            let (times, listing) = lists(&sides[i], path, LISTS / ROUNDS).await?;
            if i == 1 {
                proxy_cpu += cpu_seconds(proxy_pid) - cpu_before;
            }
            samples[i].extend(times);
            body_bytes = listing.bytes;
        }
    }
    let [direct, proxied] = samples.map(Samples::new);
    let ratio = proxied.quantile(0.5) / direct.quantile(0.5);
    Ok(format!(
        "\n### 2. `GET /containers/json?all=1` with {listed} containers \
         ({rewritten}; {LISTS} sequential requests per side, {} KiB answers)\n\n\
         | statistic | direct | via proxy | proxy / direct | target | result |\n\
         |---|---:|---:|---:|---|---|\n\
         | median | {} | {} | {ratio:.3} | ≤ 1.10 | {} |\n\
         | p90 | {} | {} | {:.3} | | |\n\
         | proxy CPU per request | | {} | | | |\n",
        body_bytes / 1024,
        millis(direct.quantile(0.5)),
        millis(proxied.quantile(0.5)),
        verdict(ratio <= 1.10),
        millis(direct.quantile(0.9)),
        millis(proxied.quantile(0.9)),
        proxied.quantile(0.9) / direct.quantile(0.9),
        micros(proxy_cpu / LISTS as f64),
    ))
}

/// What the last of a series of listings showed.
struct Listing {
    containers: usize,
    bytes: usize,
    /// Containers whose command shows the proxy's `/w/w` wrapper.
    wrapped: usize,
}

/// `n` sequential listings on one keep-alive connection: their times, and the last answer.
async fn lists(side: &Side, path: &str, n: usize) -> anyhow::Result<(Vec<f64>, Listing)> {
    let mut sender = side.connect().await?;
    let mut times = Vec::with_capacity(n);
    let mut last = Bytes::new();
    for _ in 0..n {
        sender.ready().await?;
        let started = Instant::now();
        let response = sender.send_request(get(path)).await?;
        let status = response.status();
        last = response.into_body().collect().await?.to_bytes();
        times.push(started.elapsed().as_secs_f64());
        ensure!(status == StatusCode::OK, "{path} answered {status}");
    }
    let containers =
        serde_json::from_slice::<Vec<Value>>(&last).context("/containers/json is a JSON array")?;
    let wrapped = containers
        .iter()
        .filter(|c| c["Command"].as_str().is_some_and(|c| c.starts_with("/w/w")))
        .count();
    let listing = Listing {
        containers: containers.len(),
        bytes: last.len(),
        wrapped,
    };
    Ok((times, listing))
}

// ------------------------------------------------------------------------------ 3. streams ---

async fn bulk_streams(sides: &[Side; 2], worker: &str, proxy_pid: u32) -> anyhow::Result<String> {
    let mut out = format!(
        "\n### 3. 256 MiB streams (median of {STREAM_RUNS} runs per side)\n\n\
         | stream | direct MiB/s | via proxy MiB/s | proxy / direct | target | result | proxy CPU per GiB |\n\
         |---|---:|---:|---:|---|---|---:|\n"
    );
    type Run = for<'a> fn(
        &'a Side,
        &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<f64>> + 'a>>;
    let kinds: [(&str, Run); 3] = [
        (
            "`GET /containers/{id}/archive` (tar of a 256 MiB file, daemon → client)",
            |side, id| Box::pin(archive(side, id)),
        ),
        (
            "exec `cat >/dev/null` stdin over the hijacked stream (client → container)",
            |side, id| Box::pin(exec_stdin(side, id)),
        ),
        (
            "exec `cat /big` stdout over the hijacked stream (container → client)",
            |side, id| Box::pin(exec_stdout(side, id)),
        ),
    ];
    for (what, run) in kinds {
        // One untimed run each, so page cache and the daemon's buffers are warm on both sides.
        for side in sides {
            run(side, worker)
                .await
                .with_context(|| format!("{what} via {}", side.name))?;
        }
        let mut rates = [Vec::new(), Vec::new()];
        let mut proxy_cpu = 0.0;
        for round in 0..STREAM_RUNS {
            for i in abba(round) {
                let cpu_before = cpu_seconds(proxy_pid);
                let seconds = run(&sides[i], worker)
                    .await
                    .with_context(|| format!("{what} via {}", sides[i].name))?;
                if i == 1 {
                    proxy_cpu += cpu_seconds(proxy_pid) - cpu_before;
                }
                rates[i].push(STREAM_BYTES as f64 / (1024.0 * 1024.0) / seconds);
            }
        }
        let gibs = (STREAM_RUNS as u64 * STREAM_BYTES) as f64 / (1u64 << 30) as f64;
        let [direct, proxied] = rates.map(Samples::new);
        let ratio = proxied.quantile(0.5) / direct.quantile(0.5);
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.0} | {ratio:.3} | ≥ 0.90 | {} | {:.2} s |",
            direct.quantile(0.5),
            proxied.quantile(0.5),
            verdict(ratio >= 0.90),
            proxy_cpu / gibs,
        );
    }
    Ok(out)
}

/// Seconds to receive the whole tar of `/big`, from sending the request to the last byte.
async fn archive(side: &Side, container: &str) -> anyhow::Result<f64> {
    let mut sender = side.connect().await?;
    let started = Instant::now();
    let response = sender
        .send_request(get(&format!("/containers/{container}/archive?path=/big")))
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "archive answered {}",
        response.status()
    );
    let received = drain(response).await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        received >= STREAM_BYTES,
        "archive stopped after {received} bytes"
    );
    Ok(seconds)
}

/// Seconds from the first byte written into an exec's stdin until the container reports that
/// `cat` saw end-of-file, i.e. until every byte was consumed inside the container.
async fn exec_stdin(side: &Side, container: &str) -> anyhow::Result<f64> {
    let (stream, _, _) = exec_start(
        side,
        container,
        &["sh", "-c", "cat >/dev/null; echo done"],
        true,
    )
    .await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let chunk = vec![0u8; 1024 * 1024];
    let started = Instant::now();
    let write = async {
        for _ in 0..STREAM_BYTES / chunk.len() as u64 {
            writer.write_all(&chunk).await?;
        }
        // Half-close: the container's stdin sees end-of-file, the stream stays open for "done".
        writer.shutdown().await?;
        anyhow::Ok(())
    };
    let read = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                bail!(
                    "stream closed before `done`: {:?}",
                    String::from_utf8_lossy(&seen)
                );
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == b"done") {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
    };
    let ((), seconds) = tokio::try_join!(write, read)?;
    Ok(seconds)
}

/// Seconds to read 256 MiB of an exec's stdout to end-of-stream, from the moment the stream is
/// handed over.
async fn exec_stdout(side: &Side, container: &str) -> anyhow::Result<f64> {
    let (mut stream, started, _) = exec_start(side, container, &["cat", "/big"], false).await?;
    let mut received = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    // The payload comes framed (an 8-byte header per chunk), so at least that much arrives.
    ensure!(
        received >= STREAM_BYTES,
        "stdout stopped after {received} bytes"
    );
    Ok(seconds)
}

/// Creates an exec and starts it attached (`Connection: Upgrade`), returning the hijacked stream
/// the moment the daemon's `101` arrived, and the exec's id.
async fn exec_start(
    side: &Side,
    container: &str,
    cmd: &[&str],
    stdin: bool,
) -> anyhow::Result<(TokioIo<Upgraded>, Instant, String)> {
    let mut sender = side.connect().await?;
    let (status, created) = send_json(
        &mut sender,
        post_json(
            &format!("/containers/{container}/exec"),
            &json!({
                "AttachStdin": stdin, "AttachStdout": true, "AttachStderr": true,
                "Tty": false, "Cmd": cmd,
            }),
        ),
    )
    .await?;
    ensure!(
        status == StatusCode::CREATED,
        "exec create answered {status}: {created}"
    );
    let id = created["Id"]
        .as_str()
        .context("exec create returned an Id")?
        .to_owned();
    let mut start = post_json(
        &format!("/exec/{id}/start"),
        &json!({ "Detach": false, "Tty": false }),
    );
    start
        .headers_mut()
        .insert(header::CONNECTION, "Upgrade".parse()?);
    start.headers_mut().insert(header::UPGRADE, "tcp".parse()?);
    sender.ready().await?;
    let response = sender.send_request(start).await?;
    ensure!(
        response.status() == StatusCode::SWITCHING_PROTOCOLS,
        "exec start answered {}",
        response.status()
    );
    let upgraded = hyper::upgrade::on(response).await?;
    Ok((TokioIo::new(upgraded), Instant::now(), id))
}

/// Runs `cmd` in `container` to completion and checks that it exited 0.
async fn exec_run(side: &Side, container: &str, cmd: &[&str]) -> anyhow::Result<()> {
    let (mut stream, _, id) = exec_start(side, container, cmd, false).await?;
    let mut output = Vec::new();
    stream.read_to_end(&mut output).await?;
    let mut sender = side.connect().await?;
    let (status, exec) = send_json(&mut sender, get(&format!("/exec/{id}/json"))).await?;
    ensure!(
        status == StatusCode::OK && exec["ExitCode"] == json!(0),
        "{cmd:?} ended with {status} {}: {}",
        exec["ExitCode"],
        String::from_utf8_lossy(&output)
    );
    Ok(())
}

// --------------------------------------------------------------------------------- 4. load ---

async fn concurrent_load(sides: &[Side; 2], path: &str, proxy_pid: u32) -> anyhow::Result<String> {
    // Untimed: let both sides grow their connection tables.
    for side in sides {
        load_round(side, path, 1).await?;
    }
    let mut rates = [Vec::new(), Vec::new()];
    let mut errors = [0usize, 0usize];
    let mut proxy_cpu = 0.0;
    for round in 0..LOAD_ROUNDS {
        for i in abba(round) {
            let cpu_before = cpu_seconds(proxy_pid);
            let (seconds, failed) = load_round(&sides[i], path, REQUESTS_PER_CLIENT).await?;
            if i == 1 {
                proxy_cpu += cpu_seconds(proxy_pid) - cpu_before;
            }
            errors[i] += failed;
            rates[i].push((CLIENTS * REQUESTS_PER_CLIENT) as f64 / seconds);
        }
    }
    let [direct, proxied] = rates.map(Samples::new);
    let ratio = proxied.quantile(0.5) / direct.quantile(0.5);
    Ok(format!(
        "\n### 4. {CLIENTS} concurrent clients, `GET /containers/json?all=1` \
         ({CLIENTS} connections × {REQUESTS_PER_CLIENT} requests, median of {LOAD_ROUNDS} rounds per side)\n\n\
         | measure | direct | via proxy | proxy / direct | target | result |\n\
         |---|---:|---:|---:|---|---|\n\
         | requests/s | {:.0} | {:.0} | {ratio:.3} | ≥ 0.90 | {} |\n\
         | failed requests | {} | {} | | 0 via proxy | {} |\n\
         | proxy CPU per request | | {} | | | |\n",
        direct.quantile(0.5),
        proxied.quantile(0.5),
        verdict(ratio >= 0.90),
        errors[0],
        errors[1],
        verdict(errors[1] == 0),
        micros(proxy_cpu / (LOAD_ROUNDS * CLIENTS * REQUESTS_PER_CLIENT) as f64),
    ))
}

/// One round: every client connects, then all start together and make `requests` requests each;
/// the time is from the start to the last answer. Returns the seconds and how many failed.
async fn load_round(side: &Side, path: &str, requests: usize) -> anyhow::Result<(f64, usize)> {
    let gate = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (side, gate, path) = (side.clone(), Arc::clone(&gate), path.to_owned());
        clients.spawn(async move {
            let sender = side.connect().await;
            gate.wait().await;
            let Ok(mut sender) = sender else {
                return requests;
            };
            let mut failed = 0;
            for _ in 0..requests {
                let ok = async {
                    sender.ready().await?;
                    let response = sender.send_request(get(&path)).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    anyhow::Ok(status == StatusCode::OK)
                };
                if !matches!(ok.await, Ok(true)) {
                    failed += 1;
                }
            }
            failed
        });
    }
    gate.wait().await;
    let started = Instant::now();
    let mut failed = 0;
    while let Some(joined) = clients.join_next().await {
        failed += joined.context("a load client task died")?;
    }
    Ok((started.elapsed().as_secs_f64(), failed))
}

// ------------------------------------------------------------------------------- 7. create ---

/// `POST /containers/create` of the test image on a new connection each (as the docker CLI
/// dials), direct and through the proxy in alternating rounds; every container is removed at
/// once, untimed, so the daemon holds the same number throughout. Through the proxy each create
/// is rewritten for weave: the image's config read, the router asked for weaveDNS.
async fn create_latency(
    fixtures: &Fixtures<'_>,
    proxy_pid: u32,
    router: &FakeRouter,
) -> anyhow::Result<String> {
    let mut samples = [Vec::with_capacity(CREATES), Vec::with_capacity(CREATES)];
    // Warm-up, untimed: the proxy's pools, the daemon's image and layer caches.
    for i in [0, 1] {
        create_round(fixtures, i, 5, &mut Vec::new()).await?;
    }
    let asked_before = router.asked.load(Ordering::Relaxed);
    let mut proxy_cpu = 0.0;
    for round in 0..CREATES / CREATE_ROUND {
        for i in abba(round) {
            let cpu_before = cpu_seconds(proxy_pid);
            create_round(fixtures, i, CREATE_ROUND, &mut samples[i]).await?;
            if i == 1 {
                proxy_cpu += cpu_seconds(proxy_pid) - cpu_before;
            }
        }
    }
    let asked = router.asked.load(Ordering::Relaxed) - asked_before;
    let [direct, proxied] = samples.map(Samples::new);
    let added50 = proxied.quantile(0.50) - direct.quantile(0.50);
    let added90 = proxied.quantile(0.90) - direct.quantile(0.90);
    Ok(format!(
        "\n### 7. `POST /containers/create` ({CREATES} per side, a new connection each, \
         through the proxy with a router answering weaveDNS settings)\n\n\
         | statistic | direct | via proxy | added | target | result |\n\
         |---|---:|---:|---:|---|---|\n\
         | p50 | {} | {} | {} | ≤ +2 ms | {} |\n\
         | p90 | {} | {} | {} | | |\n\
         | proxy CPU per create | | {} | | | |\n\
         | router requests per create | | {:.2} | | | |\n",
        millis(direct.quantile(0.5)),
        millis(proxied.quantile(0.5)),
        signed_micros(added50),
        verdict(added50 <= 2e-3),
        millis(direct.quantile(0.9)),
        millis(proxied.quantile(0.9)),
        signed_micros(added90),
        micros(proxy_cpu / CREATES as f64),
        asked as f64 / CREATES as f64,
    ))
}

async fn create_round(
    fixtures: &Fixtures<'_>,
    side: usize,
    n: usize,
    times: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let via = &fixtures.sides[side];
    for i in 0..n {
        let name = format!("create-{}-{i}", via.name);
        let started = Instant::now();
        let id = fixtures.create(via, &name, &["true"]).await?;
        times.push(started.elapsed().as_secs_f64());
        fixtures.remove(&id).await?;
    }
    Ok(())
}

/// A router's weaveDNS settings on a loopback port (`GET /domain`, `GET /dns-address`), all the
/// proxy asks of a router at a create: a real `weaver` would need a bridge of its own.
struct FakeRouter {
    addr: String,
    /// Requests answered so far.
    asked: Arc<AtomicU64>,
}

impl FakeRouter {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let asked = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let (status, body) = match request.uri().path() {
                        "/domain" => (StatusCode::OK, "weave.local.\n"),
                        "/dns-address" => (StatusCode::OK, "172.17.0.1\n"),
                        _ => (StatusCode::NOT_FOUND, "404 page not found\n"),
                    };
                    let response = Response::builder()
                        .status(status)
                        .body(Body::new(Bytes::from_static(body.as_bytes())));
                    async move { response }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { addr, asked })
    }
}

// ------------------------------------------------------------------------------- fixtures ---

/// Containers the benchmarks need, all with the scope's label.
struct Fixtures<'a> {
    sides: &'a [Side; 2],
    scope: &'a Scope,
    image: &'a str,
    labels: Value,
}

impl<'a> Fixtures<'a> {
    fn new(sides: &'a [Side; 2], scope: &'a Scope, image: &'a str) -> Self {
        let mut labels = serde_json::Map::new();
        let (key, value) = scope
            .label()
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unwrap_or_default();
        labels.insert(key, Value::String(value));
        if let Ok(run) = std::env::var(RUN_LABEL_ENV) {
            labels.insert("weave-bench".to_owned(), Value::String(run));
        }
        Self {
            sides,
            scope,
            image,
            labels: Value::Object(labels),
        }
    }

    async fn create(&self, via: &Side, name: &str, cmd: &[&str]) -> anyhow::Result<String> {
        let mut sender = via.connect().await?;
        let (status, created) = send_json(
            &mut sender,
            post_json(
                &format!("/containers/create?name={}", self.scope.name(name)),
                &json!({ "Image": self.image, "Cmd": cmd, "Labels": self.labels }),
            ),
        )
        .await?;
        ensure!(
            status == StatusCode::CREATED,
            "create {name} answered {status}: {created}"
        );
        Ok(created["Id"]
            .as_str()
            .context("create returned an Id")?
            .to_owned())
    }

    /// Removes a container, on the daemon directly.
    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        let mut sender = self.sides[0].connect().await?;
        let request = Request::delete(format!("/containers/{id}?force=1"))
            .header(header::HOST, "docker")
            .body(Body::default())?;
        let (status, body) = send_json(&mut sender, request).await?;
        ensure!(
            status == StatusCode::NO_CONTENT,
            "remove {id} answered {status}: {body}"
        );
        Ok(())
    }

    /// `n` created, never started containers, made through the proxy as a weave user's are:
    /// the proxy wraps their command in `/w/w`, so it has to parse and rewrite every listing
    /// that shows them, which is the expensive case for `GET /containers/json`.
    async fn create_idle(&self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            self.create(&self.sides[1], &format!("listed-{i}"), &["true"])
                .await?;
        }
        Ok(())
    }

    /// A running container to exec in and copy from, made on the daemon directly: through the
    /// proxy it would wait for a weave network interface that this machine does not have.
    async fn create_running(&self) -> anyhow::Result<String> {
        let daemon = &self.sides[0];
        let id = self.create(daemon, "worker", &["sleep", "3600"]).await?;
        let mut sender = daemon.connect().await?;
        let (status, body) = send_json(
            &mut sender,
            post_json(&format!("/containers/{id}/start"), &Value::Null),
        )
        .await?;
        ensure!(
            status == StatusCode::NO_CONTENT,
            "start answered {status}: {body}"
        );
        Ok(id)
    }
}

// -------------------------------------------------------------------------- proxy process ---

/// The release `weaveproxy`, started here rather than by the test harness so that it logs at
/// `warn` and not one debug line per request, which would be part of what is measured.
struct ProxyProcess {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl ProxyProcess {
    fn spawn(upstream: &str, router: &str) -> anyhow::Result<Self> {
        let binary = std::env::var_os("WEAVEPROXY_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                Some(exe.parent()?.join("weaveproxy"))
            })
            .context("cannot tell where weaveproxy is")?;
        ensure!(
            binary.exists(),
            "{} not built: run `cargo build --release --workspace` (or scripts/bench.sh)",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("weaveproxy-bench")
            .tempdir()?;
        let socket = dir.path().join("proxy.sock");
        let log = std::fs::File::create(dir.path().join("proxy.log"))?;
        // The weavewait builds beside this binary, as the proxy mounts them into the containers
        // it rewrites (none here: the fixtures are created on the daemon directly).
        let weavewait = dir.path().join("weavewait");
        weave_tests::proxy::weavewait_layout(&weavewait);
        let child = Command::new(&binary)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--weavewait-dir")
            .arg(&weavewait)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--docker-api", upstream, "--log-level", "warn"])
            .args(["--router-addr", router])
            .env_remove("RUST_LOG")
            .env_remove("WEAVEPROXY_LOG_LEVEL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        if let Some(pidfile) = std::env::var_os(PIDFILE_ENV) {
            std::fs::write(pidfile, child.id().to_string())?;
        }
        let mut proxy = Self { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&proxy.socket).is_err() {
            if let Some(status) = proxy.exited() {
                bail!("weaveproxy exited with {status}:\n{}", proxy.log());
            }
            ensure!(
                Instant::now() < deadline,
                "weaveproxy did not accept within 10 s:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} (pid {})", binary.display(), proxy.pid());
        Ok(proxy)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_of(self.pid()).context("the proxy's VmRSS is readable")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pidfile) = std::env::var_os(PIDFILE_ENV) {
            let _ = std::fs::remove_file(pidfile);
        }
    }
}

/// Samples a process's RSS every 2 ms on a thread of its own and keeps the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_of(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU time (user and system) a process has used so far, summed over its threads, from the
/// scheduler's nanosecond counters.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

// --------------------------------------------------------------------------------- client ---

/// One way to reach the daemon: its own socket, or the proxy's.
#[derive(Debug, Clone)]
struct Side {
    name: &'static str,
    socket: Arc<Path>,
}

impl Side {
    fn new(name: &'static str, socket: PathBuf) -> Self {
        Self {
            name,
            socket: socket.into(),
        }
    }

    /// A fresh HTTP/1.1 connection, able to be upgraded for attach and exec.
    async fn connect(&self) -> anyhow::Result<SendRequest<Body>> {
        let stream = UnixStream::connect(&*self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "docker")
        .body(Body::default())
        .expect("a GET with a valid path is a valid request")
}

fn post_json(path: &str, body: &Value) -> Request<Body> {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    Request::post(path)
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(body))
        .expect("a POST with a valid path is a valid request")
}

/// Sends a request and parses the answer as JSON (`null` when it is empty or not JSON).
async fn send_json(
    sender: &mut SendRequest<Body>,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, Value)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Reads a response body to its end without keeping it, returning its length.
async fn drain(response: Response<Incoming>) -> anyhow::Result<u64> {
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len() as u64;
        }
    }
    Ok(received)
}

async fn daemon_version(side: &Side) -> anyhow::Result<String> {
    let mut sender = side.connect().await?;
    let (status, version) = send_json(&mut sender, get("/version")).await?;
    ensure!(status == StatusCode::OK, "/version answered {status}");
    Ok(format!(
        "{} (API {})",
        version["Version"].as_str().unwrap_or("?"),
        version["ApiVersion"].as_str().unwrap_or("?")
    ))
}

fn percent_encode(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

// ---------------------------------------------------------------------------------- stats ---

/// Sorted samples.
struct Samples(Vec<f64>);

impl Samples {
    fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self(values)
    }

    /// Nearest-rank quantile (`q` in 0..=1).
    fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

/// Which side goes first in round `round`: direct–proxy, then proxy–direct, and so on.
fn abba(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn micros(seconds: f64) -> String {
    format!("{:.0} µs", seconds * 1e6)
}

fn signed_micros(seconds: f64) -> String {
    format!("{:+.0} µs", seconds * 1e6)
}

fn millis(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
