//! Redis Cluster and replica-agreement benchmark:
//! `cargo bench -p connect-cloud --bench cluster` (see docs/BENCHMARKS.md).
//!
//! Phases (`BENCH_PHASES`, comma list; default all):
//! - `one`: durable ingest through the in-process cloud on one `redis-server` primary, the
//!   load spread over `BENCH_CHANNELS` channels (default 12, one webhook each);
//! - `cluster`: the same on a three-primary Redis Cluster started by the test kit (channels
//!   hash to slots on different primaries); the ratio against `one` is printed;
//! - `auth`: the cost of connector authentication with read-through (#13 finding 7), on one
//!   primary: `GET /connect/status/{channel}` with the channel's token (a hit: no extra Redis
//!   read), with a wrong token (a miss: one extra Redis read before the 401), and the same
//!   miss on the embedded buffer (no read-through) for comparison.
//!
//! Every Redis node runs with `BENCH_REDIS_ARGS` (default `--appendonly yes --appendfsync
//! everysec`). Environment as in the ingest bench: `BENCH_SECONDS` (5), `BENCH_WARMUP_SECONDS`
//! (1), `BENCH_CONCURRENCY` (48), `BENCH_SERVER_THREADS` (number of CPUs).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use connect_testkit::in_process::TestCloud;
use connect_testkit::load::*;
use connect_testkit::{RedisCluster, RedisServer};

/// The same allocator as the shipped binary (cloud/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-token-0123456789";

fn channel(i: usize) -> String {
    format!("bench-{i}")
}

fn webhooks(channels: usize) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for i in 0..channels {
        m.insert(
            channel(i),
            serde_json::json!({
                "data_type": "json",
                "module": "webhook_connect",
                "module-config": {
                    "channel": channel(i),
                    "channel_token": TOKEN,
                    "max_queue_size": 10_000_000
                }
            }),
        );
    }
    serde_json::Value::Object(m)
}

/// Connection `i` posts to channel `i % channels`.
fn ingest(addr: SocketAddr, channels: usize, cfg: Config) -> LoadResult {
    let body = json_body(None, 0);
    let requests = (0..channels)
        .map(|i| {
            let path = format!("/webhook/{}", channel(i));
            (addr, Arc::new(post_request(addr, &path, &body)))
        })
        .collect();
    run_load_requests(requests, cfg, 200..=299)
}

fn status_load(addr: SocketAddr, channels: usize, token: &str, cfg: Config, ok: u16) -> LoadResult {
    let requests = (0..channels)
        .map(|i| {
            let path = format!("/connect/status/{}", channel(i));
            (addr, Arc::new(get_request(addr, &path, token)))
        })
        .collect();
    run_load_requests(requests, cfg, ok..=ok)
}

async fn received(cloud: &TestCloud, channels: usize) -> u64 {
    let mut n = 0;
    for i in 0..channels {
        n += cloud
            .state()
            .buffer()
            .stats(&channel(i))
            .await
            .unwrap()
            .counters
            .received;
    }
    n
}

