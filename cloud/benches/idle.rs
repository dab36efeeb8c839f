//! Idle-connector bench (issue #13, finding 6): what an idle WebSocket or SSE connector costs
//! the cloud, with heartbeats flowing, and whether ingest notices them.
//!
//! ```sh
//! cargo build --release -p connect-cloud --bins
//! ulimit -n 20000   # this process holds every connection too
//! cargo bench -p connect-cloud --bench idle
//! ```
//!
//! Per kind (WebSocket, then SSE, each against a fresh release cloud binary, a child process):
//! 1. start; ingest on an empty queue for `BENCH_SECONDS` (closed loop, `BENCH_CONCURRENCY`
//!    keep-alive connections, a channel no connector listens on): the baseline p50/p99;
//! 2. `VmRSS` of the cloud, then `BENCH_CONNECTIONS` real connectors (channel tokens over
//!    `BENCH_CHANNELS` channels, from several loopback source addresses), each waiting for
//!    its `connected` frame / event; then two heartbeat intervals; `VmRSS` again: the growth
//!    divided by the connections is the per-connection cost;
//! 3. ingest again with every connector open and heartbeats flowing (p50/p99 against 1), and
//!    the heartbeat latency (the heartbeat's `server_time` to its arrival here) over that time;
//! 4. every connector still open at the end (none closed for a missed heartbeat);
//! 5. the CPU the cloud and the connectors (this process) use over the two idle intervals.
//!
//! Environment: `BENCH_CONNECTIONS` (default 10000), `BENCH_CHANNELS` (100), `BENCH_KINDS`
//! (`ws,sse`), `BENCH_HEARTBEAT` (heartbeat interval, s; default 5), `BENCH_SECONDS` (ingest
//! window, default 10), `BENCH_CONCURRENCY` (ingest connections, default 20),
//! `BENCH_CLOUD_BIN` (default `target/release/webhook-connect-cloud`), `BENCH_CLOUD_ENV`
//! (extra `K=V,K=V` for the cloud, e.g. allocator settings), `BENCH_RATE` (requests per
//! second: ingest is then open loop — paced senders, each request's latency from its
//! write, as webhooks arrive from providers — instead of closed loop; default 0, closed loop),
//! `BENCH_REPEATS` (ingest windows before and with the connectors, default 1: with several,
//! every window's p99 is printed, so the change can be read against the spread of the windows
//! without connectors — the noise), `BENCH_CONNECTORS_NICE` (the niceness of this process's
//! connector thread, default 19; 0 runs it at the load generator's priority).
//!
//! The connectors stand in for developers' machines, but here they share the two cores with
//! the cloud and the load generator. At equal priority the connector thread, woken by each
//! heartbeat, delays the generator's thread reading its answers, and that shows up as ingest
//! latency the cloud did not add. At niceness 19 the connectors take only what the cloud and
//! the generator leave, as they would on machines of their own; the heartbeats still arrive
//! (checked below). Run both ways to see how much of a p99 change is the bench's own.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connect_testkit::Cloud;
use connect_testkit::load::{
    Config, EPOCH, LoadResult, cpu_seconds, env_num, now_ns, paced_send, pct, proc_field,
    run_load_body, vm_rss_kib,
};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const INGEST: &str = "bench-ingest";

fn token(ch: usize) -> String {
    format!("idle-bench-token-{ch:05}-0123456789")
}

/// Loopback source addresses, so that the ephemeral ports of one address do not run out.
const SOURCES: u8 = 8;

