//! Ingest benchmark: `cargo bench -p connect-cloud --bench ingest`.
//!
//! Three measurements in one run (see docs/BENCHMARKS.md):
//! 1. a bare axum handler that reads the body and answers 200, storing nothing (baseline);
//! 2. durable ingest through the real cloud (embedded buffer, one `webhook_connect` webhook),
//!    each 2xx sent only after the write is durable;
//! 3. end-to-end latency at a paced 1,000 webhooks/s: POST → cloud → WebSocket connector →
//!    local target, with the connector ACKing every message;
//! 4. (`redis`) durable ingest through the cloud with the Redis buffer;
//! 5. (`redis2`) the same load spread over two replicas sharing one Redis;
//! 6. (`durable-drained`) durable ingest in the relay's steady state: a drainer leases and
//!    ACKs what is stored while the load runs, so drained segments are kept as spares and
//!    written over (recycled) as new ones. Segments of `BENCH_SEGMENT_BYTES` (default the
//!    store's, 64 MiB); the store is warmed under load (and the drainer) until a segment was
//!    started on the spare, then the window is measured on it. The run prints how many
//!    segments were started on the spare inside the window and how much of the active
//!    segment's earlier life lay ahead of the writes at its start and end (more than 0: the
//!    window's syncs overwrote). The drainer calls the buffer in-process (no WebSocket, no
//!    JSON): the least CPU a connector's leases and ACKs can cost the relay, on cores the
//!    load shares.
//!
//! The Redis phases start a `redis-server` (testkit, free port) with `BENCH_REDIS_ARGS`
//! (default `--appendonly yes --appendfsync everysec`), or use `BENCH_REDIS_URL` if set.
//!
//! Servers run on a multi-thread tokio runtime; the load generator (and, for 3, the
//! connector and the target) run on a separate current_thread runtime on its own OS thread.
//! Everything shares the same cores, so the figures are a lower bound for the server.
//!
//! Environment: `BENCH_SECONDS` (measured duration per phase, default 5),
//! `BENCH_WARMUP_SECONDS` (default 1), `BENCH_CONCURRENCY` (default 50),
//! `BENCH_E2E_RATE` (default 1000), `BENCH_SERVER_THREADS` (default: number of CPUs),
//! `BENCH_SYNCS_IN_FLIGHT` (the durable phase's pipeline depth; default the store's),
//! `BENCH_PHASES` (comma list of `bare`, `durable`, `durable1` (durable with one sync in
//! flight, the plain group commit), `durable-drained`, `e2e`, `redis`, `redis2`; default
//! `bare,durable,e2e`), `BENCH_BODY_BYTES` (the JSON body of the bare and durable phases,
//! default 1024), `BENCH_LOAD` (`wrk` runs the bare and durable phases a second time with
//! `wrk -t1 -c<concurrency>`, the issue's own measure, in this process's same run; wrk is
//! then a child process, the servers stay in this one).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use connect_buffer::Buffer;
use connect_buffer::embedded::EmbeddedOptions;
use connect_testkit::in_process::TestCloud;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "bench";
const TOKEN: &str = "bench-token-0123456789";

/// The same allocator as the shipped binary (cloud/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use connect_testkit::load::*;

// ---------------------------------------------------------------------------------------
// Servers.
// ---------------------------------------------------------------------------------------

async fn bare_handler(body: Bytes) -> impl IntoResponse {
    let _ = body.len();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"200 OK"}"#,
    )
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

async fn start_bare() -> Running {
    let app = Router::new().route("/webhook/{id}", post(bare_handler));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running { addr, stop, done }
}

fn webhooks() -> serde_json::Value {
    serde_json::json!({
        CHANNEL: {
            "data_type": "json",
            "module": "webhook_connect",
            "module-config": {
                "channel": CHANNEL,
                "channel_token": TOKEN,
                "max_queue_size": 10_000_000
            }
        }
    })
}

async fn start_cloud() -> TestCloud {
    TestCloud::start(webhooks()).await.unwrap()
}

/// A cloud whose embedded buffer runs with `options` (syncs in flight, segment size).
async fn start_cloud_with(options: EmbeddedOptions) -> TestCloud {
    TestCloud::builder(webhooks())
        .embedded_options(options)
        .start()
        .await
        .unwrap()
}

