//! Connection health: half-open links and heartbeat_timeout (a frozen long-poll link), `auto`
//! falling back past a proxy that blocks WebSocket (and SSE), token revocation (4005, and the
//! long-poll equivalent: the poll connection ends and the next poll gets 401) with and without
//! `token_ref`, channel removal (4006), `https://` / `wss://` clouds behind a TLS-terminating
//! proxy, and `HTTPS_PROXY` / `NO_PROXY`.

use std::net::SocketAddr;
use std::time::Duration;

use connect_engine::api::Transport;
use connect_engine::{Engine, EngineHandle, LinkState};
use connect_testkit::{
    ConnectProxy, HttpFilterProxy, RecordingTarget, TcpProxy, TlsProxy, wait_for,
};
use serde_json::{Value, json};

use crate::harness::{
    ADMIN, Cloud, Logs, T, TOKEN, TokenFile, connected, load_config, retries_elapse, status, stop,
    wait_status,
};

const RELOAD_ADMIN: &str = "reload-admin-token-for-tests";

/// An engine for channel `ch`; `extra` is merged into the connector.json (a `token_ref` there
/// replaces the literal token).
fn engine(cloud_url: &str, protocol: &str, target: &RecordingTarget, extra: Value) -> EngineHandle {
    engine_with_env(cloud_url, protocol, target, extra, &[])
}

/// [`engine`] with an injected environment (as the CLI passes the process's).
fn engine_with_env(
    cloud_url: &str,
    protocol: &str,
    target: &RecordingTarget,
    extra: Value,
    env: &[(&str, &str)],
) -> EngineHandle {
    Engine::start(load_config(
        &channel_json(cloud_url, protocol, target, extra),
        env,
    ))
    .unwrap()
}

/// The channel configuration [`engine`] would start with, for `add_channel`.
fn channel_config(
    cloud_url: &str,
    protocol: &str,
    target: &RecordingTarget,
    extra: Value,
) -> connect_engine::config::ChannelConfig {
    load_config(&channel_json(cloud_url, protocol, target, extra), &[])
        .channels
        .remove(0)
}

/// The connector.json of [`engine`]: channel `ch`, quick reconnects, `extra` merged in.
fn channel_json(cloud_url: &str, protocol: &str, target: &RecordingTarget, extra: Value) -> Value {
    let mut cfg = json!({
        "cloud_url": cloud_url, "channel": "ch", "protocol": protocol,
        "reconnect_delay": 0.1, "max_reconnect_delay": 1.0, "heartbeat_timeout": 20,
        "connection_timeout": 5, "default_target": {"url": target.url},
    });
    let extra = extra.as_object().cloned().unwrap_or_default();
    if !extra.contains_key("token_ref") {
        cfg["token"] = json!(TOKEN);
    }
    for (k, v) in extra {
        cfg[k] = v;
    }
    cfg
}

fn cloud_addr(cloud: &Cloud) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cloud.port))
}

/// Posts one webhook and waits for the target to get it.
async fn delivers(cloud: &Cloud, target: &RecordingTarget, tag: &str) {
    let body = format!("{{\"tag\":\"{tag}\"}}");
    cloud.post(&body).await.unwrap();
    let reqs = target.wait_for_count(1, T).await.unwrap();
    assert!(
        reqs.iter().any(|r| r.body_text() == body),
        "{tag}: {:?}",
        reqs.iter().map(|r| r.body_text()).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Half-open link: bytes stop flowing but no connection closes.

async fn half_open_link_is_detected(protocol: &str, transport: Transport) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = TcpProxy::start(cloud_addr(&cloud)).await.unwrap();
    // The cloud sends a heartbeat every 5 s (the smallest it allows): 6 s of silence is a dead link.
    let h = engine(
        &format!("http://127.0.0.1:{}", proxy.port),
        protocol,
        &target,
        json!({"heartbeat_timeout": 6, "connection_timeout": 2}),
    );
    let before = connected(&h, transport).await;
    proxy.freeze();
    let during = wait_status(&h, "reconnect attempts on the frozen link", |s| {
        s.connection_attempts >= before.connection_attempts + 2
            && matches!(s.state, LinkState::Connecting | LinkState::Degraded)
    })
    .await;
    assert!(
        during
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("heartbeat timeout") || e.contains("timeout")),
        "{during:?}"
    );
    assert!(
        proxy.connections() > 0,
        "the frozen proxy closed every link"
    );
    proxy.thaw();
    let after = connected(&h, transport).await;
    assert_ne!(after.connection_id, before.connection_id);
    delivers(&cloud, &target, "after-thaw").await;
    stop(h).await;
}

