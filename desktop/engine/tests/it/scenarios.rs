//! Delivery scenarios over every transport, fidelity, retries, dead letters, auth and link cuts.

use std::time::Duration;

use connect_engine::LinkState;
use connect_engine::api::Outcome;
use connect_testkit::{RecordingTarget, TcpProxy, wait_until, within};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::harness::{Cloud, TOKEN, start_engine, status};

const T: Duration = Duration::from_secs(30);

async fn ten_delivered_and_acked(protocol: &str) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "ch",
        TOKEN,
        protocol,
        json!({"url": target.url}),
    );
    for i in 0..10 {
        cloud.post(&format!("{{\"n\":{i}}}")).await.unwrap();
    }
    let reqs = target.wait_for_count(10, T).await.unwrap();
    let mut bodies: Vec<String> = reqs.iter().map(|r| r.body_text()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 10);
    wait_until(T, "10 acks at the cloud", || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .is_ok_and(|v| v["messages_acked"].as_u64() >= Some(10))
    })
    .await
    .unwrap();
    let s = status(&engine);
    assert_eq!(s.counters.delivered, 10, "{s:?}");
    assert_eq!(s.state, LinkState::Connected);
    let events = engine.events("ch").unwrap();
    assert_eq!(events.len(), 10);
    assert!(
        events
            .iter()
            .all(|e| e.response_status == Some(200) && e.outcome == Outcome::Delivered)
    );
    assert_eq!(s.latency.samples, 10);
    assert!(
        reqs.iter()
            .all(|r| r.header("x-webhook-message-id").is_some()
                && r.header("x-webhook-channel") == Some("ch"))
    );
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_delivers_and_acks_ten() {
    ten_delivered_and_acked("websocket").await;
}

#[tokio::test]
async fn sse_delivers_and_acks_ten() {
    ten_delivered_and_acked("sse").await;
}

#[tokio::test]
async fn long_poll_delivers_and_acks_ten() {
    ten_delivered_and_acked("long_poll").await;
}