/// A cloud on the Redis buffer at `url`.
async fn start_cloud_on_redis(url: &str) -> TestCloud {
    TestCloud::builder(webhooks())
        .redis(url, "bench")
        .start()
        .await
        .unwrap()
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), r.done).await;
}

// ---------------------------------------------------------------------------------------
// End to end: paced sender → cloud → WebSocket connector → target.
// ---------------------------------------------------------------------------------------

struct E2eResult {
    sent: u64,
    send_errors: u64,
    delivered: u64,
    rate: f64,
    /// End-to-end latencies (ns), sorted.
    lat: Vec<u64>,
    /// Ingress (POST → 2xx) latencies (ns), sorted.
    post_lat: Vec<u64>,
}

fn run_e2e(cloud: SocketAddr, cfg: Config) -> E2eResult {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(e2e(cloud, cfg))
        })
        .join()
        .unwrap()
    })
}

async fn e2e(cloud: SocketAddr, cfg: Config) -> E2eResult {
    // Target: records receive time minus the embedded send time.
    let target_state = Arc::new(TargetState::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(serve_target(listener, target_state.clone()));

    // Connector: WebSocket v2, forwards each webhook to the target, then ACKs.
    let (connected_tx, connected_rx) = oneshot::channel::<()>();
    let connector = tokio::spawn(async move {
        raw_connector(cloud, CHANNEL, TOKEN, target, connected_tx).await;
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), connected_rx).await;

    // Sender: 10 connections, each paced at rate/10 with staggered start.
    let total = Duration::from_secs_f64(cfg.warmup + cfg.seconds);
    let measure_from_ns = now_ns() + (cfg.warmup * 1e9) as u64;
    let paced = paced_send(
        cloud,
        &format!("/webhook/{CHANNEL}"),
        10,
        cfg.e2e_rate,
        total,
        measure_from_ns,
    )
    .await;
    let (sent, send_errors, post_lat) = (paced.sent, paced.errors, paced.post_lat);
    let send_elapsed = paced.elapsed;
    // Let the tail drain.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while target_state.received() < sent && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    connector.abort();
    let delivered = target_state.received();
    // Only messages sent after the warm-up count towards latency.
    let lat = target_state.latencies_since(measure_from_ns);
    E2eResult {
        sent,
        send_errors,
        delivered,
        rate: sent as f64 / send_elapsed.as_secs_f64(),
        lat,
        post_lat,
    }
}

// ---------------------------------------------------------------------------------------
// Durable ingest drained as it comes: recycled segments.
// ---------------------------------------------------------------------------------------

/// Leases and ACKs what is stored until `stop`, as a connector keeping up would; how many.
async fn drain(buffer: Arc<dyn Buffer>, stop: CancellationToken) -> u64 {
    const CONNECTION: &str = "bench-drain";
    let mut acked = 0;
    while !stop.is_cancelled() {
        let leased = buffer
            .lease(CHANNEL, CONNECTION, 512)
            .await
            .unwrap_or_default();
        if leased.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for l in &leased {
            if buffer
                .ack(CHANNEL, &l.message.message_id, CONNECTION)
                .await
                .is_ok()
            {
                acked += 1;
            }
        }
    }
    acked
}

fn log_stats(cloud: &TestCloud) -> connect_buffer::LogStats {
    cloud.state().buffer().log_stats().unwrap_or_default()
}

/// What the log did during a measured window.
struct Window {
    /// Segments started on the spare.
    reused: u64,
    /// Bytes of the active segment's earlier life ahead of the writes, at start and end.
    ahead: (u64, u64),
}

impl Window {
    fn around<T>(cloud: &TestCloud, run: impl FnOnce() -> T) -> (T, Window) {
        let before = log_stats(cloud);
        let r = run();
        let after = log_stats(cloud);
        let w = Window {
            reused: after.recycled_segments - before.recycled_segments,
            ahead: (before.active_overwrite_ahead, after.active_overwrite_ahead),
        };
        (r, w)
    }

    /// Whether the window wrote over recycled segments: it started one on the spare, or it
    /// began and ended with an earlier life ahead of the writes (one recycled segment all
    /// along).
    fn line(&self) -> String {
        let overwrote = self.reused > 0 || (self.ahead.0 > 0 && self.ahead.1 > 0);
        format!(
            "segments started on the spare {}; earlier-life bytes ahead of the writes {} -> {} -> overwriting a recycled segment: {}",
            self.reused,
            self.ahead.0,
            self.ahead.1,
            if overwrote { "yes" } else { "NO" }
        )
    }
}

struct DrainedPhase {
    segment_bytes: u64,
    /// How long the load ran before a segment was started on the spare.
    warmed_in: Duration,
    load: LoadResult,
    window: Window,
    wrk: Option<(connect_testkit::wrk::WrkResult, Window)>,
    acked: u64,
    /// 2xx answers of every run (warm-up included) and what the channel counted.
    answered: u64,
    received: u64,
    ready_after: u64,
}

fn durable_drained(
    server_rt: &tokio::runtime::Runtime,
    cfg: Config,
    body: &[u8],
    with_wrk: bool,
) -> DrainedPhase {
    let segment_bytes = env_num(
        "BENCH_SEGMENT_BYTES",
        EmbeddedOptions::default().segment_bytes,
    );
    let cloud = server_rt.block_on(start_cloud_with(EmbeddedOptions {
        segment_bytes,
        ..EmbeddedOptions::default()
    }));
    let stop = CancellationToken::new();
    let drainer = server_rt.spawn(drain(cloud.state().buffer().clone(), stop.clone()));
    let path = format!("/webhook/{CHANNEL}");
    // Warm: the load (and the drainer) run until a drained segment was kept and written over.
    let started = Instant::now();
    let mut answered = 0;
    while log_stats(&cloud).recycled_segments == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no segment was started on the spare in 600 s of load: is the drainer keeping up?"
        );
        let warm = Config {
            seconds: cfg.warmup.max(1.0),
            warmup: 0.0,
            ..cfg
        };
        answered += run_load_body(&[cloud.addr], &path, warm, body).ok_total;
    }
    let warmed_in = started.elapsed();
    let measured = Config { warmup: 0.0, ..cfg };
    let (load, window) = Window::around(&cloud, || {
        run_load_body(&[cloud.addr], &path, measured, body)
    });
    answered += load.ok_total;
    let wrk = with_wrk.then(|| {
        use connect_testkit::wrk;
        assert!(
            wrk::available(),
            "BENCH_LOAD=wrk needs wrk (apt-get install wrk)"
        );
        let (r, w) = Window::around(&cloud, || {
            wrk::run(
                cloud.addr,
                &path,
                cfg.concurrency,
                Duration::from_secs_f64(cfg.seconds),
                body,
            )
            .expect("wrk run")
        });
        answered += r.ok();
        (r, w)
    });
    stop.cancel();
    let acked = server_rt.block_on(drainer).unwrap();
    let stats = server_rt
        .block_on(cloud.state().buffer().stats(CHANNEL))
        .unwrap();
    server_rt.block_on(cloud.stop());
    DrainedPhase {
        segment_bytes,
        warmed_in,
        load,
        window,
        wrk,
        acked,
        answered,
        received: stats.counters.received,
        ready_after: stats.ready,
    }
}