#[tokio::test]
async fn websocket_reconnects_after_a_half_open_link() {
    half_open_link_is_detected("websocket", Transport::Websocket).await;
}

#[tokio::test]
async fn sse_reconnects_after_a_half_open_link() {
    half_open_link_is_detected("sse", Transport::Sse).await;
}

/// Long-poll has no heartbeats: a frozen link shows as a poll that gets no answer within its
/// `timeout` + 5 s. The poll answer that was in the frozen link is lost, so its message stays
/// leased at the cloud until the ack timeout and then comes again (at-least-once): every copy
/// the target gets must be a separate cloud delivery (distinct `X-Webhook-Delivery-Count`), and
/// every message posted before, during and after the freeze arrives.
#[tokio::test]
async fn long_poll_recovers_after_a_frozen_link() {
    let cloud = Cloud::start_configured("ch", json!({"ack_timeout_seconds": 5}), &[])
        .await
        .unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = TcpProxy::start(cloud_addr(&cloud)).await.unwrap();
    // Polls wait 3 s at the cloud, so an answer is overdue after 8 s.
    let h = engine(
        &format!("http://127.0.0.1:{}", proxy.port),
        "long_poll",
        &target,
        json!({"heartbeat_timeout": 3, "connection_timeout": 2}),
    );
    let before = connected(&h, Transport::LongPoll).await;
    delivers(&cloud, &target, "before-freeze").await;
    proxy.freeze();
    // The pending poll takes this one; its answer is held in the frozen link.
    cloud.post(r#"{"tag":"during-freeze"}"#).await.unwrap();
    let during = wait_status(&h, "the poll timing out on the frozen link", |s| {
        s.connection_attempts > before.connection_attempts
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("poll timeout"))
    })
    .await;
    assert!(
        matches!(during.state, LinkState::Connecting | LinkState::Degraded),
        "{during:?}"
    );
    assert_eq!(
        target.count(),
        1,
        "nothing can arrive through the frozen link"
    );
    proxy.thaw();
    connected(&h, Transport::LongPoll).await;
    cloud.post(r#"{"tag":"after-thaw"}"#).await.unwrap();
    let want = ["before-freeze", "during-freeze", "after-thaw"];
    let reqs = wait_for(T, "every message after the thaw", || {
        let reqs = target.requests();
        let all = want
            .iter()
            .all(|w| reqs.iter().any(|r| r.body_text().contains(w)));
        async move { all.then_some(reqs) }
    })
    .await
    .unwrap();
    let mut copies: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in &reqs {
        copies
            .entry(
                r.header("x-webhook-message-id")
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default()
            .push(
                r.header("x-webhook-delivery-count")
                    .unwrap_or_default()
                    .to_owned(),
            );
    }
    assert_eq!(copies.len(), 3, "{copies:?}");
    for (id, counts) in &copies {
        let distinct: std::collections::BTreeSet<_> = counts.iter().collect();
        assert_eq!(
            distinct.len(),
            counts.len(),
            "{id}: the connector forwarded one cloud delivery twice: {copies:?}"
        );
    }
    // Everything settled at the cloud: nothing left to redeliver.
    wait_for(T, "the cloud to settle everything", || {
        let c = &cloud;
        async move {
            let st = c.admin_get("/channels/ch/stats").await.ok()?;
            (st["messages_queued"] == 0 && st["messages_in_flight"] == 0).then_some(())
        }
    })
    .await
    .unwrap();
    stop(h).await;
}

// ---------------------------------------------------------------------------------------------
// 2. `auto` behind a proxy that refuses WebSocket upgrades (403), and SSE too.

#[tokio::test]
async fn auto_falls_back_to_sse_when_a_proxy_refuses_websocket() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = HttpFilterProxy::start(cloud_addr(&cloud)).await.unwrap();
    let h = engine(&proxy.url, "auto", &target, json!({}));
    let s = connected(&h, Transport::Sse).await;
    assert!(proxy.refused() >= 3, "{}", proxy.refused());
    assert!(s.connection_id.is_some(), "{s:?}");
    delivers(&cloud, &target, "over-sse").await;
    assert_eq!(status(&h).transport, Some(Transport::Sse));
    stop(h).await;
}

#[tokio::test]
async fn auto_falls_back_to_long_poll_when_sse_is_refused_too() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = HttpFilterProxy::start(cloud_addr(&cloud)).await.unwrap();
    proxy.refuse_path_suffix("/sse");
    let h = engine(&proxy.url, "auto", &target, json!({}));
    connected(&h, Transport::LongPoll).await;
    assert!(proxy.refused() >= 6, "{}", proxy.refused());
    delivers(&cloud, &target, "over-long-poll").await;
    assert_eq!(status(&h).transport, Some(Transport::LongPoll));
    stop(h).await;
}

