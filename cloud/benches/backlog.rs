//! Backlog bench: the release cloud binary as a child process holding a large backlog.
//!
//! ```sh
//! cargo build --release -p connect-cloud --bins
//! cargo bench -p connect-cloud --bench backlog
//! ```
//!
//! One run measures, against the same process and with the same load generator
//! (`connect_testkit::load`, closed loop, keep-alive HTTP/1.1):
//! 1. durable ingest on an empty queue (the baseline);
//! 2. filling the channel to `BENCH_BACKLOG` unsettled messages, with the bytes the process
//!    wrote to storage per message (`/proc/<pid>/io` `write_bytes`);
//! 3. durable ingest with that backlog, as a share of (1);
//! 4. RSS with the backlog;
//! 5. `kill -9`, restart on the same data: time until `/health` answers 200, RSS then, and
//!    that every message is still there;
//! 6. the restarted cloud drained through the real connector (the release `webhook-connect`
//!    CLI, a separate process, WebSocket) to a local target that answers 200: messages per
//!    second until the channel is empty, and the cloud's peak RSS over start-up and drain.
//!
//! Environment: `BENCH_BACKLOG` (default 1000000), `BENCH_BODY_BYTES` (default 1024),
//! `BENCH_SECONDS` (default 5), `BENCH_CONCURRENCY` (default 50), `BENCH_CLOUD_BIN`
//! (default `target/release/webhook-connect-cloud`), `BENCH_KEEP_DIR` (keep the data
//! directory there instead of a temporary one), `BENCH_ADDR` + `BENCH_PID` (measure a cloud
//! started elsewhere, e.g. in a container: phases 1–4, then 5 and 6 when `BENCH_RESTART` is a
//! shell command that restarts it on the same data and prints the new pid), `BENCH_CLI_BIN` (default
//! `webhook-connect` beside the cloud binary; phase 6 is skipped when it is missing),
//! `BENCH_DRAIN_IN_FLIGHT` (the channel's `max_in_flight` and the connector's concurrency,
//! default 1000).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connect_testkit::Cloud;
use connect_testkit::load::{
    Config, EPOCH, LoadResult, cpu_seconds, env_num, pct, proc_field, run_load_body, spawn_cli,
    start_target, write_connector_config,
};

const CHANNEL: &str = "backlog";
const TOKEN: &str = "backlog-bench-token-0123456789";
const ADMIN: &str = "backlog-bench-admin-token";

