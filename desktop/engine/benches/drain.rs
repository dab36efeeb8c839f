//! Connector benchmark: `cargo bench -p connect-engine --bench drain`.
//!
//! Three measurements in one run (see docs/BENCHMARKS.md, "Connector"):
//! 1. drain: a backlog (default 100,000 messages of ~1 KiB JSON) is enqueued directly into the
//!    in-process cloud's embedded buffer, then the real engine (`Engine::start`, WebSocket) is
//!    started and the time until the local target counted every message and the channel's
//!    `acked` counter equals the backlog is measured, for each `max_in_flight` value;
//! 2. latency: at a paced rate (default 200/s), POST → cloud → connector → target latency
//!    through the real engine and through a minimal raw connector (tokio-tungstenite, one
//!    frame at a time, POST body, ACK), on fresh clouds;
//! 3. memory: the built `webhook-connect` CLI binary (release) is spawned against the
//!    in-process cloud; VmRSS is sampled every 100 ms while idle (connected, no traffic) and
//!    while it drains the backlog.
//!
//! Runtimes: the cloud runs on a multi-thread tokio runtime (`BENCH_SERVER_THREADS`, default
//! number of CPUs), the engine on its own multi-thread runtime (2 workers, like the CLI's
//! default on this machine), the target and the load generator on current_thread runtimes on
//! their own OS threads. Everything shares the same cores.
//!
//! Environment: `BENCH_BACKLOG` (default 100000), `BENCH_IN_FLIGHT` (comma list, default
//! `100,1000,5000`), `BENCH_CONCURRENCY` (connector max_concurrent_requests, default 100),
//! `BENCH_LAT_RATE` (default 200), `BENCH_LAT_SECONDS` (default 5), `BENCH_PHASES` (comma list
//! of `drain`, `latency`, `rss`; default all), `BENCH_CLI_BIN` (path of `webhook-connect`;
//! default `<target>/release/webhook-connect`), `BENCH_RSS_IN_FLIGHT` (the cloud's max_in_flight
//! for the memory phase, default 1000), `BENCH_SERVER_THREADS`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_cloud::AppState;
use connect_protocol::message::StoredMessage;
use connect_protocol::time::Timestamp;
use connect_testkit::in_process::TestCloud;
use connect_testkit::load::{
    self, EPOCH, TargetState, current_thread_runtime, env_num, json_body, now_ns, pct,
    raw_connector, spawn_cli, start_target, vm_rss_kib,
};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const CHANNEL: &str = "bench";
const TOKEN: &str = "bench-token-0123456789";

// ---------------------------------------------------------------------------------------
// Cloud.
// ---------------------------------------------------------------------------------------

async fn start_cloud(max_in_flight: u64) -> TestCloud {
    TestCloud::start(serde_json::json!({
        CHANNEL: {
            "data_type": "json",
            "module": "webhook_connect",
            "module-config": {
                "channel": CHANNEL,
                "channel_token": TOKEN,
                "max_queue_size": 10_000_000,
                "max_queue_bytes": 1u64 << 40,
                "max_in_flight": max_in_flight
            }
        }
    }))
    .await
    .unwrap()
}

async fn acked(st: &AppState) -> u64 {
    st.buffer().stats(CHANNEL).await.unwrap().counters.acked
}