#[tokio::test]
async fn a_bad_token_behind_the_blocking_proxy_still_ends_in_auth_failed() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = HttpFilterProxy::start(cloud_addr(&cloud)).await.unwrap();
    let h = engine(&proxy.url, "auto", &target, json!({"token": "wrong-token"}));
    let s = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    assert_eq!(s.transport, Some(Transport::Sse), "{s:?}");
    stop(h).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Token rotation: at the end of the grace the old-token link gets 4005.

async fn rotate(cloud: &Cloud, grace_seconds: u64) -> String {
    let r = cloud
        .http
        .post(format!(
            "{}/admin/webhook-connect/channels/ch/rotate-token",
            cloud.base
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"grace_period_seconds": grace_seconds}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["new_token"].as_str().unwrap().to_owned()
}

async fn revoked_token_is_reloaded_from_token_ref(protocol: &str, transport: Transport) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let file = TokenFile::new(TOKEN);
    let h = engine(&cloud.base, protocol, &target, file.token_ref());
    let before = connected(&h, transport).await;
    let new = rotate(&cloud, 2).await;
    file.write(&new);
    let after = wait_status(&h, "a new connection with the new token", |s| {
        s.state == LinkState::Connected
            && s.connection_id.is_some()
            && s.connection_id != before.connection_id
    })
    .await;
    assert!(
        after.connection_attempts <= before.connection_attempts + 2,
        "{after:?}"
    );
    delivers(&cloud, &target, "new-token").await;
    assert_ne!(status(&h).state, LinkState::AuthFailed);
    stop(h).await;
}

#[tokio::test]
async fn websocket_4005_reloads_the_token_from_token_ref() {
    revoked_token_is_reloaded_from_token_ref("websocket", Transport::Websocket).await;
}

#[tokio::test]
async fn sse_token_revoked_reloads_the_token_from_token_ref() {
    revoked_token_is_reloaded_from_token_ref("sse", Transport::Sse).await;
}

