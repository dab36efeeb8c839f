//! What an idle connector costs (issue #13, finding 6): tungstenite's default read buffer
//! (128 KiB, zero-filled before every read) made each WebSocket one ~135 KB. A bound, not a
//! timing: the resident set of this process (cloud in-process, and clients configured with a
//! 1 KiB read buffer of their own, or bare sockets for SSE) may grow by at most 32 KiB per
//! connection opened. The figures for the release binary and 10,000 connectors are in
//! docs/BENCHMARKS.md.

use connect_testkit::in_process::TestCloud;
use serde_json::json;

use crate::support::{CHANNEL, TOKEN, sse_connector, ws_connector};

const WARM: usize = 20;
const MEASURED: usize = 300;
const BOUND_KIB: u64 = 32;
/// An SSE connector, the 16 KB: over HTTP/1.1 the stream's task takes the socket off
/// hyper after the response head (`edge::handoff`), so no hyper connection buffers (8 KiB read,
/// 8 KiB head; ~24 KiB with the connection's state) stay under an idle stream. 29 KiB per
/// connection here before that (2026-12-06). The raw client below costs next to nothing of its
/// own (a socket; its 256-byte read buffer and the bytes seen are freed once connected).
const SSE_BOUND_KIB: u64 = 16;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_connector_costs_at_most_32_kib() {
    let cloud = TestCloud::start(hooks()).await.expect("cloud");
    let mut open = Vec::with_capacity(WARM + MEASURED);
    for _ in 0..WARM {
        open.push(ws_connector(&cloud).await);
    }
    let before = rss_kib();
    for _ in 0..MEASURED {
        open.push(ws_connector(&cloud).await);
    }
    let after = rss_kib();
    let per = after.saturating_sub(before) / MEASURED as u64;
    assert!(
        per <= BOUND_KIB,
        "{per} KiB per idle WebSocket connector ({before} → {after} KiB for {MEASURED})"
    );
    drop(open);
    cloud.stop().await;
}

fn hooks() -> serde_json::Value {
    json!({
        "hook": {
            "module": "webhook_connect",
            "module-config": {"channel": CHANNEL, "channel_token": TOKEN, "max_connections": 10_000}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sse_connector_costs_at_most_16_kib() {
    let cloud = TestCloud::start(hooks()).await.expect("cloud");
    let mut open = Vec::with_capacity(WARM + MEASURED);
    for _ in 0..WARM {
        open.push(sse_connector(&cloud).await);
    }
    let before = rss_kib();
    for _ in 0..MEASURED {
        open.push(sse_connector(&cloud).await);
    }
    let after = rss_kib();
    let per = after.saturating_sub(before) / MEASURED as u64;
    assert!(
        per <= SSE_BOUND_KIB,
        "{per} KiB per idle SSE connector ({before} → {after} KiB for {MEASURED})"
    );
    drop(open);
    cloud.stop().await;
}