/// The cloud binary through the test kit's harness: an ingest channel and `channels` idle ones.
fn spawn(rt: &tokio::runtime::Runtime, bin: &Path, channels: usize, heartbeat: u64) -> Cloud {
    let mut hooks = serde_json::Map::new();
    hooks.insert(
        INGEST.into(),
        serde_json::json!({
            "module": "webhook_connect",
            "module-config": {"channel": INGEST, "channel_token": token(99_999), "max_queue_size": 10_000_000}
        }),
    );
    for ch in 0..channels {
        hooks.insert(
            format!("idle-{ch}"),
            serde_json::json!({
                "module": "webhook_connect",
                "module-config": {"channel": format!("idle-{ch}"), "channel_token": token(ch), "max_connections": 10_000}
            }),
        );
    }
    let heartbeat = heartbeat.to_string();
    let mut env: Vec<(String, String)> = vec![
        ("WEBHOOK_CONNECT_LOG_LEVEL".into(), "warn".into()),
        (
            "WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS".into(),
            heartbeat,
        ),
    ];
    for kv in std::env::var("BENCH_CLOUD_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').expect("BENCH_CLOUD_ENV: K=V,K=V");
        env.push((k.into(), v.into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    rt.block_on(
        Cloud::builder(serde_json::Value::Object(hooks))
            .binary(bin)
            .envs(&env)
            .start(),
    )
    .unwrap()
}

fn addr_of(cloud: &Cloud) -> SocketAddr {
    format!("127.0.0.1:{}", cloud.port).parse().unwrap()
}

/// What the connectors report.
#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    closed: AtomicU64,
    heartbeats: AtomicU64,
    measuring: AtomicBool,
    /// Heartbeat latencies (ns) while measuring.
    latency_ns: Mutex<Vec<u64>>,
}

impl Shared {
    /// Records the latency of a heartbeat whose text holds `"server_time":"…"`.
    fn heartbeat(&self, text: &str) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let Some(at) = text.find("\"server_time\":\"") else {
            return;
        };
        let rest = &text[at + 15..];
        let Some(end) = rest.find('"') else { return };
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&rest[..end]) {
            let ns = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .num_nanoseconds()
                .unwrap_or(0)
                .max(0) as u64;
            self.latency_ns.lock().push(ns);
        }
    }
}

async fn socket_to(addr: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    let src = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES as usize) as u8);
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    sock.connect(addr).await
}