// ---------------------------------------------------------------------------------------

/// One phase under wrk: a warm-up run, then the measured run (each a fresh wrk process).
struct WrkPhase {
    warmup: connect_testkit::wrk::WrkResult,
    measured: connect_testkit::wrk::WrkResult,
}

fn wrk_phase(addr: SocketAddr, path: &str, cfg: Config, body: &[u8]) -> WrkPhase {
    use connect_testkit::wrk;
    assert!(
        wrk::available(),
        "BENCH_LOAD=wrk needs wrk (apt-get install wrk)"
    );
    let run = |secs: f64| {
        wrk::run(
            addr,
            path,
            cfg.concurrency,
            Duration::from_secs_f64(secs),
            body,
        )
        .expect("wrk run")
    };
    let warmup = run(cfg.warmup.max(1.0));
    let measured = run(cfg.seconds);
    WrkPhase { warmup, measured }
}

fn wrk_row(name: &str, w: &WrkPhase, bare: Option<&WrkPhase>) {
    let m = &w.measured;
    let of_bare = bare.map_or("100.0%".to_owned(), |b| {
        format!(
            "{:.1}%",
            100.0 * m.requests_per_sec / b.measured.requests_per_sec
        )
    });
    println!(
        "| {:<44} | {:>11.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8} |",
        name, m.requests_per_sec, m.p50_ms, m.p99_ms, m.max_ms, of_bare
    );
}