/// A rotation reaches a poll connection at the end of the grace: the connection ends (its pending
/// poll answers 204) and the next poll with the old token gets 401. `token_ref` is re-read on the
/// spot and already holds the new token, so the channel switches without being auth-failed.
#[tokio::test]
async fn long_poll_switches_to_the_token_reloaded_after_a_rotation() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let file = TokenFile::new(TOKEN);
    let h = engine(&cloud.base, "long_poll", &target, file.token_ref());
    let before = connected(&h, Transport::LongPoll).await;
    let new = rotate(&cloud, 1).await;
    file.write(&new);
    let s = wait_status(&h, "the 401 that makes it re-read token_ref", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("reloaded the token"))
    })
    .await;
    assert_ne!(s.state, LinkState::AuthFailed, "{s:?}");
    connected(&h, Transport::LongPoll).await;
    delivers(&cloud, &target, "new-token").await;
    let after = status(&h);
    assert!(
        after.connection_attempts <= before.connection_attempts + 2,
        "{after:?}"
    );
    stop(h).await;
}

/// The same rotation while `token_ref` still holds the old token: auth-failed, retried slowly
/// (`max_reconnect_delay`), and connected again once the new token is in `token_ref`.
#[tokio::test]
async fn long_poll_rotated_token_is_auth_failed_until_token_ref_has_the_new_one() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let file = TokenFile::new(TOKEN);
    let h = engine(&cloud.base, "long_poll", &target, file.token_ref());
    connected(&h, Transport::LongPoll).await;
    let new = rotate(&cloud, 1).await;
    let failed = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{failed:?}"
    );
    // No hot loop: one attempt per max_reconnect_delay (1 s ± 20 %).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = status(&h);
    assert_eq!(later.state, LinkState::AuthFailed, "{later:?}");
    assert!(
        later.connection_attempts <= failed.connection_attempts + 4,
        "{failed:?} then {later:?}"
    );
    file.write(&new);
    connected(&h, Transport::LongPoll).await;
    delivers(&cloud, &target, "token-given").await;
    stop(h).await;
}

/// Without `token_ref` the new token comes from whoever runs the engine (the desktop app, a
/// control client): replacing the channel's configuration reconnects it with that token.
#[tokio::test]
async fn long_poll_rotated_token_recovers_when_the_channel_gets_the_new_token() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let h = engine(&cloud.base, "long_poll", &target, json!({}));
    connected(&h, Transport::LongPoll).await;
    let new = rotate(&cloud, 1).await;
    wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    let cfg = channel_config(&cloud.base, "long_poll", &target, json!({"token": new}));
    h.add_channel(cfg).unwrap();
    connected(&h, Transport::LongPoll).await;
    delivers(&cloud, &target, "new-config").await;
    stop(h).await;
}

#[tokio::test]
async fn websocket_4005_without_token_ref_stops_the_channel() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let h = engine(&cloud.base, "websocket", &target, json!({}));
    let before = connected(&h, Transport::Websocket).await;
    rotate(&cloud, 1).await;
    let s = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    let err = s.last_error.clone().unwrap_or_default();
    assert!(err.contains("token revoked"), "{s:?}");
    // No hot loop: the channel stays down and does not retry with the revoked token, while
    // the engine retries an unreachable channel five times.
    retries_elapse(&h, 5).await;
    let later = status(&h);
    assert_eq!(later.state, LinkState::AuthFailed, "{later:?}");
    assert_eq!(
        later.connection_attempts, before.connection_attempts,
        "{later:?}"
    );
    stop(h).await;
}

