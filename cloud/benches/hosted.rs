//! Self-service bench: `cargo bench -p connect-cloud --bench hosted` (docs/BENCHMARKS.md).
//!
//! One in-process cloud on the embedded store with a configured channel and an account's
//! self-service channel, measured in the same run:
//! 1. durable ingest into the configured channel (`/webhook/bench`, `blob`);
//! 2. durable ingest into the self-service channel (`/webhook/wh_…`: the store lookup of the
//!    webhook and its account, the compiled definition, the account's rate limit);
//!    (1 and 2 alternate, two rounds);
//! 3. `GET /api/v1/channels` of an account with 100 channels, one request at a time.
//!
//! Environment: `BENCH_SECONDS` (per phase, default 5), `BENCH_WARMUP_SECONDS` (default 1),
//! `BENCH_CONCURRENCY` (ingest connections, default 50), `BENCH_SERVER_THREADS`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use connect_protocol::hosted::{CreateChannelRequest, QuotaPatch, SelfServiceMode};
use connect_testkit::in_process::TestCloud;
use connect_testkit::load::*;

const CHANNEL: &str = "bench";
const TOKEN: &str = "bench-token-0123456789";
const CHANNELS: usize = 100;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn webhooks() -> serde_json::Value {
    serde_json::json!({
        CHANNEL: {
            // Stored as received, like a self-service webhook: the two differ only in how the
            // webhook is found.
            "data_type": "blob",
            "module": "webhook_connect",
            "module-config": {
                "channel": CHANNEL,
                "channel_token": TOKEN,
                "max_queue_size": 10_000_000
            }
        }
    })
}

fn line(name: &str, r: &LoadResult) {
    let mut lat = r.lat.clone();
    lat.sort_unstable();
    println!(
        "{name:<28} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (non-2xx {}, errors {})",
        r.ok as f64 / r.elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        r.non_2xx,
        r.errors
    );
}

fn main() {
    EPOCH.get_or_init(Instant::now);
    let cfg = Config {
        seconds: env_num("BENCH_SECONDS", 5.0),
        warmup: env_num("BENCH_WARMUP_SECONDS", 1.0),
        concurrency: env_num("BENCH_CONCURRENCY", 50),
        e2e_rate: 0,
        server_threads: env_num(
            "BENCH_SERVER_THREADS",
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.server_threads)
        .enable_all()
        .build()
        .unwrap();
    let cloud = server_rt.block_on(async {
        TestCloud::builder(webhooks())
            .self_service(SelfServiceMode::Keys)
            .start()
            .await
            .unwrap()
    });
    let hosted = cloud.state().hosted().clone();
    let (key, wh) = server_rt.block_on(async {
        let quota = QuotaPatch {
            max_channels: Some(CHANNELS as u64),
            max_queue_size: Some(10_000_000),
            ingress_per_second: Some(1_000_000),
            ..QuotaPatch::default()
        };
        let created = hosted.create_account("bench", Some(&quota)).await.unwrap();
        let a = hosted
            .authenticate_key(Some(&created.api_key))
            .await
            .unwrap();
        let mut first = None;
        for i in 0..CHANNELS {
            let req = CreateChannelRequest {
                name: format!("c{i}"),
                ..CreateChannelRequest::default()
            };
            let c = hosted.create_channel(&a, &req).await.unwrap();
            first.get_or_insert(c.webhook_id);
        }
        (created.api_key, first.unwrap())
    });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "hosted bench: {cpus} CPUs, {} server threads, {} connections, {} B JSON body, warm-up {} s, measured {} s",
        cfg.server_threads,
        cfg.concurrency,
        json_body(None, 0).len(),
        cfg.warmup,
        cfg.seconds
    );
    // Alternated, so that neither gets the warmer process or the fuller store.
    for round in 1..=2 {
        let configured = run_load(cloud.addr, &format!("/webhook/{CHANNEL}"), cfg);
        line(&format!("configured ingest, round {round}"), &configured);
        let self_service = run_load(cloud.addr, &format!("/webhook/{wh}"), cfg);
        line(
            &format!("self-service ingest, round {round}"),
            &self_service,
        );
    }
    let list = run_load_requests(
        vec![(
            cloud.addr,
            Arc::new(get_request(cloud.addr, "/api/v1/channels", &key)),
        )],
        Config {
            concurrency: 1,
            ..cfg
        },
        200..=200,
    );
    line(&format!("GET /api/v1/channels ({CHANNELS})"), &list);
    server_rt.block_on(cloud.stop());
}
