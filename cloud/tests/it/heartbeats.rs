//! Heartbeats of connectors that connect together do not stay in step (issue #13: "ingest p99
//! unchanged" with 10,000 idle connectors). Each stream's first heartbeat comes after a random
//! part of the interval, between half and all of it (`http::connect::beat`); before, it came
//! exactly one interval after `connected`, so connectors that reconnected together (after a
//! restart) sent every later heartbeat together too.
//!
//! Not a timing bound: timers never fire early, so "not before half the interval" holds on any
//! machine, and connections that all waited exactly one interval cannot show a spread of a
//! second between their waits however loaded the machine is.

use std::time::{Duration, Instant};

use connect_testkit::in_process::TestCloud;
use connect_testkit::timing::scaled;
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{CHANNEL, TOKEN, Ws, sse_connector, ws_connector};

const INTERVAL: Duration = Duration::from_secs(5);
const CONNECTORS: usize = 30;

/// A cloud with one channel ([`CHANNEL`], [`TOKEN`]) and a heartbeat every `seconds`.
async fn cloud_with_heartbeat(seconds: u64) -> TestCloud {
    let hooks = json!({
        "hook": {
            "module": "webhook_connect",
            "module-config": {"channel": CHANNEL, "channel_token": TOKEN, "max_connections": 100}
        }
    });
    TestCloud::builder(hooks)
        .heartbeat_seconds(seconds)
        .start()
        .await
        .expect("cloud")
}

/// How long after `connected` (as this client saw it) the stream's first heartbeat arrived.
async fn first_heartbeat(mut ws: Ws, connected: Instant) -> Duration {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("\"heartbeat\"") => {
                    return connected.elapsed();
                }
                Some(Ok(_)) => {}
                other => panic!("the stream ended before a heartbeat: {other:?}"),
            }
        }
    };
    tokio::time::timeout(scaled(INTERVAL * 4), wait)
        .await
        .expect("a heartbeat within four intervals")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_that_connect_together_get_their_heartbeats_spread_out() {
    let cloud = cloud_with_heartbeat(INTERVAL.as_secs()).await;
    let mut open = Vec::with_capacity(CONNECTORS);
    for _ in 0..CONNECTORS {
        let ws = ws_connector(&cloud).await;
        open.push((ws, Instant::now()));
    }
    let mut waits: Vec<Duration> =
        futures::future::join_all(open.into_iter().map(|(ws, at)| first_heartbeat(ws, at))).await;
    waits.sort_unstable();
    // The cloud arms the ticker before this client sees `connected`: allow for that delivery.
    let slack = Duration::from_millis(100);
    assert!(
        waits[0] + slack >= INTERVAL / 2,
        "a first heartbeat came {:?} after `connected`, before half the interval",
        waits[0]
    );
    let spread = waits[CONNECTORS - 1] - waits[0];
    assert!(
        spread >= Duration::from_secs(1),
        "the first heartbeats of {CONNECTORS} connectors came {:?}..{:?} after their `connected`: in step",
        waits[0],
        waits[CONNECTORS - 1]
    );
    cloud.stop().await;
}

/// When each write of an idle SSE stream (its chunks, as the handoff writes them) reached this
/// client, and what it was, from the `connected` event on, for `watch`.
async fn sse_writes(cloud: &TestCloud, watch: Duration) -> Vec<(Duration, String)> {
    use tokio::io::AsyncReadExt;
    let mut sock = sse_connector(cloud).await;
    let start = Instant::now();
    let mut seen = String::new();
    let mut writes = Vec::new();
    let end = tokio::time::Instant::now() + watch;
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(end, sock.read(&mut buf)).await {
            Err(_) => break,
            Ok(r) => r.expect("read"),
        };
        assert!(n > 0, "the stream ended: {seen}");
        let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.push_str(&chunk);
        let what = if chunk.contains(": keep-alive") {
            "keep-alive"
        } else if chunk.contains("event: heartbeat") {
            "heartbeat"
        } else {
            "other"
        };
        writes.push((start.elapsed(), what.to_owned()));
    }
    writes
}

/// PROTOCOL §5.2: a `: keep-alive` comment whenever nothing was written for 5 s: never
/// early, and never late by more than the slack; heartbeats in between at the default 15 s.
/// Timers never fire early, so the lower bound holds on any machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sse_stream_writes_a_keep_alive_after_5_s_without_a_write() {
    let cloud = cloud_with_heartbeat(15).await;
    let keep_alive = Duration::from_secs(5);
    let watch = Duration::from_secs(16);
    let streams = futures::future::join_all((0..3).map(|_| sse_writes(&cloud, watch))).await;
    let slack = scaled(Duration::from_millis(500));
    for writes in streams {
        let kinds: Vec<&str> = writes.iter().map(|(_, w)| w.as_str()).collect();
        assert!(
            kinds.contains(&"keep-alive") && kinds.contains(&"heartbeat"),
            "{writes:?}"
        );
        assert!(!kinds.contains(&"other"), "{writes:?}");
        let mut last = Duration::ZERO;
        for (at, what) in &writes {
            let gap = *at - last;
            assert!(
                gap <= keep_alive + slack,
                "{gap:?} without a write: {writes:?}"
            );
            if what == "keep-alive" {
                // The client saw `connected` a little after the cloud wrote it.
                assert!(
                    gap + Duration::from_millis(50) >= keep_alive,
                    "a keep-alive {gap:?} after the last write: {writes:?}"
                );
            }
            last = *at;
        }
        assert!(watch - last <= keep_alive + slack, "{writes:?}");
    }
    cloud.stop().await;
}
