//! Many-channels bench (issue #14, Performance): what idle channels cost the cloud — time to
//! healthy, memory per channel and CPU while nothing happens.
//!
//! ```sh
//! cargo build --release -p connect-cloud --bins
//! cargo bench -p connect-cloud --bench channels
//! ```
//!
//! Self-service channels live in the buffer (HOSTED.md §3); configured channels go through
//! the same hub and buffer code once registered, so `N` configured channels in a
//! `webhooks.json` are the proxy measured here. Per count in `BENCH_CHANNEL_COUNTS`:
//! 1. a `webhooks.json` with `N` channels (10 per "account": `acc{i}-ch{j}`, each with its own
//!    token); a fresh release cloud binary on the embedded store (a child process);
//! 2. spawn → `GET /health` answering 200 (first start: every channel registered in an empty
//!    store); `VmRSS` once healthy and after `BENCH_SETTLE` seconds;
//! 3. idle CPU: `utime + stime` of `/proc/PID/stat` over `BENCH_IDLE_SECONDS`, as a share of
//!    one core;
//! 4. stop (SIGKILL, as a crash), start again on the same data directory: spawn → healthy on
//!    restart, `VmRSS` and idle CPU again;
//! 5. the same file with `WEBHOOK_CONNECT_ENABLED=false` (parsed and held, nothing
//!    registered): the configuration's share of the memory; the rest is the channel runtime
//!    (buffer and hub), which is what a self-service channel costs too.
//!
//! A baseline with one channel gives the fixed cost; per-channel figures are the difference
//! divided by `N`.
//!
//! Then self-service channels (the issue's case, HOSTED.md §3): a cloud with
//! `WEBHOOK_CONNECT_SELF_SERVICE=keys` and one configured channel; `N / 10` accounts made
//! through the admin API and ten channels each through `POST /api/v1/channels` with the
//! account's key (`BENCH_CONCURRENCY` requests in flight, default 32); `VmRSS` and idle CPU
//! once they exist, and again after a `kill -9` and a start on the same data directory (every
//! account and channel loaded from the store). Its baseline is the same cloud with none.
//!
//! Environment: `BENCH_CHANNEL_COUNTS` (default `10000,100000`), `BENCH_IDLE_SECONDS` (10),
//! `BENCH_SETTLE` (2), `BENCH_CLOUD_BIN` (default `target/release/webhook-connect-cloud`),
//! `BENCH_CLOUD_ENV` (extra `K=V,K=V` for the cloud), `BENCH_SELF_SERVICE` (`0` skips the
//! self-service runs), `BENCH_CONFIGURED` (`0` skips the configured runs).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connect_testkit::Cloud;
use connect_testkit::load::{cpu_seconds, env_num, vm_rss_kib};

use futures::StreamExt as _;

/// `n` configured channels, ten per "account" (`acc<i>-ch<j>`).
fn hooks(n: usize) -> serde_json::Value {
    let mut m = serde_json::Map::with_capacity(n);
    for i in 0..n {
        let (acc, ch) = (i / 10, i % 10);
        let name = format!("acc{acc}-ch{ch}");
        let def = serde_json::json!({
            "module": "webhook_connect",
            "module-config": {
                "channel": name,
                "channel_token": format!("channels-bench-token-{i:06}-0123456789"),
            }
        });
        m.insert(name, def);
    }
    serde_json::Value::Object(m)
}

/// The cloud binary through the test kit's harness, ready when `/health` answers 200 (the
/// configuration loaded and every channel registered).
fn start(rt: &tokio::runtime::Runtime, bin: &Path, n: usize, extra: &[(&str, &str)]) -> Cloud {
    start_with(rt, bin, n, extra, false)
}