async fn ws_connector(
    addr: SocketAddr,
    i: usize,
    channels: usize,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let ch = i % channels;
    let stream = socket_to(addr, i).await.expect("connect");
    let mut req = format!("ws://{addr}/connect/stream/idle-{ch}")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {}", token(ch)).parse().unwrap(),
    );
    h.insert("x-webhook-connect-version", "2".parse().unwrap());
    // This side holds as many connections as the cloud: small buffers here too.
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(cfg))
        .await
        .expect("handshake");
    let mut first = true;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                if first && t.as_str().contains("\"connected\"") {
                    first = false;
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                    permit = None;
                } else if t.as_str().contains("\"heartbeat\"") {
                    shared.heartbeat(t.as_str());
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(permit);
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

async fn sse_connector(
    addr: SocketAddr,
    i: usize,
    channels: usize,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let ch = i % channels;
    let mut s = socket_to(addr, i).await.expect("connect");
    let req = format!(
        "GET /connect/stream/idle-{ch}/sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nauthorization: Bearer {}\r\nx-webhook-connect-version: 2\r\n\r\n",
        token(ch)
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut buf = vec![0u8; 2048];
    let mut first = true;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if first && text.contains("event: connected") {
            first = false;
            shared.connected.fetch_add(1, Ordering::Relaxed);
            permit = None;
        }
        if let Some(at) = text.find("event: heartbeat") {
            shared.heartbeat(&text[at..]);
        }
    }
    drop(permit);
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

fn ingest(addr: SocketAddr, seconds: f64, concurrency: usize) -> LoadResult {
    let body = br#"{"event":"bench.idle","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    run_load_body(
        &[addr],
        &format!("/webhook/{INGEST}"),
        Config {
            seconds,
            warmup: 1.0,
            concurrency,
            e2e_rate: 0,
            server_threads: 0,
        },
        body,
    )
}

/// One ingest window's figures.
struct Window {
    rate: f64,
    p50: f64,
    p99: f64,
    failed: u64,
}

/// An ingest window: closed loop (`rate` 0) or paced at `rate` per second over `concurrency`
/// keep-alive connections, on a runtime of its own; the first second is warm-up.
fn window(addr: SocketAddr, seconds: f64, concurrency: usize, rate: u64) -> Window {
    if rate == 0 {
        let r = ingest(addr, seconds, concurrency);
        return Window {
            rate: r.ok as f64 / r.elapsed.as_secs_f64(),
            p50: pct(&r.lat, 0.5),
            p99: pct(&r.lat, 0.99),
            failed: r.errors + r.non_2xx,
        };
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let total = Duration::from_secs_f64(seconds + 1.0);
    let from = now_ns() + 1_000_000_000;
    let path = format!("/webhook/{INGEST}");
    let r = rt.block_on(paced_send(
        addr,
        &path,
        concurrency as u64,
        rate,
        total,
        from,
    ));
    Window {
        rate: r.sent as f64 / r.elapsed.as_secs_f64(),
        p50: pct(&r.post_lat, 0.5),
        p99: pct(&r.post_lat, 0.99),
        failed: r.errors,
    }
}

fn windows(addr: SocketAddr, seconds: f64, concurrency: usize, rate: u64, n: usize) -> Vec<Window> {
    (0..n.max(1))
        .map(|_| window(addr, seconds, concurrency, rate))
        .collect()
}

/// `p99 a, b, c ms (median m)` and the rates, for one set of windows.
fn describe(ws: &[Window]) -> String {
    let mut p99: Vec<f64> = ws.iter().map(|w| w.p99).collect();
    p99.sort_by(f64::total_cmp);
    let list = |f: &dyn Fn(&Window) -> String| ws.iter().map(f).collect::<Vec<_>>().join(", ");
    format!(
        "p99 {} ms (median {:.2}, range {:.2}–{:.2}); p50 {} ms; {} req/s; failed {}",
        list(&|w| format!("{:.2}", w.p99)),
        p99[p99.len() / 2],
        p99[0],
        p99[p99.len() - 1],
        list(&|w| format!("{:.2}", w.p50)),
        list(&|w| format!("{:.0}", w.rate)),
        ws.iter().map(|w| w.failed).sum::<u64>(),
    )
}

fn raise_own_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
}

/// Sets the calling thread's niceness (Linux applies `setpriority` to a thread id alone).
fn lower_this_thread(nice: i32) {
    if nice != 0 {
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
            .expect("setpriority on the connector thread");
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn run_kind(bin: &Path, kind: &str) {
    let n: usize = env_num("BENCH_CONNECTIONS", 10_000);
    let channels: usize = env_num("BENCH_CHANNELS", 100);
    let heartbeat: u64 = env_num("BENCH_HEARTBEAT", 5);
    let seconds: f64 = env_num("BENCH_SECONDS", 10.0);
    let concurrency: usize = env_num("BENCH_CONCURRENCY", 20);
    let rate: u64 = env_num("BENCH_RATE", 0);
    let repeats: usize = env_num("BENCH_REPEATS", 1);
    let nice: i32 = env_num("BENCH_CONNECTORS_NICE", 19);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || lower_this_thread(nice))
        .enable_all()
        .build()
        .unwrap();
    let cloud = spawn(&rt, bin, channels, heartbeat);
    let cloud_addr = addr_of(&cloud);
    let pid = cloud.pid();
    let rss_start = vm_rss_kib(pid).unwrap_or(0);
    let base = windows(cloud_addr, seconds, concurrency, rate, repeats);
    let rss_before = vm_rss_kib(pid).unwrap_or(0);

    let shared = Arc::new(Shared::default());
    let opened = Instant::now();
    // At most 256 handshakes at a time; a connector gives its slot back once connected.
    let gate = Arc::new(Semaphore::new(256));
    let ws = kind == "ws";
    rt.block_on(async {
        for i in 0..n {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let shared = shared.clone();
            let addr = cloud_addr;
            tokio::spawn(async move {
                if ws {
                    ws_connector(addr, i, channels, shared, permit).await
                } else {
                    sse_connector(addr, i, channels, shared, permit).await
                }
            });
        }
        while (shared.connected.load(Ordering::Relaxed) as usize) < n {
            assert_eq!(
                shared.closed.load(Ordering::Relaxed),
                0,
                "a connector was closed while opening"
            );
            assert!(
                opened.elapsed() < Duration::from_secs(600),
                "opening took over 10 min"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let open_time = opened.elapsed();
    // Two heartbeat intervals: every connection has sent and received heartbeats.
    // What the heartbeats cost while nothing else runs: the cloud's CPU, and this process's
    // (the connectors' side, which shares the cores with the cloud here but not in use).
    let beats_before = shared.heartbeats.load(Ordering::Relaxed);
    let (cloud_cpu0, own_cpu0, idle_from) = (
        cpu_seconds(pid),
        cpu_seconds(std::process::id()),
        Instant::now(),
    );
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(heartbeat * 2 + 1)).await });
    let beats = shared.heartbeats.load(Ordering::Relaxed) - beats_before;
    let idle_secs = idle_from.elapsed().as_secs_f64();
    let cloud_core = (cpu_seconds(pid) - cloud_cpu0) / idle_secs;
    let own_core = (cpu_seconds(std::process::id()) - own_cpu0) / idle_secs;
    let rss_open = vm_rss_kib(pid).unwrap_or(0);
    shared.measuring.store(true, Ordering::Relaxed);
    let loaded = windows(cloud_addr, seconds, concurrency, rate, repeats);
    shared.measuring.store(false, Ordering::Relaxed);
    let rss_end = vm_rss_kib(pid).unwrap_or(0);
    let hwm = proc_field(pid, "status", "VmHWM").unwrap_or(0);
    let closed = shared.closed.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *shared.latency_ns.lock());
    lat.sort_unstable();
    let lat_ms = |p: f64| pct(&lat, p);
    let per_conn = (rss_open.saturating_sub(rss_before) as f64 * 1024.0) / n as f64;
    println!(
        "== {kind}: {n} idle connectors on {channels} channels, heartbeat {heartbeat} s, connector thread at nice {nice}"
    );
    println!(
        "  cloud VmRSS: {:.1} MiB at start, {:.1} MiB after the baseline ingest, {:.1} MiB with the connectors open ({:.1} KiB per connection), {:.1} MiB after ingest with them open; VmHWM {:.1} MiB",
        mib(rss_start),
        mib(rss_before),
        mib(rss_open),
        per_conn / 1024.0,
        mib(rss_end),
        mib(hwm),
    );
    println!(
        "  opened in {:.1} s; heartbeats received in 2 intervals: {beats} (expected ~{}); closed by the cloud: {closed}",
        open_time.as_secs_f64(),
        2 * n
    );
    println!(
        "  CPU while idle with them open ({idle_secs:.0} s): cloud {:.1} % of a core ({:.1} µs per heartbeat sent), connectors (this process) {:.1} %",
        cloud_core * 100.0,
        cloud_core * idle_secs / beats.max(1) as f64 * 1e6,
        own_core * 100.0,
    );
    println!(
        "  heartbeat latency during ingest: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} heartbeats)",
        lat_ms(0.50),
        lat_ms(0.99),
        lat_ms(1.0),
        lat.len()
    );
    let how = match rate {
        0 => format!("closed loop, {concurrency} connections"),
        r => format!("open loop at {r}/s over {concurrency} connections"),
    };
    println!(
        "  ingest ({how}, {} window(s) of {seconds} s each), no connectors: {}",
        base.len(),
        describe(&base)
    );
    println!("  ingest with {n} idle connectors: {}", describe(&loaded));
    drop(cloud);
    rt.shutdown_timeout(Duration::from_secs(2));
}

fn main() {
    EPOCH.get_or_init(Instant::now);
    raise_own_nofile();
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
    let kinds = std::env::var("BENCH_KINDS").unwrap_or_else(|_| "ws,sse".into());
    for kind in kinds.split(',').map(str::trim) {
        assert!(matches!(kind, "ws" | "sse"), "BENCH_KINDS: ws and/or sse");
        run_kind(&bin, kind);
    }
}