/// Enqueues `n` messages directly into the buffer with `tasks` concurrent writers.
async fn enqueue_backlog(st: &AppState, n: u64, tasks: u64) -> Duration {
    let body = Arc::new(json_body(None, 0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let st = st.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let now = Timestamp::now();
                let msg = StoredMessage {
                    message_id: format!("bench-{i:012}"),
                    channel: CHANNEL.into(),
                    webhook_id: CHANNEL.into(),
                    namespace: None,
                    sequence: 0,
                    received_at: now,
                    expires_at: now.plus_seconds(86_400.0),
                    method: "POST".into(),
                    path: format!("/webhook/{CHANNEL}"),
                    query: String::new(),
                    raw_headers: Some(vec![("content-type".into(), "application/json".into())]),
                    body: Some(body.to_vec()),
                    payload: None,
                    masked_headers: None,
                    content_type: Some("application/json".into()),
                    is_json: true,
                };
                st.buffer().enqueue(msg).await.unwrap();
                i += tasks;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    t0.elapsed()
}

// ---------------------------------------------------------------------------------------
// Connector configuration (shared by the in-process engine and the CLI).
// ---------------------------------------------------------------------------------------

fn write_connector_config(dir: &Path, cloud: SocketAddr, target: SocketAddr, mcr: u64) -> PathBuf {
    load::write_connector_config(dir, cloud, CHANNEL, TOKEN, target, mcr)
}

fn engine_config(path: &Path) -> connect_engine::ConnectorConfig {
    connect_engine::config::load(&connect_engine::Sources {
        config_file: Some(path.to_owned()),
        ..Default::default()
    })
    .unwrap()
}

fn engine_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn wait_until(deadline: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------
// 1. Drain.
// ---------------------------------------------------------------------------------------

struct DrainResult {
    max_in_flight: u64,
    enqueue: Duration,
    connect: Duration,
    drain: Duration,
    delivered: u64,
    acked: u64,
    complete: bool,
}

fn run_drain(
    server_rt: &Runtime,
    target: (SocketAddr, &TargetState),
    backlog: u64,
    max_in_flight: u64,
    mcr: u64,
) -> DrainResult {
    let cloud = server_rt.block_on(start_cloud(max_in_flight));
    let enqueue = server_rt.block_on(enqueue_backlog(cloud.state(), backlog, 64));
    let dir = tempfile::tempdir().unwrap();
    let cfg = engine_config(&write_connector_config(
        dir.path(),
        cloud.addr,
        target.0,
        mcr,
    ));
    let base = target.1.received();
    let engine_rt = engine_runtime();
    let t0 = Instant::now();
    let handle = {
        let _g = engine_rt.enter();
        connect_engine::Engine::start(cfg).unwrap()
    };
    let mut connect = Duration::ZERO;
    let st = cloud.state().clone();
    let complete = server_rt.block_on(wait_until(Duration::from_secs(300), async || {
        if connect.is_zero()
            && handle
                .status()
                .iter()
                .any(|s| s.state == connect_engine::LinkState::Connected)
        {
            connect = t0.elapsed();
        }
        target.1.received() - base >= backlog && acked(&st).await >= backlog
    }));
    let drain = t0.elapsed();
    let delivered = target.1.received() - base;
    let acked = server_rt.block_on(acked(cloud.state()));
    engine_rt.block_on(handle.shutdown(Duration::from_secs(5)));
    drop(engine_rt);
    server_rt.block_on(cloud.stop());
    DrainResult {
        max_in_flight,
        enqueue,
        connect,
        drain,
        delivered,
        acked,
        complete,
    }
}

// ---------------------------------------------------------------------------------------
// 2. Latency: paced POSTs through the real engine or through a raw connector.
// ---------------------------------------------------------------------------------------

struct LatResult {
    sent: u64,
    delivered: u64,
    acked: u64,
    lat: Vec<u64>,
}

/// Paced sender on its own thread: `rate`/s for `seconds` (+1 s warm-up), 5 connections.
fn paced_send(cloud: SocketAddr, rate: u64, seconds: f64, warmup: f64) -> (u64, u64) {
    std::thread::scope(|s| {
        s.spawn(|| {
            current_thread_runtime().block_on(async move {
                let total = Duration::from_secs_f64(warmup + seconds);
                let measure_from = now_ns() + (warmup * 1e9) as u64;
                let path = format!("/webhook/{CHANNEL}");
                let paced = load::paced_send(cloud, &path, 5, rate, total, measure_from).await;
                (paced.sent, measure_from)
            })
        })
        .join()
        .unwrap()
    })
}

fn run_latency(
    server_rt: &Runtime,
    target: (SocketAddr, &TargetState),
    raw: bool,
    rate: u64,
    seconds: f64,
    mcr: u64,
) -> LatResult {
    let cloud = server_rt.block_on(start_cloud(1000));
    let base = target.1.received();
    target.1.lat.lock().unwrap().clear();
    let engine_rt = engine_runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut handle = None;
    if raw {
        let (tx, rx) = oneshot::channel();
        let (c, t) = (cloud.addr, target.0);
        engine_rt.spawn(raw_connector(c, CHANNEL, TOKEN, t, tx));
        let _ =
            engine_rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx).await });
    } else {
        let cfg = engine_config(&write_connector_config(
            dir.path(),
            cloud.addr,
            target.0,
            mcr,
        ));
        let h = {
            let _g = engine_rt.enter();
            connect_engine::Engine::start(cfg).unwrap()
        };
        server_rt.block_on(wait_until(Duration::from_secs(5), async || {
            h.status()
                .iter()
                .any(|s| s.state == connect_engine::LinkState::Connected)
        }));
        handle = Some(h);
    }
    let (sent, measure_from) = paced_send(cloud.addr, rate, seconds, 1.0);
    let st = cloud.state().clone();
    server_rt.block_on(wait_until(Duration::from_secs(10), async || {
        target.1.received() - base >= sent && acked(&st).await >= sent
    }));
    let delivered = target.1.received() - base;
    let acked = server_rt.block_on(acked(cloud.state()));
    if let Some(h) = handle {
        engine_rt.block_on(h.shutdown(Duration::from_secs(5)));
    }
    drop(engine_rt);
    server_rt.block_on(cloud.stop());
    let lat = target.1.latencies_since(measure_from);
    LatResult {
        sent,
        delivered,
        acked,
        lat,
    }
}

