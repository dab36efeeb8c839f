//! The engine against a protocol-version-1 cloud (PROTOCOL.md §1.2 rule 3: "this project's
//! connector works against a reference cloud by treating every v2 field as optional and using
//! the fallbacks given in this document").
//!
//! The reference cloud does not run here. [`V1Cloud`] (tests/support/src/v1cloud.rs) is a
//! **stand-in written from PROTOCOL.md's description of version 1**, not the reference itself;
//! its module documentation lists every v1 behaviour it reproduces, its assumptions and what it
//! leaves out. What these tests rely on:
//! - no `X-Webhook-Connect-Version` header, no `protocol_version`, v1 frame shapes (WebSocket
//!   `connected` without the v2 fields, SSE `connected` with only `connection_id` and `channel`,
//!   SSE webhook events without `id:` lines, heartbeats without `server_time`);
//! - messages without any v2 field: no `body_b64` / `raw_headers` (the connector forwards
//!   `payload` and the `headers` map), no `delivery_count` (no `X-Webhook-Delivery-Count`), no
//!   `channel` (the connector names its configured channel), credential headers masked;
//! - WebSocket authentication failure as HTTP 403, SSE / long-poll as 401; channels that exist
//!   only after their first webhook;
//! - WebSocket heartbeats every 30 s (scaled down here: every 1 s against a 3 s
//!   `heartbeat_timeout`, the same 1:2 ratio as 30 s against the default 60 s) and SSE
//!   heartbeats only while idle;
//! - NACK `retry=true` never redelivered to a connection that was already open;
//! - long-poll whose ACKs always answer 404: the connector must not poll it at all (§11.1:
//!   `auto` skips long-poll against v1); see `v1_honesty`;
//! - rotation that leaves open connections alone.
//!
//! The stand-in also records every client action v1 forbids or cannot parse (an `extend` frame
//! or `status=extend`, unknown frame types, malformed or binary frames); each test asserts there
//! were none.

use std::time::Duration;

use connect_engine::api::Transport;
use connect_engine::{Engine, EngineHandle, LinkState};
use connect_testkit::{HttpFilterProxy, RecordingTarget, V1Cloud, V1Options, V1Records, wait_for};
use serde_json::{Value, json};

use crate::harness::{T, connected, load_config, retries_elapse, status, stop, wait_status};
pub(crate) const TOKEN: &str = "v1-channel-token";

pub(crate) async fn v1() -> V1Cloud {
    V1Cloud::start(V1Options {
        heartbeat_interval: Duration::from_secs(1),
        ..V1Options::new("ch", TOKEN)
    })
    .await
    .unwrap()
}

/// An engine for channel `ch` with one attempt per delivery (a failure NACKs at once).
pub(crate) fn engine(
    cloud_url: &str,
    protocol: &str,
    target: &RecordingTarget,
    extra: Value,
) -> EngineHandle {
    let mut cfg = json!({
        "cloud_url": cloud_url, "channel": "ch", "protocol": protocol, "token": TOKEN,
        "reconnect_delay": 0.1, "max_reconnect_delay": 1.0, "heartbeat_timeout": 3,
        "connection_timeout": 5,
        "default_target": {"url": target.url, "retry_enabled": false},
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    if cfg.get("token_ref").is_some() {
        cfg.as_object_mut().unwrap().remove("token");
    }
    Engine::start(load_config(&cfg, &[])).unwrap()
}

pub(crate) async fn post(v1: &V1Cloud, body: &str, headers: &[(&str, &str)]) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhook/hook", v1.base))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"message": "200 OK"}));
}

pub(crate) async fn wait_v1(v1: &V1Cloud, what: &str, ok: impl Fn(&V1Records) -> bool) {
    let r = wait_for(T, what, || {
        let hit = ok(&v1.records()).then_some(());
        async move { hit }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}; v1 records: {:?}", v1.records());
    }
}

pub(crate) fn no_violations(v1: &V1Cloud) {
    let r = v1.records();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        r.nacked.iter().all(|n| !n.had_error_text),
        "NACK error texts are v2: {:?}",
        r.nacked
    );
}

// ---------------------------------------------------------------------------------------------
// Delivery and settlement over WebSocket and SSE.

/// Compact JSON whose bytes survive v1's parse-and-reserialize (key order and number text kept).
const BODY: &str = r#"{"event":"push","id":12345678901234567890,"price":10.50,"nested":{"b":1,"a":[true,null,"é"]}}"#;

