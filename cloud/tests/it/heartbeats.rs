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

use crate::support::{CHANNEL, TOKEN, Ws, ws_connector};

const INTERVAL: Duration = Duration::from_secs(5);
const CONNECTORS: usize = 30;

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
    let hooks = json!({
        "hook": {
            "module": "webhook_connect",
            "module-config": {"channel": CHANNEL, "channel_token": TOKEN, "max_connections": 100}
        }
    });
    let cloud = TestCloud::builder(hooks)
        .heartbeat_seconds(INTERVAL.as_secs())
        .start()
        .await
        .expect("cloud");
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