fn main() {
    EPOCH.get_or_init(Instant::now);
    let cfg = Config {
        seconds: env_num("BENCH_SECONDS", 5.0),
        warmup: env_num("BENCH_WARMUP_SECONDS", 1.0),
        concurrency: env_num("BENCH_CONCURRENCY", 50),
        e2e_rate: env_num("BENCH_E2E_RATE", 1000),
        server_threads: env_num(
            "BENCH_SERVER_THREADS",
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
    };
    // Quiet: only warnings reach stderr, as a production deployment at WARN would do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();

    let body = json_body_of(None, 0, env_num("BENCH_BODY_BYTES", BODY_TARGET_LEN));
    let with_wrk = std::env::var("BENCH_LOAD").is_ok_and(|v| v == "wrk");

    // As the shipped binary does (both phases share the process, so both run without).
    connect_cloud::hugepages::disable();

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.server_threads)
        .enable_all()
        .build()
        .unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "ingest bench: {cpus} CPUs; server: multi-thread tokio runtime, {} workers; load: current_thread runtime on its own OS thread (same process, loopback)",
        cfg.server_threads
    );
    println!(
        "closed loop: {} keep-alive HTTP/1.1 connections, {} B JSON body, warm-up {} s, measured {} s",
        cfg.concurrency,
        body.len(),
        cfg.warmup,
        cfg.seconds
    );

    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "bare,durable,e2e".into());
    let want = |p: &str| phases.split(',').any(|x| x.trim() == p);

    // 1. Bare handler.
    let bare_res = want("bare").then(|| {
        let bare = server_rt.block_on(start_bare());
        let r = run_load_body(&[bare.addr], "/webhook/bench", cfg, &body);
        let w = with_wrk.then(|| wrk_phase(bare.addr, "/webhook/bench", cfg, &body));
        server_rt.block_on(stop(bare));
        (r, w)
    });
    let (bare_res, bare_wrk) = match bare_res {
        Some((r, w)) => (Some(r), w),
        None => (None, None),
    };

    // 2. Durable ingest.
    let durable = want("durable").then(|| {
        let cloud = match std::env::var("BENCH_SYNCS_IN_FLIGHT") {
            Ok(n) => server_rt.block_on(start_cloud_with(EmbeddedOptions {
                syncs_in_flight: n.parse().expect("BENCH_SYNCS_IN_FLIGHT is a number"),
                ..EmbeddedOptions::default()
            })),
            Err(_) => server_rt.block_on(start_cloud()),
        };
        let path = format!("/webhook/{CHANNEL}");
        let r = run_load_body(&[cloud.addr], &path, cfg, &body);
        let w = with_wrk.then(|| wrk_phase(cloud.addr, &path, cfg, &body));
        let stats = server_rt
            .block_on(cloud.state().buffer().stats(CHANNEL))
            .unwrap();
        server_rt.block_on(cloud.stop());
        (r, stats, w)
    });
    let (durable, durable_wrk) = match durable {
        Some((r, stats, w)) => (Some((r, stats)), w),
        None => (None, None),
    };

    // 2b. Durable ingest with one sync at a time (the plain group commit), the baseline of
    //     the pipelined commit.
    let durable1 = want("durable1").then(|| {
        let cloud = server_rt.block_on(start_cloud_with(EmbeddedOptions {
            syncs_in_flight: 1,
            ..EmbeddedOptions::default()
        }));
        let r = run_load(cloud.addr, &format!("/webhook/{CHANNEL}"), cfg);
        server_rt.block_on(cloud.stop());
        r
    });

    // 2c. Durable ingest drained as it comes (the relay's steady state): recycled segments.
    let drained =
        want("durable-drained").then(|| durable_drained(&server_rt, cfg, &body, with_wrk));

    // 3. End to end at a paced rate, on a fresh cloud.
    let e2e_res = want("e2e").then(|| {
        let cloud = server_rt.block_on(start_cloud());
        let r = run_e2e(cloud.addr, cfg);
        let stats = server_rt
            .block_on(cloud.state().buffer().stats(CHANNEL))
            .unwrap();
        server_rt.block_on(cloud.stop());
        (r, stats)
    });

    // 4./5. The Redis buffer: one replica, then two sharing one Redis.
    let want_redis = want("redis") || want("redis2");
    let redis_args = std::env::var("BENCH_REDIS_ARGS")
        .unwrap_or_else(|_| "--appendonly yes --appendfsync everysec".into());
    let redis_server = (want_redis && std::env::var("BENCH_REDIS_URL").is_err()).then(|| {
        let args: Vec<&str> = redis_args.split_whitespace().collect();
        server_rt
            .block_on(connect_testkit::RedisServer::start_with(&args))
            .unwrap()
    });
    let redis_url = std::env::var("BENCH_REDIS_URL")
        .ok()
        .or_else(|| redis_server.as_ref().map(|r| r.url.clone()));
    let flush = |url: &str| {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    };
    let redis_one = (want("redis") && redis_url.is_some()).then(|| {
        let url = redis_url.clone().unwrap();
        flush(&url);
        let cloud = server_rt.block_on(start_cloud_on_redis(&url));
        let r = run_load(cloud.addr, &format!("/webhook/{CHANNEL}"), cfg);
        let stats = server_rt
            .block_on(cloud.state().buffer().stats(CHANNEL))
            .unwrap();
        server_rt.block_on(cloud.stop());
        (r, stats)
    });
    let redis_two = (want("redis2") && redis_url.is_some()).then(|| {
        let url = redis_url.clone().unwrap();
        flush(&url);
        let c1 = server_rt.block_on(start_cloud_on_redis(&url));
        let c2 = server_rt.block_on(start_cloud_on_redis(&url));
        let r = run_load_spread(&[c1.addr, c2.addr], &format!("/webhook/{CHANNEL}"), cfg);
        let stats = server_rt
            .block_on(c1.state().buffer().stats(CHANNEL))
            .unwrap();
        server_rt.block_on(c1.stop());
        server_rt.block_on(c2.stop());
        (r, stats)
    });

    let rps = |r: &LoadResult| r.ok as f64 / r.elapsed.as_secs_f64();
    println!();
    println!(
        "| {:<44} | {:>11} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "scenario", "req/s", "p50 ms", "p99 ms", "max ms", "of bare"
    );
    println!(
        "|{:-<46}|{:->13}|{:->10}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", "", ""
    );
    let row = |name: &str, rate: f64, lat: &[u64], frac: Option<f64>| {
        println!(
            "| {:<44} | {:>11} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8} |",
            name,
            if rate.is_nan() {
                String::new()
            } else {
                format!("{rate:.0}")
            },
            pct(lat, 0.50),
            pct(lat, 0.99),
            pct(lat, 1.0),
            frac.map_or("-".to_owned(), |f| format!("{:.1}%", f * 100.0))
        );
    };
    let bare_rps = bare_res.as_ref().map(rps);
    if let Some(r) = &bare_res {
        let name = format!("bare axum handler, c={}", cfg.concurrency);
        row(&name, rps(r), &r.lat, Some(1.0));
    }
    if let Some((r, _)) = &durable {
        let name = format!("durable ingest (embedded buffer), c={}", cfg.concurrency);
        row(&name, rps(r), &r.lat, bare_rps.map(|b| rps(r) / b));
    }
    if let Some(r) = &durable1 {
        let name = format!("durable, one sync at a time, c={}", cfg.concurrency);
        row(&name, rps(r), &r.lat, bare_rps.map(|b| rps(r) / b));
    }
    if let Some(d) = &drained {
        let name = format!("durable, drained as it comes, c={}", cfg.concurrency);
        let r = &d.load;
        row(&name, rps(r), &r.lat, bare_rps.map(|b| rps(r) / b));
    }
    if let Some((r, _)) = &redis_one {
        let name = format!("durable ingest (redis buffer), c={}", cfg.concurrency);
        row(&name, rps(r), &r.lat, bare_rps.map(|b| rps(r) / b));
    }
    if let Some((r, _)) = &redis_two {
        let name = format!("redis buffer, 2 replicas, c={}", cfg.concurrency);
        row(&name, rps(r), &r.lat, bare_rps.map(|b| rps(r) / b));
    }
    if let Some((r, _)) = &e2e_res {
        let name = format!("e2e POST→connector→target @ {}/s", cfg.e2e_rate);
        row(&name, r.rate, &r.lat, None);
        row(
            "  (ingress POST→2xx during e2e)",
            f64::NAN,
            &r.post_lat,
            None,
        );
    }
    if let Some(b) = &bare_wrk {
        let name = format!("wrk -t1 -c{}: bare axum handler", cfg.concurrency);
        wrk_row(&name, b, None);
    }
    if let Some(d) = &durable_wrk {
        let name = format!("wrk -t1 -c{}: durable ingest", cfg.concurrency);
        wrk_row(&name, d, bare_wrk.as_ref());
    }
    if let Some((w, _)) = drained.as_ref().and_then(|d| d.wrk.as_ref()) {
        let m = w;
        let of_bare = bare_wrk.as_ref().map_or("-".to_owned(), |b| {
            format!(
                "{:.1}%",
                100.0 * m.requests_per_sec / b.measured.requests_per_sec
            )
        });
        println!(
            "| {:<44} | {:>11.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8} |",
            format!("wrk -t1 -c{}: durable, drained", cfg.concurrency),
            m.requests_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            of_bare
        );
    }
    println!();
    println!(
        "targets: durable >= 15000 req/s at c=50 with p99 <= 10 ms; e2e p99 <= 25 ms at 1000/s"
    );
    for (name, r) in [
        ("bare", bare_res.as_ref()),
        ("durable", durable.as_ref().map(|d| &d.0)),
    ] {
        if let Some(r) = r {
            println!(
                "{name}: measured 2xx {}, non-2xx {}, connection errors {}",
                r.ok, r.non_2xx, r.errors
            );
        }
    }
    if let Some((r, _)) = &durable {
        println!(
            "durable 2xx per second of the measured window: {:?}",
            r.per_second
        );
    }
    for (name, w) in [("wrk bare", &bare_wrk), ("wrk durable", &durable_wrk)] {
        if let Some(w) = w {
            println!(
                "{name}: requests {} (incl. warm-up run: {}), non-2xx {}, socket errors {}",
                w.measured.requests,
                w.measured.requests + w.warmup.requests,
                w.measured.non_2xx + w.warmup.non_2xx,
                w.measured.errors + w.warmup.errors
            );
        }
    }
    if let Some((r, stats)) = &durable {
        let via_wrk = durable_wrk
            .as_ref()
            .map_or(0, |w| w.measured.ok() + w.warmup.ok());
        let r = &LoadResult {
            ok_total: r.ok_total + via_wrk,
            ..Default::default()
        };
        // wrk does not count the requests still open when its time ends (at most one per
        // connection and run), though the cloud stored them.
        let uncounted = if durable_wrk.is_some() {
            2 * cfg.concurrency as u64
        } else {
            0
        };
        let check = if (r.ok_total..=r.ok_total + uncounted).contains(&stats.counters.received) {
            "OK"
        } else {
            "MISMATCH"
        };
        println!(
            "sanity: channel '{CHANNEL}' counters.received = {}, 2xx answers (incl. warm-up) = {} -> {check}; ready = {}",
            stats.counters.received, r.ok_total, stats.ready
        );
    }
    if let Some(d) = &drained {
        println!(
            "durable-drained: {} B segments; warmed {:.1} s under load until a segment was started on the spare",
            d.segment_bytes,
            d.warmed_in.as_secs_f64()
        );
        println!("durable-drained window: {}", d.window.line());
        if let Some((w, window)) = &d.wrk {
            println!(
                "durable-drained wrk: requests {}, non-2xx {}, socket errors {}; its window: {}",
                w.requests,
                w.non_2xx,
                w.errors,
                window.line()
            );
        }
        let check = if (d.answered..=d.answered + 2 * cfg.concurrency as u64).contains(&d.received)
        {
            "OK"
        } else {
            "MISMATCH"
        };
        println!(
            "durable-drained: 2xx (all runs) {}, counters.received {} -> {check}; drained (acked) {}, ready at the end {}",
            d.answered, d.received, d.acked, d.ready_after
        );
    }
    for (name, res) in [("redis", &redis_one), ("redis2", &redis_two)] {
        if let Some((r, stats)) = res {
            let check = if stats.counters.received == r.ok_total {
                "OK"
            } else {
                "MISMATCH"
            };
            println!(
                "{name}: measured 2xx {}, non-2xx {}, connection errors {}; counters.received = {}, 2xx incl. warm-up = {} -> {check}",
                r.ok, r.non_2xx, r.errors, stats.counters.received, r.ok_total
            );
        }
    }
    if redis_server.is_some() {
        println!("redis-server args: {redis_args}");
    }
    if let Some((r, stats)) = &e2e_res {
        println!(
            "e2e: sent (2xx) {}, send errors {}, delivered to target {}, channel acked {}, received {}",
            r.sent, r.send_errors, r.delivered, stats.counters.acked, stats.counters.received
        );
    }
}