fn main() {
    let cfg = Config {
        seconds: env_num("BENCH_SECONDS", 5.0),
        warmup: env_num("BENCH_WARMUP_SECONDS", 1.0),
        concurrency: env_num("BENCH_CONCURRENCY", 48),
        e2e_rate: 0,
        server_threads: env_num(
            "BENCH_SERVER_THREADS",
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
    };
    let channels: usize = env_num("BENCH_CHANNELS", 12);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.server_threads)
        .enable_all()
        .build()
        .unwrap();
    let redis_args = std::env::var("BENCH_REDIS_ARGS")
        .unwrap_or_else(|_| "--appendonly yes --appendfsync everysec".into());
    let args: Vec<&str> = redis_args.split_whitespace().collect();
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "one,cluster,auth".into());
    let want = |p: &str| phases.split(',').any(|x| x.trim() == p);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "cluster bench: {cpus} CPUs, {} server workers, c={}, {channels} channels, warm-up {} s, measured {} s, redis args: {redis_args}",
        cfg.server_threads, cfg.concurrency, cfg.warmup, cfg.seconds
    );

    let rps = |r: &LoadResult| r.ok as f64 / r.elapsed.as_secs_f64();
    let row = |name: &str, r: &LoadResult| {
        println!(
            "| {:<52} | {:>9.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>6} | {:>6} |",
            name,
            rps(r),
            pct(&r.lat, 0.50),
            pct(&r.lat, 0.99),
            pct(&r.lat, 1.0),
            r.non_2xx,
            r.errors
        );
    };
    let header = || {
        println!(
            "| {:<52} | {:>9} | {:>7} | {:>7} | {:>7} | {:>6} | {:>6} |",
            "scenario", "req/s", "p50 ms", "p99 ms", "max ms", "other", "errors"
        );
        println!(
            "|{:-<54}|{:->11}|{:->9}|{:->9}|{:->9}|{:->8}|{:->8}|",
            "", "", "", "", "", "", ""
        );
    };
    header();

    let one = want("one").then(|| {
        let server = rt.block_on(RedisServer::start_with(&args)).unwrap();
        let cloud = rt
            .block_on(
                TestCloud::builder(webhooks(channels))
                    .redis(&server.url, "bench")
                    .start(),
            )
            .unwrap();
        let r = ingest(cloud.addr, channels, cfg);
        let stored = rt.block_on(received(&cloud, channels));
        rt.block_on(cloud.stop());
        row("ingest, one redis primary", &r);
        println!(
            "  sanity: received {stored}, 2xx incl. warm-up {}",
            r.ok_total
        );
        r
    });
    let cluster = want("cluster").then(|| {
        let cluster = rt.block_on(RedisCluster::start_with(&args)).unwrap();
        let cloud = rt
            .block_on(
                TestCloud::builder(webhooks(channels))
                    .redis_cluster(cluster.seeds(), "bench")
                    .start(),
            )
            .unwrap();
        let r = ingest(cloud.addr, channels, cfg);
        let stored = rt.block_on(received(&cloud, channels));
        rt.block_on(cloud.stop());
        row("ingest, redis cluster of 3 primaries", &r);
        println!(
            "  sanity: received {stored}, 2xx incl. warm-up {}",
            r.ok_total
        );
        let mut per_node = Vec::new();
        for p in cluster.ports() {
            let keys = cluster.cli(p, &["DBSIZE"]).unwrap_or_default();
            per_node.push(format!("{p}: {keys} keys"));
        }
        println!("  keys per primary: {}", per_node.join(", "));
        r
    });
    if let (Some(a), Some(b)) = (&one, &cluster) {
        println!(
            "  cluster / one primary = {:.2}",
            rps(b) / rps(a).max(f64::MIN_POSITIVE)
        );
    }

    if want("auth") {
        let server = rt.block_on(RedisServer::start_with(&args)).unwrap();
        let cloud = rt
            .block_on(
                TestCloud::builder(webhooks(channels))
                    .redis(&server.url, "bench")
                    .start(),
            )
            .unwrap();
        let hit = status_load(cloud.addr, channels, TOKEN, cfg, 200);
        row("connect auth, valid token (redis; no extra read)", &hit);
        let miss = status_load(cloud.addr, channels, "wrong-token-0123456789", cfg, 401);
        row("connect auth, wrong token (redis; read-through)", &miss);
        rt.block_on(cloud.stop());
        let embedded = rt.block_on(TestCloud::start(webhooks(channels))).unwrap();
        let local = status_load(embedded.addr, channels, "wrong-token-0123456789", cfg, 401);
        row(
            "connect auth, wrong token (embedded; no read-through)",
            &local,
        );
        rt.block_on(embedded.stop());
    }
}