/// A 4005 while `token_ref` still holds the revoked token: the channel never reconnects with it
/// (auth-failed, no connection attempts) and switches over once `token_ref` holds the new token
/// (a rotated token typed in after the close, CONFIG.md §8.2).
#[tokio::test]
async fn websocket_4005_waits_for_a_new_token_in_token_ref() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let file = TokenFile::new(TOKEN);
    let h = engine(&cloud.base, "websocket", &target, file.token_ref());
    let before = connected(&h, Transport::Websocket).await;
    let new = rotate(&cloud, 1).await;
    let s = wait_status(&h, "auth_failed", |s| s.state == LinkState::AuthFailed).await;
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("waiting for a new token")),
        "{s:?}"
    );
    retries_elapse(&h, 5).await;
    let waiting = status(&h);
    assert_eq!(waiting.state, LinkState::AuthFailed, "{waiting:?}");
    assert_eq!(
        waiting.connection_attempts, before.connection_attempts,
        "{waiting:?}"
    );
    file.write(&new);
    let after = connected(&h, Transport::Websocket).await;
    assert_eq!(
        after.connection_attempts,
        before.connection_attempts + 1,
        "{after:?}"
    );
    delivers(&cloud, &target, "typed-in-token").await;
    stop(h).await;
}

#[tokio::test]
async fn a_401_after_a_rotation_rereads_token_ref() {
    // The link is down when the grace ends, so no 4005 ever arrives: the reconnect gets 401.
    let logs = Logs::capture();
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let proxy = TcpProxy::start(cloud_addr(&cloud)).await.unwrap();
    let file = TokenFile::new(TOKEN);
    let h = engine(
        &format!("http://127.0.0.1:{}", proxy.port),
        "websocket",
        &target,
        file.token_ref(),
    );
    connected(&h, Transport::Websocket).await;
    proxy.cut();
    let new = rotate(&cloud, 0).await;
    file.write(&new);
    proxy.restore();
    // The 401 happened (the status shows it for only ~100 ms before the reconnect clears it).
    logs.wait_line(
        T,
        "the 401 that made it re-read token_ref",
        &["token rejected; reloaded it from token_ref", "401"],
    )
    .await;
    let after = connected(&h, Transport::Websocket).await;
    assert_ne!(after.state, LinkState::AuthFailed, "{after:?}");
    delivers(&cloud, &target, "after-401").await;
    stop(h).await;
}

// ---------------------------------------------------------------------------------------------
// 4. The channel is removed from the cloud's configuration (orphan policy `delete`): 4006.

async fn removed_channel_stops(protocol: &str, transport: Transport) {
    let cloud = Cloud::start_with(
        "ch",
        &[
            ("WEBHOOK_CONNECT_ORPHAN_CHANNEL_POLICY", "delete"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_ADMIN),
        ],
    )
    .await
    .unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let h = engine(&cloud.base, protocol, &target, json!({}));
    let before = connected(&h, transport).await;
    let mc = json!({"channel": "other", "channel_token": "other-token"});
    let webhooks = json!({"otherhook": {"data_type": "json", "module": "webhook_connect", "module-config": mc}});
    std::fs::write(
        cloud.dir.path().join("webhooks.json"),
        serde_json::to_vec_pretty(&webhooks).unwrap(),
    )
    .unwrap();
    let r = cloud
        .http
        .post(format!("{}/admin/reload-config", cloud.base))
        .bearer_auth(RELOAD_ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let code = r.status();
    assert!(
        code.is_success(),
        "{code}: {}",
        r.text().await.unwrap_or_default()
    );
    let s = wait_status(&h, "stopped", |s| s.state == LinkState::Stopped).await;
    let err = s.last_error.clone().unwrap_or_default();
    assert!(err.contains("channel removed"), "{s:?}");
    retries_elapse(&h, 5).await;
    let later = status(&h);
    assert_eq!(later.state, LinkState::Stopped, "{later:?}");
    assert_eq!(
        later.connection_attempts, before.connection_attempts,
        "{later:?}"
    );
    stop(h).await;
}

#[tokio::test]
async fn websocket_4006_channel_removed_stops_the_channel() {
    removed_channel_stops("websocket", Transport::Websocket).await;
}

#[tokio::test]
async fn sse_channel_removed_stops_the_channel() {
    removed_channel_stops("sse", Transport::Sse).await;
}

// ---------------------------------------------------------------------------------------------
// 5. https:// and wss:// behind a TLS-terminating proxy with a self-signed certificate.

async fn delivers_over_tls(protocol: &str, transport: Transport) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let tls = TlsProxy::start(cloud_addr(&cloud)).await.unwrap();
    let h = engine(
        &tls.url,
        protocol,
        &target,
        json!({"ca_cert_path": tls.ca_path}),
    );
    connected(&h, transport).await;
    delivers(&cloud, &target, "over-tls").await;
    stop(h).await;
}

