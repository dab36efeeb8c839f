//! Crash safety: `kill -9` of the cloud in the middle of a stream of webhooks loses nothing
//! that was answered 2xx; redeliveries keep their `message_id`.

use std::collections::{HashMap, HashSet};
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
    // Every 2xx answer: (message_id, the body it was given for). Each body is posted once.
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
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
                    .body(body.clone())
                    .send()
                    .await
                    && r.status() == 200
                    && let Ok(v) = r.json::<serde_json::Value>().await
                {
                    let id = v["message_id"].as_str().unwrap_or_default().to_owned();
                    accepted.lock().push((id, body));
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
    let accepted: HashMap<String, String> = accepted.lock().iter().cloned().collect();
    let ids: HashSet<String> = accepted.keys().cloned().collect();
    wait_until(
        Duration::from_secs(60),
        "every accepted webhook delivered",
        || async {
            let seen: HashSet<String> = conn.message_ids().into_iter().collect();
            ids.is_subset(&seen)
        },
    )
    .await
    .map_err(|e| {
        let seen: HashSet<String> = conn.message_ids().into_iter().collect();
        anyhow::anyhow!(
            "{e}: {} of {} accepted webhooks never delivered",
            ids.difference(&seen).count(),
            ids.len()
        )
    })?;
    let deliveries: Vec<(String, String)> = conn
        .seen
        .lock()
        .iter()
        .map(|m| {
            let id = m["message_id"].as_str().unwrap_or_default().to_owned();
            (id, delivered_body(m))
        })
        .collect();
    let mut body_of: HashMap<&str, &str> = HashMap::new();
    let mut id_of: HashMap<&str, &str> = HashMap::new();
    for (id, body) in &deliveries {
        // An accepted webhook arrives with the very bytes it was accepted with.
        if let Some(sent) = accepted.get(id) {
            assert_eq!(body, sent, "message {id} delivered with another body");
        }
        // A webhook whose answer was lost in the crash may be delivered too, but it is one
        // the senders posted.
        assert!(
            is_sent_body(body),
            "message {id} carries a body nobody sent: {body}"
        );
        // Duplicates only as redeliveries: one id never carries two bodies, and one body
        // (each was posted once) never arrives under two ids.
        let first = body_of.entry(id).or_insert(body);
        assert_eq!(first, body, "message {id} delivered with two bodies");
        let owner = id_of.entry(body).or_insert(id);
        assert_eq!(owner, id, "body {body} delivered under two message ids");
    }
    eprintln!(
        "accepted {} webhooks across the crash; {} deliveries, {} duplicates (redeliveries)",
        accepted.len(),
        deliveries.len(),
        deliveries.len() - body_of.len()
    );
    Ok(())
}

/// The body bytes a wire message carries, as text.
fn delivered_body(m: &serde_json::Value) -> String {
    use base64::Engine as _;
    m["body_b64"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| m["payload"].to_string())
}

/// `{"w":<sender>,"i":<n>}` exactly as the senders above format it.
fn is_sent_body(body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    match (v["w"].as_u64(), v["i"].as_u64()) {
        (Some(w), Some(i)) => w < 8 && i > 0 && body == format!(r#"{{"w":{w},"i":{i}}}"#),
        _ => false,
    }
}