/// The cloud binary through the test kit's harness, on `dir` (kept), ready at `/health` 200.
fn spawn(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    dir: &Path,
    hooks: &serde_json::Value,
    body_bytes: usize,
) -> Cloud {
    let max_body = (body_bytes + 4096).max(10_485_760).to_string();
    rt.block_on(
        Cloud::builder(hooks.clone())
            .binary(bin)
            .keep_dir(dir)
            .ready_when_healthy(Duration::from_secs(300))
            .envs(&[
                ("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN),
                ("WEBHOOK_CONNECT_LOG_LEVEL", "warn"),
                ("WEBHOOK_CONNECT_MAX_BODY_BYTES", &max_body),
            ])
            .start(),
    )
    .unwrap()
}

fn addr_of(cloud: &Cloud) -> SocketAddr {
    format!("127.0.0.1:{}", cloud.port).parse().unwrap()
}

fn rss_mb(pid: u32) -> f64 {
    proc_field(pid, "status", "VmRSS").unwrap_or(0) as f64 / 1024.0
}

fn hwm_mb(pid: u32) -> f64 {
    proc_field(pid, "status", "VmHWM").unwrap_or(0) as f64 / 1024.0
}

fn written(pid: u32) -> u64 {
    proc_field(pid, "io", "write_bytes").unwrap_or(0)
}

/// A JSON body of `len` bytes: one padding string, or an array of 64 KiB strings for
/// bodies past the 1,048,576-character string limit.
fn json_body_of(len: usize) -> Vec<u8> {
    let head = r#"{"event":"bench.backlog","pad":["#;
    let mut s = head.to_owned();
    let mut left = len.saturating_sub(head.len() + 2);
    while left > 0 {
        if s.len() > head.len() {
            s.push(',');
            left = left.saturating_sub(1);
        }
        let n = left.saturating_sub(2).min(65_536);
        s.push('"');
        s.extend(std::iter::repeat_n('x', n));
        s.push('"');
        left = left.saturating_sub(n + 2);
    }
    s.push_str("]}");
    s.into_bytes()
}

async fn get(http: &reqwest::Client, url: String) -> Option<(u16, serde_json::Value)> {
    let r = http.get(url).bearer_auth(ADMIN).send().await.ok()?;
    let s = r.status().as_u16();
    Some((s, r.json().await.unwrap_or_default()))
}

/// Waits for `/health` 200; returns how long it took.
async fn wait_healthy(http: &reqwest::Client, addr: SocketAddr) -> Duration {
    let start = Instant::now();
    loop {
        if let Some((200, _)) = get(http, format!("http://{addr}/health")).await {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(300), "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stats(http: &reqwest::Client, addr: SocketAddr) -> serde_json::Value {
    let url = format!("http://{addr}/admin/webhook-connect/channels/{CHANNEL}/stats");
    get(http, url).await.unwrap().1
}

fn main() {
    EPOCH.get_or_init(Instant::now);
    let backlog: u64 = env_num("BENCH_BACKLOG", 1_000_000);
    let body_bytes: usize = env_num("BENCH_BODY_BYTES", 1024);
    let cfg = Config {
        seconds: env_num("BENCH_SECONDS", 5.0),
        warmup: 1.0,
        concurrency: env_num("BENCH_CONCURRENCY", 50),
        e2e_rate: 0,
        server_threads: 0,
    };
    let bin: PathBuf = std::env::var("BENCH_CLOUD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/webhook-connect-cloud")
        });
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p connect-cloud --bins ({})",
        bin.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("BENCH_KEEP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let hooks = serde_json::json!({
        CHANNEL: {
            "data_type": "json",
            "module": "webhook_connect",
            "module-config": {
                "channel": CHANNEL,
                "channel_token": TOKEN,
                "max_queue_size": 10_000_000,
                "max_in_flight": env_num("BENCH_DRAIN_IN_FLIGHT", 1000u64),
                "max_queue_bytes": 1u64 << 40,
                "ttl_seconds": 604_800
            }
        }
    });
    let body = json_body_of(body_bytes);
    let path = format!("/webhook/{CHANNEL}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    // `BENCH_ADDR` + `BENCH_PID`: a cloud started elsewhere (a container); only phases 1–4.
    if let (Ok(addr), Ok(pid)) = (std::env::var("BENCH_ADDR"), std::env::var("BENCH_PID")) {
        // The container reads this file from the directory mounted as its data volume.
        std::fs::write(
            dir.join("webhooks.json"),
            serde_json::to_vec(&hooks).unwrap(),
        )
        .unwrap();
        let addr: SocketAddr = addr.parse().unwrap();
        let pid: u32 = pid.parse().unwrap();
        rt.block_on(wait_healthy(&http, addr));
        let empty = run_load_body(&[addr], &path, cfg, &body);
        let io_before = written(pid);
        let mut received = 0;
        while received < backlog {
            run_load_body(
                &[addr],
                &path,
                Config {
                    seconds: 5.0,
                    warmup: 0.0,
                    ..cfg
                },
                &body,
            );
            received = rt.block_on(stats(&http, addr))["messages_received"]
                .as_u64()
                .unwrap_or(0);
        }
        let full = run_load_body(&[addr], &path, cfg, &body);
        let s = rt.block_on(stats(&http, addr));
        let rate = |r: &LoadResult| r.ok as f64 / r.elapsed.as_secs_f64();
        println!(
            "external cloud {addr} (pid {pid}): empty {:.0} req/s, with {} queued {:.0} req/s ({:.1} %), {:.0} B written per message, RSS {:.1} MB",
            rate(&empty),
            s["messages_queued"],
            rate(&full),
            rate(&full) / rate(&empty) * 100.0,
            (written(pid) - io_before) as f64 / received.max(1) as f64,
            rss_mb(pid)
        );
        // `BENCH_RESTART`: a shell command that kills the cloud, starts it again on the same
        // data and prints its new pid; then phases 5 and 6 as below.
        if let Ok(cmd) = std::env::var("BENCH_RESTART") {
            let depth = s["messages_queued"].as_u64().unwrap_or(0);
            let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
            assert!(out.status.success(), "BENCH_RESTART failed: {out:?}");
            let pid2: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            let healthy_after = rt.block_on(wait_healthy(&http, addr));
            let rss_restart = rss_mb(pid2);
            let depth2 = rt.block_on(stats(&http, addr))["messages_queued"]
                .as_u64()
                .unwrap_or(0);
            println!(
                "restart: /health 200 after {:.2} s, RSS {rss_restart:.1} MB (peak {:.1} MB), {depth2} queued (before: {depth})",
                healthy_after.as_secs_f64(),
                hwm_mb(pid2)
            );
            assert!(depth2 >= depth, "messages lost across the restart");
            if let Some(cli) = cli_binary(&bin) {
                let cpu = cpu_seconds(pid2);
                let d = drain(&rt, &http, &cli, &dir, addr, depth2);
                println!(
                    "drain: {} in {:.1} s = {:.0} msg/s; CPU per message: cloud {:.1} µs, connector {:.1} µs; cloud peak RSS {:.1} MB",
                    d.n,
                    d.secs,
                    d.n as f64 / d.secs,
                    (cpu_seconds(pid2) - cpu) / d.n as f64 * 1e6,
                    d.cli_cpu / d.n as f64 * 1e6,
                    hwm_mb(pid2)
                );
                assert_eq!(d.n, depth2, "the drain did not deliver every message");
            }
        }
        return;
    }
    let mut cloud = spawn(&rt, &bin, &dir, &hooks, body_bytes);
    let addr = addr_of(&cloud);
    let pid = cloud.pid();
    let rss_idle = rss_mb(pid);
    println!(
        "backlog bench: {} CPUs, cloud {} (pid {pid}), body {} B, c={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bin.display(),
        body.len(),
        cfg.concurrency
    );

    // 1. Empty queue (after a longer warm-up: a fresh process and a cold disk).
    let empty = run_load_body(&[addr], &path, Config { warmup: 3.0, ..cfg }, &body);
    let rate = |r: &LoadResult| r.ok as f64 / r.elapsed.as_secs_f64();

    // 2. Fill.
    let fill_start = Instant::now();
    let io_before = written(pid);
    let mut received = rt.block_on(stats(&http, addr))["messages_received"]
        .as_u64()
        .unwrap_or(0);
    let received_before = received;
    let fill_cfg = Config {
        seconds: 5.0,
        warmup: 0.0,
        ..cfg
    };
    while received < backlog {
        let left = backlog - received;
        let mut c = fill_cfg;
        if left < 20_000 {
            c.seconds = 1.0;
        }
        c.concurrency = c.concurrency.min(left as usize).max(1);
        run_load_body(&[addr], &path, c, &body);
        received = rt.block_on(stats(&http, addr))["messages_received"]
            .as_u64()
            .unwrap_or(0);
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let io_after = written(pid);
    let per_msg = (io_after - io_before) as f64 / (received - received_before) as f64;

    // 3. Ingest with the backlog; 4. RSS.
    let full = run_load_body(&[addr], &path, cfg, &body);
    let s = rt.block_on(stats(&http, addr));
    let depth = s["messages_queued"].as_u64().unwrap_or(0);
    let rss_full = rss_mb(pid);
    let hwm_full = hwm_mb(pid);
    // Holding the backlog, with no request in flight (transient request buffers given back).
    std::thread::sleep(Duration::from_secs(3));
    let rss_holding = rss_mb(pid);

    // 5. kill -9 and restart.
    rt.block_on(cloud.restart()).unwrap();
    let pid2 = cloud.pid();
    let healthy_after = cloud.started_in;
    let rss_restart = rss_mb(pid2);
    let s2 = rt.block_on(stats(&http, addr));
    let depth2 = s2["messages_queued"].as_u64().unwrap_or(0);
    let hwm_restart = hwm_mb(pid2);

    // 6. Drain through the real connector.
    let cloud_cpu = cpu_seconds(pid2);
    let drained = cli_binary(&bin).map(|cli| drain(&rt, &http, &cli, &dir, addr, depth2));
    let cloud_cpu = cpu_seconds(pid2) - cloud_cpu;
    let hwm_drain = hwm_mb(pid2);
    drop(cloud);

    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| RSS idle, empty store | {rss_idle:.1} MB |");
    println!(
        "| durable ingest, empty queue | {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms) |",
        rate(&empty),
        pct(&empty.lat, 0.5),
        pct(&empty.lat, 0.99)
    );
    println!(
        "| fill to {received} messages | {fill_secs:.1} s ({:.0} msg/s) |",
        (received - received_before) as f64 / fill_secs
    );
    println!(
        "| bytes written to storage per message | {per_msg:.0} B ({:.2} × the {} B body) |",
        per_msg / body.len() as f64,
        body.len()
    );
    println!(
        "| durable ingest with {depth} ready | {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms) = {:.1} % of empty |",
        rate(&full),
        pct(&full.lat, 0.5),
        pct(&full.lat, 0.99),
        rate(&full) / rate(&empty) * 100.0
    );
    println!("| RSS right after the load (peak) | {rss_full:.1} MB ({hwm_full:.1} MB) |");
    println!("| RSS holding the backlog, 3 s idle | {rss_holding:.1} MB |");
    println!(
        "| kill -9, restart: /health 200 after | {:.2} s |",
        healthy_after.as_secs_f64()
    );
    println!("| RSS after the restart (peak) | {rss_restart:.1} MB ({hwm_restart:.1} MB) |");
    println!("| ready after the restart | {depth2} (before: {depth}) |");
    match drained {
        Some(Drained { n, secs, cli_cpu }) => {
            println!(
                "| drain through `webhook-connect` (WebSocket) to a local target | {n} in {secs:.1} s = {:.0} msg/s |",
                n as f64 / secs
            );
            println!(
                "| CPU per drained message: cloud, connector | {:.1} µs, {:.1} µs |",
                cloud_cpu / n as f64 * 1e6,
                cli_cpu / n as f64 * 1e6
            );
            println!("| cloud peak RSS over restart and drain | {hwm_drain:.1} MB |");
        }
        None => println!("| drain | skipped: no webhook-connect binary (BENCH_CLI_BIN) |"),
    }
    println!(
        "non-2xx: empty {}, full {}; connection errors: empty {}, full {}",
        empty.non_2xx, full.non_2xx, empty.errors, full.errors
    );
    assert!(depth2 >= depth, "messages lost across the restart");
    if let Some(d) = drained {
        assert_eq!(d.n, depth2, "the drain did not deliver every message");
    }
}

struct Drained {
    n: u64,
    secs: f64,
    /// CPU seconds the connector used.
    cli_cpu: f64,
}

fn cli_binary(cloud_bin: &Path) -> Option<PathBuf> {
    let p = std::env::var("BENCH_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cloud_bin.with_file_name("webhook-connect"));
    p.exists().then_some(p)
}

/// Runs the connector CLI against the cloud until `expect` messages reached the target and
/// the channel is empty; returns what the target counted, the seconds it took and the
/// connector's CPU time.
fn drain(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    cli: &Path,
    dir: &Path,
    cloud: SocketAddr,
    expect: u64,
) -> Drained {
    let (target, count) = start_target();
    let in_flight: u64 = env_num("BENCH_DRAIN_IN_FLIGHT", 1000);
    let config = write_connector_config(dir, cloud, CHANNEL, TOKEN, target, in_flight);
    let start = Instant::now();
    let mut child = spawn_cli(cli, &config);
    let done = rt.block_on(async {
        loop {
            if count.received() >= expect {
                let s = stats(http, cloud).await;
                if s["messages_queued"].as_u64() == Some(0) {
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "drain stuck at {} of {expect}",
                count.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let cli_cpu = cpu_seconds(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Drained {
        n: count.received(),
        secs: done.as_secs_f64(),
        cli_cpu,
    }
}
