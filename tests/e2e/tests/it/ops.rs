//! Operations: health, metrics, OpenAPI, dead-letter handling through the admin API, ack
//! timeouts, and graceful shutdown.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "ops-channel-token-0000";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(cloud: &Cloud, channel: &str) -> anyhow::Result<Ws> {
    let mut req = format!("{}/connect/stream/{channel}", cloud.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    req.headers_mut()
        .insert("x-webhook-connect-version", "2".parse()?);
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// The next frame of the given type (or a close frame, as `{"type":"close","code":…}`).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return json!({"type": "close", "code": f.map(|f| u16::from(f.code))});
                }
                Some(Ok(_)) => {}
                other => return json!({"type": "ended", "detail": format!("{other:?}")}),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .expect("a frame in time")
}

#[tokio::test]
async fn health_metrics_and_openapi() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({
        "ok": connect_hook("ops", TOKEN, json!({})),
        "broken": {"module": "webhook_connect", "module-config": {"channel": "ops2", "channel_token": "{$SURELY_UNSET_VARIABLE_X}"}},
    }))
    .await?;
    let r = cloud
        .http
        .get(format!("{}/health", cloud.base))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    for h in [
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(r.headers().get(h).is_some(), "{h}");
    }
    let v: Value = r.json().await?;
    assert_eq!(
        v["status"], "degraded",
        "a disabled entry degrades health: {v}"
    );
    assert_eq!(
        (
            v["webhooks_active"].as_u64(),
            v["webhooks_disabled"].as_u64()
        ),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["components"]["buffer_backend"], "embedded");
    // The broken entry answers 503 and never falls back; the good one serves.
    let (s, e) = cloud.post("broken", "{}").await?;
    assert_eq!(
        (s, e["detail"].as_str()),
        (503, Some("Webhook unavailable"))
    );
    assert_eq!(cloud.post("ok", "{}").await?.0, 200);
    let m = cloud
        .http
        .get(format!("{}/metrics", cloud.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        m.contains(
            "webhook_connect_ingress_requests_total{namespace=\"\",webhook=\"ok\",status=\"200\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("webhook_connect_channel_messages{channel=\"ops\",state=\"ready\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("webhook_connect_config_webhooks{state=\"disabled\"} 1"),
        "{m}"
    );
    let o: Value = cloud
        .http
        .get(format!("{}/openapi.json", cloud.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(o["openapi"], "3.1.0");
    assert!(o["paths"]["/connect/ack"].is_object());
    assert!(
        !o.to_string().contains("broken"),
        "no configured ids in the API description"
    );
    Ok(())
}

#[tokio::test]
async fn rejected_message_is_dead_lettered_and_replayable() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({"ok": connect_hook("ops", TOKEN, json!({}))})).await?;
    let mut ws = connect(&cloud, "ops").await?;
    next_of(&mut ws, "connected").await;
    let (_, posted) = cloud.post("ok", r#"{"dead":"letter"}"#).await?;
    let m = next_of(&mut ws, "webhook").await;
    ws.send(Message::Text(
        json!({"type": "nack", "message_id": m["message_id"], "retry": false, "error": "HTTP 404"})
            .to_string()
            .into(),
    ))
    .await?;
    connect_testkit::wait_until(Duration::from_secs(5), "dead letter", || async {
        cloud.stats("ops").await.unwrap()["dead_letters"] == 1
    })
    .await?;
    let m = cloud
        .http
        .get(format!("{}/metrics", cloud.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        m.contains("webhook_connect_dead_letters_total{channel=\"ops\",reason=\"rejected\"} 1"),
        "{m}"
    );
    let (_, list) = cloud
        .admin(Method::GET, "/channels/ops/dead-letters")
        .await?;
    let dl = &list["messages"][0];
    assert_eq!(
        (
            dl["message_id"].as_str(),
            dl["reason"].as_str(),
            dl["last_error"].as_str()
        ),
        (
            posted["message_id"].as_str(),
            Some("rejected"),
            Some("HTTP 404")
        ),
        "{list}"
    );
    assert_eq!(dl["delivery_count"], 1);
    let id = posted["message_id"].as_str().unwrap();
    let (s, one) = cloud
        .admin(Method::GET, &format!("/channels/ops/dead-letters/{id}"))
        .await?;
    assert_eq!(s, 200);
    assert!(
        one["body_b64"].is_string(),
        "single item carries the body: {one}"
    );
    let (s, _) = cloud
        .admin(
            Method::POST,
            &format!("/channels/ops/dead-letters/{id}/replay"),
        )
        .await?;
    assert_eq!(s, 200);
    let again = next_of(&mut ws, "webhook").await;
    assert_eq!(
        (
            again["message_id"].as_str(),
            again["delivery_count"].as_u64()
        ),
        (Some(id), Some(1)),
        "replay: same id, fresh attempt budget"
    );
    ws.send(Message::Text(
        json!({"type": "ack", "message_id": id}).to_string().into(),
    ))
    .await?;
    connect_testkit::wait_until(Duration::from_secs(5), "acked", || async {
        cloud.stats("ops").await.unwrap()["messages_acked"] == 1
    })
    .await?;
    let (s, _) = cloud
        .admin(Method::DELETE, &format!("/channels/ops/dead-letters/{id}"))
        .await?;
    assert_eq!(s, 404, "replayed letters are gone from the DLQ");
    Ok(())
}

#[tokio::test]
async fn unacked_message_is_redelivered_after_the_ack_timeout() -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"ok": connect_hook("ops", TOKEN, json!({"ack_timeout_seconds": 5}))}))
            .await?;
    let mut ws = connect(&cloud, "ops").await?;
    next_of(&mut ws, "connected").await;
    let (_, posted) = cloud.post("ok", "{}").await?;
    let first = next_of(&mut ws, "webhook").await;
    assert_eq!(first["delivery_count"], 1);
    // Never ACKed: after 5 s the lease expires and the same message comes again.
    let second = next_of(&mut ws, "webhook").await;
    assert_eq!(
        (
            second["message_id"].as_str(),
            second["delivery_count"].as_u64()
        ),
        (posted["message_id"].as_str(), Some(2))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_streams_with_1001_and_leases_survive() -> anyhow::Result<()> {
    let mut cloud = Cloud::start_with(
        json!({"ok": connect_hook("ops", TOKEN, json!({}))}),
        &[("WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS", "1")],
    )
    .await?;
    let mut ws = connect(&cloud, "ops").await?;
    next_of(&mut ws, "connected").await;
    let (_, posted) = cloud.post("ok", "{}").await?;
    next_of(&mut ws, "webhook").await;
    let code = tokio::task::block_in_place(|| cloud.proc.terminate(Duration::from_secs(10)));
    assert_eq!(
        code,
        Some(0),
        "clean exit; stderr:\n{}",
        cloud.proc.stderr_text()
    );
    let close = next_of(&mut ws, "close").await;
    assert_eq!(close["code"], 1001, "{close}");
    cloud.restart().await?;
    let mut ws = connect(&cloud, "ops").await?;
    let again = next_of(&mut ws, "webhook").await;
    assert_eq!(
        (
            again["message_id"].as_str(),
            again["delivery_count"].as_u64()
        ),
        (posted["message_id"].as_str(), Some(2))
    );
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_coming_under_continuous_traffic() -> anyhow::Result<()> {
    // The harness sets a 5 s heartbeat interval; version 1 suppressed heartbeats under traffic.
    let cloud = Cloud::start(json!({"ok": connect_hook("ops", TOKEN, json!({}))})).await?;
    let mut ws = connect(&cloud, "ops").await?;
    next_of(&mut ws, "connected").await;
    let base = cloud.base.clone();
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..150 {
            let _ = http
                .post(format!("{base}/webhook/ok"))
                .body("{}")
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut webhooks = 0;
    let beat = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "webhook" {
                        webhooks += 1;
                        ws.send(Message::Text(
                            json!({"type": "ack", "message_id": v["message_id"]})
                                .to_string()
                                .into(),
                        ))
                        .await
                        .unwrap();
                    } else if v["type"] == "heartbeat" {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await?;
    sender.abort();
    assert!(beat["server_time"].is_string(), "{beat}");
    assert!(
        webhooks > 10,
        "traffic was flowing ({webhooks} webhooks) when the heartbeat came"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    Ok(())
}

#[tokio::test]
async fn admin_disconnect_closes_with_4004_and_requeues_leases() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({"ok": connect_hook("ops", TOKEN, json!({}))})).await?;
    let mut ws = connect(&cloud, "ops").await?;
    let conn = next_of(&mut ws, "connected").await;
    let (_, posted) = cloud.post("ok", "{}").await?;
    next_of(&mut ws, "webhook").await;
    let id = conn["connection_id"].as_str().unwrap();
    let (s, v) = cloud
        .admin(Method::DELETE, &format!("/channels/ops/connections/{id}"))
        .await?;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("disconnected")),
        "{v}"
    );
    assert_eq!(next_of(&mut ws, "close").await["code"], 4004);
    connect_testkit::wait_until(Duration::from_secs(5), "lease requeued at once", || async {
        let s = cloud.stats("ops").await.unwrap();
        s["messages_queued"] == 1 && s["connected_clients"] == 0
    })
    .await?;
    let mut ws = connect(&cloud, "ops").await?;
    let again = next_of(&mut ws, "webhook").await;
    assert_eq!(
        (
            again["message_id"].as_str(),
            again["delivery_count"].as_u64()
        ),
        (posted["message_id"].as_str(), Some(2))
    );
    let (s, _) = cloud
        .admin(Method::DELETE, "/channels/ops/connections/wsc_unknown")
        .await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_per_transport() -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"ok": connect_hook("ops", TOKEN, json!({"max_connections": 1}))}))
            .await?;
    let mut first = connect(&cloud, "ops").await?;
    next_of(&mut first, "connected").await;
    let mut second = connect(&cloud, "ops").await?;
    assert_eq!(
        next_of(&mut second, "close").await["code"],
        4003,
        "WebSocket: accepted, then 4003"
    );
    let sse = cloud
        .http
        .get(format!("{}/connect/stream/ops/sse", cloud.base))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(sse.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(5), sse.text()).await??;
    assert!(
        text.contains("event: error") && text.contains("max_connections_reached"),
        "{text}"
    );
    let poll = cloud
        .http
        .get(format!("{}/connect/stream/ops/poll?timeout=1", cloud.base))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(poll.status(), 503);
    assert!(poll.headers().get("retry-after").is_some());
    assert_eq!(
        poll.json::<Value>().await?["detail"],
        "Max connections reached"
    );
    Ok(())
}