#[tokio::test]
async fn bodies_and_signatures_arrive_byte_identical() {
    let cloud = Cloud::start("fid").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "fid",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    let json_body = "{ \"k\" :\t\"h\u{e9}llo \u{1F600}\" ,\n  \"n\": 1.50e3 }\n"
        .as_bytes()
        .to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
    mac.update(&json_body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let s = cloud
        .post_raw(
            "hook",
            json_body.clone(),
            &[
                ("content-type", "application/json"),
                ("X-Hub-Signature-256", &sig),
            ],
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let blob: Vec<u8> = (0..=255u8).chain([0, 0xff, 0xfe, b'\r', b'\n']).collect();
    let s = cloud
        .post_raw(
            "blobhook",
            blob.clone(),
            &[("content-type", "application/octet-stream")],
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let reqs = target.wait_for_count(2, T).await.unwrap();
    let j = reqs
        .iter()
        .find(|r| r.header("x-webhook-id") == Some("hook"))
        .unwrap();
    assert_eq!(j.body.as_ref(), json_body.as_slice());
    let got_sig = j.header("x-hub-signature-256").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
    mac.update(&j.body);
    assert_eq!(
        got_sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let b = reqs
        .iter()
        .find(|r| r.header("x-webhook-id") == Some("blobhook"))
        .unwrap();
    assert_eq!(b.body.as_ref(), blob.as_slice());
    assert_eq!(b.header("content-type"), Some("application/octet-stream"));
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn transient_503s_are_retried_locally_then_delivered_once() {
    let cloud = Cloud::start("retry").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.script(&[503, 503, 503]);
    let engine = start_engine(
        &cloud.base,
        "retry",
        TOKEN,
        "websocket",
        json!({"url": target.url, "retry_max_attempts": 5, "retry_delay_seconds": 0.05}),
    );
    cloud.post("{\"x\":1}").await.unwrap();
    let reqs = target.wait_for_count(4, T).await.unwrap();
    wait_until(T, "delivered", || async {
        status(&engine).counters.delivered == 1
    })
    .await
    .unwrap();
    let attempts: Vec<_> = reqs
        .iter()
        .map(|r| r.header("x-webhook-attempt").unwrap().to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    let s = status(&engine);
    assert_eq!(s.counters.retried, 3);
    assert_eq!(s.counters.dead_lettered, 0);
    wait_until(T, "ack at the cloud", || async {
        cloud
            .admin_get("/channels/retry/stats")
            .await
            .is_ok_and(|v| v["messages_acked"].as_u64() == Some(1))
    })
    .await
    .unwrap();
    let dl = cloud
        .admin_get("/channels/retry/dead-letters")
        .await
        .unwrap();
    assert_eq!(dl["total"].as_u64(), Some(0), "{dl}");
    assert_eq!(target.count(), 4);
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_404_is_dead_lettered() {
    let cloud = Cloud::start("dl").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.set_status(404);
    let engine = start_engine(&cloud.base, "dl", TOKEN, "sse", json!({"url": target.url}));
    cloud.post("{\"x\":404}").await.unwrap();
    wait_until(T, "a dead letter", || async {
        cloud
            .admin_get("/channels/dl/dead-letters")
            .await
            .is_ok_and(|v| v["total"].as_u64() == Some(1))
    })
    .await
    .unwrap();
    let dl = cloud.admin_get("/channels/dl/dead-letters").await.unwrap();
    assert!(dl.to_string().contains("HTTP 404"), "{dl}");
    assert_eq!(target.count(), 1);
    assert_eq!(status(&engine).counters.dead_lettered, 1);
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_auth_failed_without_a_hot_loop() {
    let cloud = Cloud::start("auth").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "auth",
        "wrong-token",
        "websocket",
        json!({"url": target.url}),
    );
    wait_until(T, "auth_failed", || async {
        status(&engine).state == LinkState::AuthFailed
    })
    .await
    .unwrap();
    // Measuring a rate needs a window of time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&engine);
    assert_eq!(s.state, LinkState::AuthFailed);
    // max_reconnect_delay is 1 s here: a handful of attempts, never a hot loop.
    assert!(
        s.connection_attempts <= 5,
        "{} attempts in 3 s",
        s.connection_attempts
    );
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

async fn link_cut(protocol: &str) {
    let cloud = Cloud::start("cut").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap())
        .await
        .unwrap();
    let engine = start_engine(
        &format!("http://127.0.0.1:{}", proxy.port),
        "cut",
        TOKEN,
        protocol,
        json!({"url": target.url}),
    );
    for i in 0..5 {
        cloud.post(&format!("{{\"n\":{i}}}")).await.unwrap();
    }
    target.wait_for_count(5, T).await.unwrap();
    proxy.cut();
    for i in 5..10 {
        cloud.post(&format!("{{\"n\":{i}}}")).await.unwrap();
    }
    proxy.restore();
    wait_until(T, "all 10 bodies at the target", || async {
        let mut b: Vec<String> = target.requests().iter().map(|r| r.body_text()).collect();
        b.sort();
        b.dedup();
        b.len() == 10
    })
    .await
    .unwrap();
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_survives_a_link_cut() {
    link_cut("websocket").await;
}

#[tokio::test]
async fn sse_survives_a_link_cut() {
    link_cut("sse").await;
}

#[tokio::test]
async fn auto_delivers_over_websocket() {
    ten_delivered_and_acked("auto").await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_deliveries_and_acks_them() {
    let cloud = Cloud::start("drain").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.set_delay(Duration::from_millis(1500));
    let engine = start_engine(
        &cloud.base,
        "drain",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    cloud.post("{\"slow\":true}").await.unwrap();
    target.wait_for_count(1, T).await.unwrap();
    // The grace (60 s) is far longer than T: shutdown returns within T only by finishing the
    // 1.5 s delivery, not by waiting the grace out; no time is measured.
    within(T, "shutdown", engine_shutdown_and_check(engine))
        .await
        .unwrap();
    assert_eq!(target.count(), 1);
    wait_until(T, "the ACK at the cloud", || async {
        cloud
            .admin_get("/channels/drain/stats")
            .await
            .is_ok_and(|v| v["messages_acked"].as_u64() == Some(1))
    })
    .await
    .unwrap();
    let stats = cloud.admin_get("/channels/drain/stats").await.unwrap();
    assert_eq!(
        stats["messages_nacked"], 0,
        "finished, not handed back: {stats}"
    );
}

async fn engine_shutdown_and_check(engine: connect_engine::EngineHandle) {
    let status_before = status(&engine);
    assert_eq!(status_before.in_flight, 1);
    let channels = engine.status();
    engine.shutdown(Duration::from_secs(60)).await;
    assert_eq!(channels.len(), 1);
}

#[tokio::test]
async fn ordered_targets_get_one_message_at_a_time_in_order() {
    let cloud = Cloud::start("ord").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.set_delay(Duration::from_millis(200));
    let engine = start_engine(
        &cloud.base,
        "ord",
        TOKEN,
        "websocket",
        json!({"url": target.url, "ordered": true}),
    );
    for i in 0..4 {
        cloud.post(&format!("{{\"n\":{i}}}")).await.unwrap();
    }
    let reqs = target.wait_for_count(4, T).await.unwrap();
    let bodies: Vec<String> = reqs.iter().map(|r| r.body_text()).collect();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    for w in reqs.windows(2) {
        // The next request starts only after the previous answer (200 ms delay) came back.
        assert!(w[1].received_at.duration_since(w[0].received_at) >= Duration::from_millis(190));
    }
    wait_until(T, "4 delivered", || async {
        status(&engine).counters.delivered == 4
    })
    .await
    .unwrap();
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// `subscribe_finished` tells each delivery once, when settled, with the target's status:
/// what `webhook-connect listen` prints one line for.
#[tokio::test]
async fn each_settled_delivery_is_told_once_with_its_status() {
    let cloud = Cloud::start("told").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.script(&[201, 404]);
    let engine = start_engine(
        &cloud.base,
        "told",
        TOKEN,
        "websocket",
        json!({"url": target.url, "ordered": true}),
    );
    let mut rx = engine.subscribe_finished();
    cloud.post("{\"n\":1}").await.unwrap();
    let first = within(T, "the first delivery", rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.key, "told");
    assert_eq!(first.summary.response_status, Some(201));
    assert_eq!(first.summary.outcome, Outcome::Delivered);
    assert_eq!(first.summary.method.as_deref(), Some("POST"));
    assert!(first.error.is_none());
    cloud.post("{\"n\":2}").await.unwrap();
    let second = within(T, "the second delivery", rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.summary.response_status, Some(404));
    assert_eq!(second.summary.outcome, Outcome::DeadLetter);
    assert_ne!(first.summary.message_id, second.summary.message_id);
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(rx.try_recv().is_err(), "nothing told twice");
}