fn start_with(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    n: usize,
    extra: &[(&str, &str)],
    self_service: bool,
) -> Cloud {
    let mut env: Vec<(String, String)> = vec![("WEBHOOK_CONNECT_LOG_LEVEL".into(), "warn".into())];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    for kv in std::env::var("BENCH_CLOUD_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').expect("BENCH_CLOUD_ENV: K=V,K=V");
        env.push((k.into(), v.into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut b = Cloud::builder(hooks(n))
        .binary(bin)
        .envs(&env)
        .ready_when_healthy(Duration::from_secs(300))
        .http_timeout(Duration::from_secs(120));
    if self_service {
        b = b.self_service("keys");
    }
    rt.block_on(b.start()).unwrap()
}

/// `n` self-service channels: `n / 10` accounts (`acc<i>`, default quota of ten channels)
/// through the admin API, then ten channels each (`c0`…`c9`) with the account's key.
async fn create_self_service(cloud: &Cloud, n: usize) {
    let in_flight: usize = env_num("BENCH_CONCURRENCY", 32.0) as usize;
    let t0 = Instant::now();
    let keys: Vec<String> = futures::stream::iter(0..n.div_ceil(10))
        .map(|i| async move {
            let name = format!("acc{i}");
            cloud
                .create_account(&name, serde_json::Value::Null)
                .await
                .unwrap()
                .1
        })
        .buffered(in_flight)
        .collect()
        .await;
    let accounts = t0.elapsed();
    let t1 = Instant::now();
    futures::stream::iter((0..n).map(|i| (i / 10, i % 10)))
        .for_each_concurrent(in_flight, |(a, c)| {
            let key = &keys[a];
            async move {
                let body = serde_json::json!({ "name": format!("c{c}") });
                cloud.create_channel(key, body).await.unwrap();
            }
        })
        .await;
    println!(
        "  created {} accounts in {:.1} s and {n} channels in {:.1} s ({in_flight} requests in flight)",
        keys.len(),
        accounts.as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
}

/// Self-service: a cloud with none (baseline), then with `n` channels made through the API,
/// then after a `kill -9` and a start on the same data.
fn run_self_service(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    n: usize,
    idle_s: f64,
    settle: f64,
) -> (Figures, Figures, Figures) {
    let mut cloud = start_with(rt, bin, 1, &[], true);
    let base = measure(&cloud, idle_s, settle);
    rt.block_on(create_self_service(&cloud, n));
    let made = measure(&cloud, idle_s, settle);
    rt.block_on(cloud.restart()).unwrap();
    let again = measure(&cloud, idle_s, settle);
    (base, made, again)
}

struct Figures {
    to_healthy: Duration,
    rss_kib: u64,
    idle_core: f64,
}

fn measure(cloud: &Cloud, idle_s: f64, settle: f64) -> Figures {
    let to_healthy = cloud.started_in;
    let pid = cloud.pid();
    std::thread::sleep(Duration::from_secs_f64(settle));
    let rss_kib = vm_rss_kib(pid).unwrap_or(0);
    let cpu0 = cpu_seconds(pid);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(idle_s));
    let idle_core = (cpu_seconds(pid) - cpu0) / w0.elapsed().as_secs_f64();
    Figures {
        to_healthy,
        rss_kib,
        idle_core,
    }
}

fn run(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    n: usize,
    idle_s: f64,
    settle: f64,
) -> (Figures, Figures) {
    let mut cloud = start(rt, bin, n, &[]);
    let first = measure(&cloud, idle_s, settle);
    rt.block_on(cloud.restart()).unwrap();
    let again = measure(&cloud, idle_s, settle);
    (first, again)
}

/// The same configuration with the relay disabled: the file is parsed and held, no channel
/// is registered. What this costs over the baseline is the configuration's share.
fn run_config_only(rt: &tokio::runtime::Runtime, bin: &Path, n: usize, settle: f64) -> Figures {
    let cloud = start(rt, bin, n, &[("WEBHOOK_CONNECT_ENABLED", "false")]);
    measure(&cloud, 1.0, settle)
}

fn main() {
    let bin: PathBuf = std::env::var("BENCH_CLOUD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("release/webhook-connect-cloud")
        });
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p connect-cloud --bins ({})",
        bin.display()
    );
    let idle_s: f64 = env_num("BENCH_IDLE_SECONDS", 10.0);
    let settle: f64 = env_num("BENCH_SETTLE", 2.0);
    let counts = std::env::var("BENCH_CHANNEL_COUNTS").unwrap_or_else(|_| "10000,100000".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts: Vec<usize> = counts
        .split(',')
        .map(|s| s.trim().parse::<usize>().unwrap())
        .collect();
    if std::env::var("BENCH_CONFIGURED").as_deref() != Ok("0") {
        configured(&rt, &bin, &counts, idle_s, settle);
    }
    if std::env::var("BENCH_SELF_SERVICE").as_deref() == Ok("0") {
        return;
    }
    for &n in &counts {
        let (base, made, again) = run_self_service(&rt, &bin, n, idle_s, settle);
        println!(
            "== {n} self-service channels ({} accounts, embedded store); baseline (none): VmRSS {:.1} MiB",
            n.div_ceil(10),
            base.rss_kib as f64 / 1024.0
        );
        for (what, f) in [("once created", &made), ("restart", &again)] {
            let per = f.rss_kib.saturating_sub(base.rss_kib) as f64 * 1024.0 / n as f64;
            // Once created, the process is the baseline's: its start time says nothing here.
            let started = if std::ptr::eq(f, &again) {
                format!("healthy in {:.2} s; ", f.to_healthy.as_secs_f64())
            } else {
                String::new()
            };
            println!(
                "  {what}: {started}VmRSS {:.1} MiB ({per:.0} B per channel over the baseline); idle {:.2} % of a core",
                f.rss_kib as f64 / 1024.0,
                f.idle_core * 100.0,
            );
        }
    }
}

fn configured(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    counts: &[usize],
    idle_s: f64,
    settle: f64,
) {
    let (rt, bin) = (rt, bin);
    let (base, _) = run(rt, bin, 1, idle_s, settle);
    println!(
        "== baseline, 1 channel: healthy in {:.2} s, VmRSS {:.1} MiB, idle {:.2} % of a core",
        base.to_healthy.as_secs_f64(),
        base.rss_kib as f64 / 1024.0,
        base.idle_core * 100.0
    );
    for &n in counts {
        let (first, again) = run(rt, bin, n, idle_s, settle);
        let config = run_config_only(rt, bin, n, settle);
        let config_per = config.rss_kib.saturating_sub(base.rss_kib) as f64 * 1024.0 / n as f64;
        println!("== {n} configured channels (embedded store)");
        println!(
            "  configuration only (relay disabled, nothing registered): VmRSS {:.1} MiB ({config_per:.0} B per entry over the baseline)",
            config.rss_kib as f64 / 1024.0
        );
        for (what, f) in [("first start", &first), ("restart", &again)] {
            let per = (f.rss_kib.saturating_sub(base.rss_kib)) as f64 * 1024.0 / n as f64;
            let runtime = f.rss_kib.saturating_sub(config.rss_kib) as f64 * 1024.0 / n as f64;
            println!(
                "  {what}: healthy in {:.2} s; VmRSS {:.1} MiB ({:.0} B per channel over the baseline, {runtime:.0} B of it the channel runtime beyond the configuration); idle {:.2} % of a core ({:.3} % per 1,000 channels over the baseline)",
                f.to_healthy.as_secs_f64(),
                f.rss_kib as f64 / 1024.0,
                per,
                f.idle_core * 100.0,
                (f.idle_core - base.idle_core) * 100.0 * 1000.0 / n as f64,
            );
        }
    }
}
