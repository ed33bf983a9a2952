//! `dnsbench`: weaveDNS's answers for a registered name against the names it forwards upstream,
//! measured in the same run (run by `scripts/bench-dns.sh`).
//!
//! Two routers are started with the test harness (each with its own bridge and DNS address): the
//! one measured, and an upstream standing in for the host's resolver, answering for
//! `example.test.`. The measured router's `/etc/resolv.conf` is a file naming the upstream. Both
//! paths are timed alternately (ABBA), from one UDP socket per client, as a container's resolver
//! asks: latency with one query in flight, and queries per second with several clients at once.
//! Nothing here asserts on time.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;
use weave_tests::Weaver;

/// Sequential queries per path and round.
const QUERIES: usize = 2_000;
/// Rounds per path, alternated.
const ROUNDS: usize = 4;
/// Clients asking at once in the throughput test, and how long each round lasts.
const CLIENTS: usize = 16;
const LOAD_TIME: Duration = Duration::from_secs(2);
/// An answer that takes longer than this counts as lost.
const PATIENCE: Duration = Duration::from_secs(2);

const LOCAL_NAME: &str = "web.weave.local.";
const UPSTREAM_NAME: &str = "www.example.test.";

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run()) {
        Ok(report) => {
            print!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("dnsbench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<String> {
    let upstream = Weaver::builder()
        .dns()
        .arg("--dns-domain")
        .arg("example.test.")
        .log_level("warn")
        .start();
    let (status, body) =
        upstream.request("PUT", "/name/0bench0/192.0.2.80", "fqdn=www.example.test");
    ensure!(status == 204, "registering upstream: {status} {body}");
    let dir = tempfile::tempdir()?;
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!(
            "nameserver {}\n",
            upstream.dns_addr().context("upstream DNS")?
        ),
    )?;
    let weaver = Weaver::builder()
        .dns()
        .arg("--resolv-conf")
        .arg(resolv_conf.to_str().context("UTF-8 temp path")?)
        .log_level("warn")
        .start();
    let (status, body) = weaver.request("PUT", "/name/1bench1/10.32.0.80", "fqdn=web.weave.local");
    ensure!(status == 204, "registering: {status} {body}");
    let server: SocketAddr = format!("{}:53", weaver.dns_addr().context("DNS address")?).parse()?;

    // Both paths answer before anything is timed.
    for name in [LOCAL_NAME, UPSTREAM_NAME] {
        let socket = client(server).await?;
        let answer = ask(&socket, name, 0).await?;
        ensure!(
            answer.metadata.response_code == ResponseCode::NoError && !answer.answers.is_empty(),
            "{name}: {answer:?}"
        );
    }

    let mut latency = [Vec::new(), Vec::new()];
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // A B B A ...
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let name = [LOCAL_NAME, UPSTREAM_NAME][side];
            latency[side].extend(sequential(server, name).await?);
            rates[side].push(throughput(server, name).await?);
        }
    }

    let mut out = String::new();
    writeln!(
        out,
        "| query | p50 | p90 | p99 | queries/s ({CLIENTS} clients) |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    let labels = [
        "`web.weave.local` A, answered by weaveDNS",
        "`www.example.test` A, forwarded upstream",
    ];
    let mut medians = [0.0; 2];
    let mut qps = [0.0; 2];
    for side in 0..2 {
        let lat = &mut latency[side];
        lat.sort_by(f64::total_cmp);
        medians[side] = percentile(lat, 50.0);
        rates[side].sort_by(f64::total_cmp);
        qps[side] = percentile(&rates[side], 50.0);
        writeln!(
            out,
            "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} |",
            labels[side],
            medians[side],
            percentile(lat, 90.0),
            percentile(lat, 99.0),
            qps[side]
        )?;
    }
    writeln!(
        out,
        "\nForwarded vs local: p50 ×{:.2}, throughput ×{:.2} ({} sequential queries and {} rounds \
         of {:?} per path, alternated).",
        medians[1] / medians[0],
        qps[1] / qps[0],
        QUERIES * ROUNDS,
        ROUNDS,
        LOAD_TIME
    )?;
    Ok(out)
}

async fn client(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(server).await?;
    Ok(socket)
}

/// One A query for `name` with id `id`, and its answer.
async fn ask(socket: &UdpSocket, name: &str, id: u16) -> anyhow::Result<Message> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send(&query.to_vec()?).await?;
    let mut buf = [0u8; 1500];
    loop {
        let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
            .await
            .with_context(|| format!("no answer for {name} within {PATIENCE:?}"))??;
        let answer = Message::from_vec(&buf[..len])?;
        // A late answer to an earlier query is skipped.
        if answer.metadata.id == id {
            return Ok(answer);
        }
    }
}

/// Microseconds per query, one at a time.
async fn sequential(server: SocketAddr, name: &str) -> anyhow::Result<Vec<f64>> {
    let socket = client(server).await?;
    let mut times = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES {
        let started = Instant::now();
        let answer = ask(&socket, name, i as u16).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
        if answer.answers.is_empty() {
            bail!("{name}: no answer: {answer:?}");
        }
    }
    Ok(times)
}

/// Answers per second with [`CLIENTS`] clients asking back to back for [`LOAD_TIME`].
async fn throughput(server: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + LOAD_TIME;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let answered = Arc::clone(&answered);
        let name = name.to_owned();
        tasks.push(tokio::spawn(async move {
            let socket = client(server).await?;
            let mut id = 0u16;
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                ask(&socket, &name, id).await?;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    Ok(answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
