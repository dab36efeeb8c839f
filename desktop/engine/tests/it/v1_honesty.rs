//! What the engine reports about a protocol-v1 cloud must be true (issue 15, "connector
//! honesty"), against the v1 stand-in of the test kit:
//! - long-poll is refused after reading `/connect/status`, before any poll takes a message that
//!   a v1 cloud may never give out again;
//! - the cloud's dead-letter count is read from v1's `messages_dead_lettered`;
//! - a connection error is shown only while it describes the current state, with its time.

use connect_engine::LinkState;
use connect_engine::api::Transport;
use connect_testkit::{HttpFilterProxy, RecordingTarget, TcpProxy};
use serde_json::json;

use crate::harness::{connected, stop, wait_status};
use crate::v1::{engine, no_violations, post, v1, wait_v1};

fn names_v1(e: &Option<String>) -> bool {
    e.as_deref().is_some_and(|e| e.contains("protocol v1"))
}

/// The refusal says that nothing was taken, and claims nothing about what a v1 cloud does with
/// polled messages (the reference keeps them pending and never redelivers them).
fn honest(e: &Option<String>) {
    let e = e.as_deref().unwrap_or_default();
    assert!(
        e.contains("nothing was polled") && !e.contains("requeued"),
        "{e}"
    );
}

#[tokio::test]
async fn long_poll_against_v1_is_refused_without_polling() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    post(&v1, r#"{"n":1}"#, &[("content-type", "application/json")]).await;
    post(&v1, r#"{"n":2}"#, &[("content-type", "application/json")]).await;
    let h = engine(&v1.base, "long_poll", &target, json!({}));
    let s = wait_status(&h, "degraded with the v1 long-poll refusal", |s| {
        s.state == LinkState::Degraded && names_v1(&s.last_error)
    })
    .await;
    assert!(s.last_error_at.is_some(), "{s:?}");
    // Checked again slowly (max_reconnect_delay, 1 s), in case the cloud is upgraded: a few
    // more refusals, still without a poll.
    let attempts = s.connection_attempts;
    wait_status(&h, "two more checks", |s| {
        s.connection_attempts >= attempts + 2
    })
    .await;
    let rec = v1.records();
    assert_eq!(rec.poll_requests, 0, "polled a v1 cloud: {rec:?}");
    assert!(rec.polled.is_empty(), "{rec:?}");
    assert!(rec.ack_requests.is_empty(), "{:?}", rec.ack_requests);
    assert_eq!(target.count(), 0);
    assert_eq!(v1.queued(), 2, "both messages are still at the v1 cloud");
    honest(&s.last_error);
    no_violations(&v1);
    stop(h).await;
}

/// `auto` against v1 with WebSocket and SSE both blocked reaches long-poll, finds a v1 cloud
/// from its status answer and goes back to WebSocket without polling (§11.1).
#[tokio::test]
async fn auto_against_v1_skips_long_poll_without_polling() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    let proxy = HttpFilterProxy::start(v1.addr).await.unwrap();
    proxy.refuse_path_suffix("/sse");
    post(&v1, r#"{"n":1}"#, &[("content-type", "application/json")]).await;
    let h = engine(&proxy.url, "auto", &target, json!({}));
    let refused = wait_status(&h, "the long-poll rung refused", |s| {
        names_v1(&s.last_error)
    })
    .await;
    let s = wait_status(&h, "back on WebSocket", |s| {
        s.transport == Some(Transport::Websocket)
    })
    .await;
    assert_ne!(s.state, LinkState::Connected, "{s:?}");
    let attempts = s.connection_attempts;
    wait_status(&h, "more WebSocket attempts", |s| {
        s.connection_attempts >= attempts + 2
    })
    .await;
    assert_eq!(v1.records().poll_requests, 0, "{:?}", v1.records());
    assert_eq!(target.count(), 0);
    assert_eq!(v1.queued(), 1);
    honest(&refused.last_error);
    stop(h).await;
}

#[tokio::test]
async fn status_reads_the_v1_dead_letter_count() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    // 404: NACK retry=false, which a v1 cloud drops and counts as dead-lettered.
    target.set_status(404);
    for n in 0..3 {
        post(&v1, &format!(r#"{{"n":{n}}}"#), &[]).await;
    }
    let h = engine(&v1.base, "websocket", &target, json!({}));
    wait_v1(&v1, "three NACKs retry=false", |r| r.dropped.len() == 3).await;
    let s = wait_status(&h, "the cloud's dead-letter count", |s| {
        s.queue.as_ref().is_some_and(|q| q.dead_letters == 3)
    })
    .await;
    assert_eq!(s.counters.dead_lettered, 3, "{s:?}");
    no_violations(&v1);
    stop(h).await;
}

#[tokio::test]
async fn an_old_connection_error_is_not_shown_once_connected_again() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    post(&v1, r#"{"n":1}"#, &[]).await;
    let proxy = TcpProxy::start(v1.addr).await.unwrap();
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let h = engine(&url, "websocket", &target, json!({}));
    let first = connected(&h, Transport::Websocket).await;
    assert_eq!(first.last_error, None, "{first:?}");

    proxy.cut();
    let failing = wait_status(&h, "a failed reconnect", |s| {
        s.state != LinkState::Connected && s.last_error.is_some()
    })
    .await;
    // The error carries its time (RFC 3339).
    let at = failing.last_error_at.clone().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&at).is_ok(),
        "{failing:?}"
    );

    proxy.restore();
    let again = wait_status(&h, "connected again", |s| {
        s.state == LinkState::Connected && s.connection_id != first.connection_id
    })
    .await;
    assert_eq!(
        again.last_error, None,
        "an old error shown as current: {again:?}"
    );
    assert_eq!(again.last_error_at, None, "{again:?}");
    stop(h).await;
}
