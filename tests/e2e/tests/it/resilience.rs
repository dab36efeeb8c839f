//! Crash safety: `kill -9` of the cloud in the middle of a stream of webhooks loses nothing
//! that was answered 2xx; redeliveries keep their `message_id`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use connect_testkit::{RecordingTarget, wait_until};
use parking_lot::Mutex;
use serde_json::json;

use crate::client::{TestConnector, Transport};
use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "kill-nine-channel-token";

#[tokio::test]
async fn kill_9_mid_stream_loses_no_acknowledged_webhook() -> anyhow::Result<()> {
    let mut cloud = Cloud::start(json!({"hook": connect_hook("crash", TOKEN, json!({}))})).await?;
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &cloud.base, "crash", TOKEN, &target.url);
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let base = cloud.base.clone();
    // Eight concurrent senders post until told to stop; every 2xx message id is recorded.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = Vec::new();
    for w in 0..8 {
        let (accepted, base, stop) = (accepted.clone(), base.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let body = format!(r#"{{"w":{w},"i":{i}}}"#);
                if let Ok(r) = http
                    .post(format!("{base}/webhook/hook"))
                    .body(body)
                    .send()
                    .await
                    && r.status() == 200
                    && let Ok(v) = r.json::<serde_json::Value>().await
                {
                    accepted
                        .lock()
                        .push(v["message_id"].as_str().unwrap_or_default().to_owned());
                }
            }
        }));
    }
    wait_until(
        Duration::from_secs(20),
        "some webhooks accepted",
        || async { accepted.lock().len() >= 300 },
    )
    .await?;
    cloud.kill9();
    let before_kill = accepted.lock().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cloud.restart().await?;
    wait_until(
        Duration::from_secs(20),
        "more webhooks accepted after restart",
        || async { accepted.lock().len() >= before_kill + 100 },
    )
    .await?;
    stop.cancel();
    for s in senders {
        let _ = s.await;
    }
    let accepted: HashSet<String> = accepted.lock().iter().cloned().collect();
    wait_until(
        Duration::from_secs(60),
        "every accepted webhook delivered",
        || async {
            let seen: HashSet<String> = conn.message_ids().into_iter().collect();
            accepted.is_subset(&seen)
        },
    )
    .await
    .map_err(|e| {
        let seen: HashSet<String> = conn.message_ids().into_iter().collect();
        anyhow::anyhow!(
            "{e}: {} of {} accepted webhooks never delivered",
            accepted.difference(&seen).count(),
            accepted.len()
        )
    })?;
    let seen = conn.message_ids();
    let unique: HashSet<&String> = seen.iter().collect();
    eprintln!(
        "accepted {} webhooks across the crash; {} deliveries, {} duplicates (redeliveries)",
        accepted.len(),
        seen.len(),
        seen.len() - unique.len()
    );
    assert!(
        unique
            .iter()
            .all(|id| accepted.contains(*id) || id.starts_with("msg_"))
    );
    Ok(())
}