#[tokio::test]
async fn wss_delivers_with_a_private_ca() {
    delivers_over_tls("websocket", Transport::Websocket).await;
}

#[tokio::test]
async fn https_sse_delivers_with_a_private_ca() {
    delivers_over_tls("sse", Transport::Sse).await;
}

#[tokio::test]
async fn wss_with_verify_ssl_false_accepts_a_self_signed_certificate() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let tls = TlsProxy::start(cloud_addr(&cloud)).await.unwrap();
    let h = engine(&tls.url, "websocket", &target, json!({"verify_ssl": false}));
    connected(&h, Transport::Websocket).await;
    delivers(&cloud, &target, "unverified").await;
    stop(h).await;
}

async fn untrusted_certificate_is_reported(protocol: &str) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let tls = TlsProxy::start(cloud_addr(&cloud)).await.unwrap();
    let h = engine(&tls.url, protocol, &target, json!({}));
    let s = wait_status(&h, "a TLS error", |s| {
        s.connection_attempts >= 2 && s.last_error.is_some()
    })
    .await;
    assert!(
        matches!(s.state, LinkState::Connecting | LinkState::Degraded),
        "{s:?}"
    );
    let err = s.last_error.clone().unwrap_or_default();
    assert!(err.to_lowercase().contains("certificate"), "{s:?}");
    assert!(s.connection_id.is_none(), "{s:?}");
    stop(h).await;
}

#[tokio::test]
async fn wss_without_the_ca_fails_with_a_certificate_error() {
    untrusted_certificate_is_reported("websocket").await;
}

#[tokio::test]
async fn https_sse_without_the_ca_fails_with_a_certificate_error() {
    untrusted_certificate_is_reported("sse").await;
}

// ---------------------------------------------------------------------------------------------
// 6. HTTPS_PROXY (from the injected environment): every transport tunnels through it.

async fn delivers_through_https_proxy(protocol: &str, transport: Transport) {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let tls = TlsProxy::start(cloud_addr(&cloud)).await.unwrap();
    let proxy = ConnectProxy::start().await.unwrap();
    let h = engine_with_env(
        &tls.url,
        protocol,
        &target,
        json!({"ca_cert_path": tls.ca_path}),
        &[("HTTPS_PROXY", &proxy.url)],
    );
    connected(&h, transport).await;
    delivers(&cloud, &target, "through-proxy").await;
    let tunnels = proxy.tunnels();
    let want = format!("127.0.0.1:{}", tls.port);
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == want),
        "{tunnels:?}"
    );
    stop(h).await;
}

#[tokio::test]
async fn wss_goes_through_https_proxy() {
    delivers_through_https_proxy("websocket", Transport::Websocket).await;
}

#[tokio::test]
async fn sse_goes_through_https_proxy() {
    delivers_through_https_proxy("sse", Transport::Sse).await;
}

#[tokio::test]
async fn no_proxy_bypasses_https_proxy() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let tls = TlsProxy::start(cloud_addr(&cloud)).await.unwrap();
    let proxy = ConnectProxy::start().await.unwrap();
    let h = engine_with_env(
        &tls.url,
        "websocket",
        &target,
        json!({"ca_cert_path": tls.ca_path}),
        &[
            ("HTTPS_PROXY", &proxy.url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    connected(&h, Transport::Websocket).await;
    delivers(&cloud, &target, "direct").await;
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
    stop(h).await;
}