// ---------------------------------------------------------------------------------------
// 3. Resident memory of the CLI binary.
// ---------------------------------------------------------------------------------------

fn cli_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BENCH_CLI_BIN") {
        return Some(PathBuf::from(p));
    }
    // The bench runs as <target>/release/deps/drain-<hash>.
    let exe = std::env::current_exe().ok()?;
    let release = exe.parent()?.parent()?;
    let p = release.join("webhook-connect");
    p.exists().then_some(p)
}

fn stop_cli(mut child: std::process::Child) {
    // SIGTERM for a graceful stop, then wait.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct RssResult {
    idle: Vec<u64>,
    drain: Vec<u64>,
    drain_time: Duration,
    delivered: u64,
    complete: bool,
}

fn run_rss(
    server_rt: &Runtime,
    target: (SocketAddr, &TargetState),
    bin: &Path,
    backlog: u64,
    mcr: u64,
) -> RssResult {
    let cloud = server_rt.block_on(start_cloud(env_num("BENCH_RSS_IN_FLIGHT", 1000)));
    let dir = tempfile::tempdir().unwrap();
    let config = write_connector_config(dir.path(), cloud.addr, target.0, mcr);

    // Idle: connect, prove it with one message, then sample 5 s with no traffic.
    let base = target.1.received();
    let child = spawn_cli(bin, &config);
    server_rt.block_on(enqueue_backlog(cloud.state(), 1, 1));
    let ok = server_rt.block_on(wait_until(Duration::from_secs(15), async || {
        target.1.received() > base
    }));
    assert!(ok, "the CLI did not deliver the probe message");
    std::thread::sleep(Duration::from_millis(500));
    let mut idle = Vec::new();
    for _ in 0..50 {
        if let Some(r) = vm_rss_kib(child.id()) {
            idle.push(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_cli(child);

    // Drain: build the backlog while no connector is attached, then start a fresh CLI.
    server_rt.block_on(enqueue_backlog(cloud.state(), backlog, 64));
    let base = target.1.received();
    let acked0 = server_rt.block_on(acked(cloud.state()));
    let t0 = Instant::now();
    let child = spawn_cli(bin, &config);
    let mut drain = Vec::new();
    let end = t0 + Duration::from_secs(300);
    let mut complete = false;
    while Instant::now() < end {
        // Sampled once the CLI delivers (skips the fork/exec and start-up moments).
        if target.1.received() > base
            && let Some(r) = vm_rss_kib(child.id())
        {
            drain.push(r);
        }
        if target.1.received() - base >= backlog
            && server_rt.block_on(acked(cloud.state())) - acked0 >= backlog
        {
            complete = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let drain_time = t0.elapsed();
    let delivered = target.1.received() - base;
    stop_cli(child);
    server_rt.block_on(cloud.stop());
    RssResult {
        idle,
        drain,
        drain_time,
        delivered,
        complete,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------

fn main() {
    EPOCH.get_or_init(Instant::now);
    let backlog: u64 = env_num("BENCH_BACKLOG", 100_000);
    let mcr: u64 = env_num("BENCH_CONCURRENCY", 100);
    let lat_rate: u64 = env_num("BENCH_LAT_RATE", 200);
    let lat_seconds: f64 = env_num("BENCH_LAT_SECONDS", 5.0);
    let in_flight: Vec<u64> = std::env::var("BENCH_IN_FLIGHT")
        .unwrap_or_else(|_| "100,1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let server_threads: usize = env_num(
        "BENCH_SERVER_THREADS",
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "drain,latency,rss".into());
    let want = |p: &str| phases.split(',').any(|x| x.trim() == p);

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .enable_all()
        .build()
        .unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "drain bench: {cpus} CPUs; cloud: multi-thread runtime, {server_threads} workers; engine: multi-thread runtime, 2 workers; target: current_thread runtime on its own thread (same process, loopback)"
    );
    println!(
        "backlog {backlog} x {} B JSON, connector max_concurrent_requests {mcr}, protocol websocket",
        json_body(None, 0).len()
    );
    let (taddr, tstate) = start_target();
    let target = (taddr, &*tstate);

    let mut drains = Vec::new();
    if want("drain") {
        for &mif in &in_flight {
            let r = run_drain(&server_rt, target, backlog, mif, mcr);
            eprintln!(
                "drain max_in_flight={mif}: {:.0} msg/s",
                backlog as f64 / r.drain.as_secs_f64()
            );
            drains.push(r);
        }
    }
    let lats = want("latency").then(|| {
        let engine = run_latency(&server_rt, target, false, lat_rate, lat_seconds, mcr);
        let raw = run_latency(&server_rt, target, true, lat_rate, lat_seconds, mcr);
        (engine, raw)
    });
    let rss = if want("rss") {
        match cli_binary() {
            Some(bin) => Some(run_rss(&server_rt, target, &bin, backlog, mcr)),
            None => {
                println!(
                    "rss: webhook-connect not found next to the bench; run `cargo build --release -p connect-cli` (same CARGO_TARGET_DIR) first, or set BENCH_CLI_BIN"
                );
                None
            }
        }
    } else {
        None
    };

    println!();
    if !drains.is_empty() {
        println!("Drain of a {backlog}-message backlog over WebSocket (in-process engine)");
        println!(
            "| {:>13} | {:>12} | {:>10} | {:>9} | {:>11} | {:>9} | {:>9} |",
            "max_in_flight", "enqueue /s", "connect ms", "drain s", "msg/s", "delivered", "acked"
        );
        println!(
            "|{:->15}|{:->14}|{:->12}|{:->11}|{:->13}|{:->11}|{:->11}|",
            "", "", "", "", "", "", ""
        );
        for r in &drains {
            println!(
                "| {:>13} | {:>12.0} | {:>10.1} | {:>9.2} | {:>11.0} | {:>9} | {:>9} |{}",
                r.max_in_flight,
                backlog as f64 / r.enqueue.as_secs_f64(),
                r.connect.as_secs_f64() * 1e3,
                r.drain.as_secs_f64(),
                backlog as f64 / r.drain.as_secs_f64(),
                r.delivered,
                r.acked,
                if r.complete { "" } else { " INCOMPLETE" }
            );
        }
        println!(
            "(msg/s = backlog / time from Engine::start until the target counted all and acked = backlog; includes the connect)"
        );
        println!();
    }
    if let Some((engine, raw)) = &lats {
        println!(
            "Latency POST → cloud → connector → target at {lat_rate}/s ({lat_seconds} s measured after 1 s warm-up)"
        );
        println!(
            "| {:<38} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} | {:>9} | {:>7} |",
            "connector", "p50 ms", "p90 ms", "p99 ms", "max ms", "sent", "delivered", "acked"
        );
        println!(
            "|{:-<40}|{:->10}|{:->10}|{:->10}|{:->10}|{:->9}|{:->11}|{:->9}|",
            "", "", "", "", "", "", "", ""
        );
        for (name, r) in [
            ("connect-engine (Engine::start)", engine),
            ("raw tokio-tungstenite, 1 at a time", raw),
        ] {
            println!(
                "| {:<38} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} | {:>7} | {:>9} | {:>7} |",
                name,
                pct(&r.lat, 0.5),
                pct(&r.lat, 0.9),
                pct(&r.lat, 0.99),
                pct(&r.lat, 1.0),
                r.sent,
                r.delivered,
                r.acked
            );
        }
        println!(
            "engine - raw: p50 {:+.2} ms, p99 {:+.2} ms",
            pct(&engine.lat, 0.5) - pct(&raw.lat, 0.5),
            pct(&engine.lat, 0.99) - pct(&raw.lat, 0.99)
        );
        println!();
    }
    if let Some(r) = &rss {
        let stats = |v: &[u64]| {
            let mut s = v.to_vec();
            s.sort_unstable();
            (
                s.first().copied().unwrap_or(0),
                pct(&s, 0.5) * 1e6,
                s.last().copied().unwrap_or(0),
                s.len(),
            )
        };
        println!(
            "webhook-connect (release binary) VmRSS, sampled every 100 ms; cloud max_in_flight {}",
            env_num("BENCH_RSS_IN_FLIGHT", 1000u64)
        );
        println!(
            "| {:<38} | {:>8} | {:>8} | {:>8} | {:>7} |",
            "phase", "min MiB", "p50 MiB", "max MiB", "samples"
        );
        println!(
            "|{:-<40}|{:->10}|{:->10}|{:->10}|{:->9}|",
            "", "", "", "", ""
        );
        let (a, b, c, n) = stats(&r.idle);
        println!(
            "| {:<38} | {:>8.1} | {:>8.1} | {:>8.1} | {:>7} |",
            "idle (connected, no traffic, 5 s)",
            mib(a),
            mib(b as u64),
            mib(c),
            n
        );
        let (a, b, c, n) = stats(&r.drain);
        println!(
            "| {:<38} | {:>8.1} | {:>8.1} | {:>8.1} | {:>7} |",
            format!("draining {backlog} (after 1st delivery)"),
            mib(a),
            mib(b as u64),
            mib(c),
            n
        );
        println!(
            "CLI drain: {} delivered in {:.2} s from spawn = {:.0} msg/s{}",
            r.delivered,
            r.drain_time.as_secs_f64(),
            r.delivered as f64 / r.drain_time.as_secs_f64(),
            if r.complete { "" } else { " INCOMPLETE" }
        );
        println!();
    }
    println!("targets: drain >= 10000 msg/s; CLI idle VmRSS <= 15 MB");
}