async fn delivers_and_settles_as_v1_expects(
    protocol: &str,
    transport: Transport,
    via: &'static str,
) {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    // A v1 channel exists only once a webhook has arrived.
    post(
        &v1,
        BODY,
        &[
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            ("authorization", "Bearer sender-secret"),
            ("x-trace", "first"),
            ("x-trace", "last"),
        ],
    )
    .await;
    let h = engine(&v1.base, protocol, &target, json!({}));
    let first = connected(&h, transport).await;

    // Forwarded from `payload` and the `headers` map, the only body and headers v1 sends.
    let reqs = target.wait_for_count(1, T).await.unwrap();
    let r = &reqs[0];
    assert_eq!(r.body_text(), BODY);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-github-event"), Some("push"));
    assert_eq!(r.header("x-trace"), Some("last"), "v1 keeps the last value");
    assert_eq!(
        r.header("authorization"),
        None,
        "masked by v1: not forwarded"
    );
    assert_eq!(r.header("x-webhook-id"), Some("hook"));
    assert_eq!(r.header("x-webhook-channel"), Some("ch"));
    assert_eq!(r.header("x-webhook-attempt"), Some("1"));
    assert_eq!(
        r.header("x-webhook-delivery-count"),
        None,
        "v1 sends no delivery_count"
    );
    let first_id = r.header("x-webhook-message-id").unwrap().to_owned();
    assert!(first_id.starts_with("msg_"), "{first_id}");
    wait_v1(&v1, "the ACK", |r| {
        r.acked.contains(&(first_id.clone(), via))
    })
    .await;

    // Idle for longer than heartbeat_timeout: v1's heartbeats keep the link (WebSocket
    // heartbeats are echoed).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle = status(&h);
    assert_eq!(idle.state, LinkState::Connected, "{idle:?}");
    assert_eq!(
        idle.connection_attempts, first.connection_attempts,
        "{idle:?}"
    );
    if transport == Transport::Websocket {
        assert!(v1.records().client_heartbeats >= 2, "{:?}", v1.records());
    }

    // 500 → NACK retry=true: v1 never redelivers to the open connection.
    target.set_status(500);
    post(&v1, r#"{"n":2}"#, &[("content-type", "application/json")]).await;
    let reqs = target.wait_for_count(2, T).await.unwrap();
    let retry_id = reqs[1].header("x-webhook-message-id").unwrap().to_owned();
    wait_v1(&v1, "the NACK with retry", |r| {
        r.nacked.iter().any(|n| n.message_id == retry_id && n.retry)
    })
    .await;
    // 400 → NACK retry=false: v1 drops it.
    target.set_status(400);
    post(&v1, r#"{"n":3}"#, &[("content-type", "application/json")]).await;
    let reqs = target.wait_for_count(3, T).await.unwrap();
    let rejected_id = reqs[2].header("x-webhook-message-id").unwrap().to_owned();
    wait_v1(&v1, "the NACK without retry", |r| {
        r.dropped.contains(&rejected_id)
    })
    .await;
    // A later marker, queued behind both NACKed messages, is delivered and ACKed: v1 has
    // dispatched everything queued before it, and neither came back to this connection.
    target.set_status(200);
    post(
        &v1,
        r#"{"n":"marker"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    let marker_id = wait_for(T, "the marker at the target", || {
        let id = target
            .requests()
            .iter()
            .find(|r| r.body_text() == r#"{"n":"marker"}"#)
            .and_then(|r| r.header("x-webhook-message-id").map(str::to_owned));
        async move { id }
    })
    .await
    .unwrap();
    wait_v1(&v1, "the ACK of the marker", |r| {
        r.acked.iter().any(|(id, _)| *id == marker_id)
    })
    .await;
    let bodies: Vec<String> = target.requests().iter().map(|r| r.body_text()).collect();
    assert_eq!(
        bodies[1..],
        [r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":"marker"}"#],
        "redelivered to the connection that NACKed it"
    );

    // A new connection gets the NACKed message again.
    h.set_channel_enabled("ch", false).unwrap();
    wait_status(&h, "disconnected", |s| s.state == LinkState::Disconnected).await;
    h.set_channel_enabled("ch", true).unwrap();
    let reqs = target.wait_for_count(5, T).await.unwrap();
    assert_eq!(reqs[4].body_text(), r#"{"n":2}"#);
    assert_eq!(
        reqs[4].header("x-webhook-message-id"),
        Some(retry_id.as_str())
    );
    wait_v1(&v1, "the ACK of the redelivery", |r| {
        r.acked.iter().any(|(id, _)| *id == retry_id)
    })
    .await;
    assert_eq!(v1.queued() + v1.in_flight(), 0);
    let rec = v1.records();
    assert!(rec.nacked.iter().all(|n| n.via == via), "{:?}", rec.nacked);
    no_violations(&v1);
    stop(h).await;
}

#[tokio::test]
async fn websocket_against_v1_forwards_acks_and_nacks() {
    delivers_and_settles_as_v1_expects("websocket", Transport::Websocket, "frame").await;
}

#[tokio::test]
async fn sse_against_v1_forwards_acks_and_nacks() {
    delivers_and_settles_as_v1_expects("sse", Transport::Sse, "http").await;
}

/// Shutdown NACKs (`retry=true`, no v2 error text) what is still running after the grace, on
/// the connection that delivered it: a WebSocket frame, or `POST /connect/ack` while the SSE
/// stream is still open (a v1 cloud forgets a closed stream at once and would answer 404).
async fn shutdown_nacks_to_v1(protocol: &str, transport: Transport, via: &'static str) {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    target.set_delay(Duration::from_secs(60));
    post(
        &v1,
        r#"{"slow":1}"#,
        &[("content-type", "application/json")],
    )
    .await;
    let h = engine(&v1.base, protocol, &target, json!({}));
    connected(&h, transport).await;
    let reqs = target.wait_for_count(1, T).await.unwrap();
    let id = reqs[0].header("x-webhook-message-id").unwrap().to_owned();
    connect_testkit::within(T, "shutdown", h.shutdown(Duration::from_millis(500)))
        .await
        .unwrap();
    let rec = v1.records();
    assert!(
        rec.nacked
            .iter()
            .any(|n| n.message_id == id && n.retry && n.via == via),
        "{rec:?}"
    );
    assert!(
        rec.ack_requests.iter().all(|(_, code)| *code == 200),
        "{:?}",
        rec.ack_requests
    );
    assert_eq!(v1.queued(), 1, "handed back to the v1 cloud");
    no_violations(&v1);
}

#[tokio::test]
async fn websocket_shutdown_nacks_to_v1() {
    shutdown_nacks_to_v1("websocket", Transport::Websocket, "frame").await;
}

#[tokio::test]
async fn sse_shutdown_nacks_to_v1_before_closing_the_stream() {
    shutdown_nacks_to_v1("sse", Transport::Sse, "http").await;
}

/// A delivery that outlasts the lease-keeping interval (ack timeout 30 s / 3 when the server does
/// not announce one) sends no `extend` (frame or `status=extend`) to a v1 cloud.
#[tokio::test]
async fn a_long_delivery_never_extends_on_v1() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    target.set_delay(Duration::from_secs(11));
    post(
        &v1,
        r#"{"slow":1}"#,
        &[("content-type", "application/json")],
    )
    .await;
    let h = engine(
        &v1.base,
        "sse",
        &target,
        json!({"heartbeat_timeout": 20, "default_target": {"url": target.url, "timeout_seconds": 20}}),
    );
    connected(&h, Transport::Sse).await;
    let reqs = target.wait_for_count(1, T).await.unwrap();
    let id = reqs[0].header("x-webhook-message-id").unwrap().to_owned();
    wait_v1(&v1, "the ACK after 11 s", |r| {
        r.acked.contains(&(id.clone(), "http"))
    })
    .await;
    no_violations(&v1);
    stop(h).await;
}

// ---------------------------------------------------------------------------------------------
// Authentication failures: v1 answers the WebSocket upgrade 403, SSE and long-poll 401.

async fn bad_token_is_auth_failed_without_a_hot_loop(protocol: &str, status_code: u16) {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    post(&v1, r#"{"n":1}"#, &[]).await;
    let h = engine(&v1.base, protocol, &target, json!({"token": "wrong-token"}));
    let s = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&status_code.to_string())),
        "{s:?}"
    );
    // Retried slowly: one attempt per max_reconnect_delay (1 s ± 20 %).
    let before = v1.records().refused.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rec = v1.records();
    assert!(rec.refused.len() <= before + 4, "{:?}", rec.refused);
    assert!(
        rec.refused
            .iter()
            .all(|(p, code)| *p == protocol && *code == status_code),
        "{:?}",
        rec.refused
    );
    assert_eq!(status(&h).state, LinkState::AuthFailed);
    assert_eq!(target.count(), 0);
    stop(h).await;
}

#[tokio::test]
async fn websocket_403_from_v1_is_auth_failed_without_a_hot_loop() {
    bad_token_is_auth_failed_without_a_hot_loop("websocket", 403).await;
}

#[tokio::test]
async fn sse_401_from_v1_is_auth_failed_without_a_hot_loop() {
    bad_token_is_auth_failed_without_a_hot_loop("sse", 401).await;
}

/// Under `auto` a 403 on the upgrade may also be a proxy refusing WebSocket, so the engine tries
/// SSE, whose 401 settles it.
#[tokio::test]
async fn auto_with_a_bad_token_against_v1_ends_auth_failed_on_sse() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    post(&v1, r#"{"n":1}"#, &[]).await;
    let h = engine(&v1.base, "auto", &target, json!({"token": "wrong-token"}));
    let s = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    assert_eq!(s.transport, Some(Transport::Sse), "{s:?}");
    let rec = v1.records();
    assert!(
        rec.refused.contains(&("websocket", 403)),
        "{:?}",
        rec.refused
    );
    assert!(rec.refused.contains(&("sse", 401)), "{:?}", rec.refused);
    stop(h).await;
}

/// A v1 channel exists only after its first webhook: a connector started earlier is refused like
/// a bad token, retries slowly, and connects once the webhook has arrived.
#[tokio::test]
async fn a_connector_started_before_the_first_v1_webhook_connects_after_it() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    let h = engine(&v1.base, "websocket", &target, json!({}));
    wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    post(
        &v1,
        r#"{"first":true}"#,
        &[("content-type", "application/json")],
    )
    .await;
    connected(&h, Transport::Websocket).await;
    let reqs = target.wait_for_count(1, T).await.unwrap();
    assert_eq!(reqs[0].body_text(), r#"{"first":true}"#);
    no_violations(&v1);
    stop(h).await;
}

/// v1 rotation leaves the open connection alone; the next connection needs the new token, which
/// the engine re-reads from `token_ref` on the auth failure.
#[tokio::test]
async fn a_v1_rotation_is_picked_up_from_token_ref_on_the_next_connection() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    post(&v1, r#"{"n":1}"#, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let write = |t: &str| {
        std::fs::write(&file, t).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(TOKEN);
    let h = engine(
        &v1.base,
        "websocket",
        &target,
        json!({"token_ref": format!("file:{}", file.display())}),
    );
    let before = connected(&h, Transport::Websocket).await;
    target.wait_for_count(1, T).await.unwrap();
    let new = v1.rotate_token();
    retries_elapse(&h, 5).await;
    let same = status(&h);
    assert_eq!(
        same.connection_attempts, before.connection_attempts,
        "{same:?}"
    );
    h.set_channel_enabled("ch", false).unwrap();
    wait_status(&h, "disconnected", |s| s.state == LinkState::Disconnected).await;
    h.set_channel_enabled("ch", true).unwrap();
    wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    write(&new);
    let after = connected(&h, Transport::Websocket).await;
    assert_ne!(after.connection_id, before.connection_id);
    no_violations(&v1);
    stop(h).await;
}

/// `auto` against v1 behind a proxy that refuses WebSocket: SSE works and delivers.
#[tokio::test]
async fn auto_against_v1_falls_back_to_sse_past_a_websocket_blocking_proxy() {
    let v1 = v1().await;
    let target = RecordingTarget::start().await.unwrap();
    let proxy = HttpFilterProxy::start(v1.addr).await.unwrap();
    post(
        &v1,
        r#"{"via":"sse"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    let h = engine(&proxy.url, "auto", &target, json!({}));
    connected(&h, Transport::Sse).await;
    let reqs = target.wait_for_count(1, T).await.unwrap();
    assert_eq!(reqs[0].body_text(), r#"{"via":"sse"}"#);
    let id = reqs[0].header("x-webhook-message-id").unwrap().to_owned();
    wait_v1(&v1, "the ACK", |r| r.acked.contains(&(id.clone(), "http"))).await;
    no_violations(&v1);
    stop(h).await;
}
