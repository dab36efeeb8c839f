//! Seed scenario 04 (advanced connector): admin API, long-poll, token rotation, queue
//! overflow, multi-channel with per-channel routing over WebSocket and SSE, retry delivery.

use std::time::Duration;

use connect_testkit::{RecordingTarget, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{TestConnector, Transport};
use connect_testkit::cloud::{Cloud, connect_hook};

const ALPHA: &str = "alpha-channel-token-0001";
const BETA: &str = "beta-channel-token-00002";

fn two_channels() -> Value {
    json!({
        "hook-alpha": connect_hook("channel-alpha", ALPHA, json!({})),
        "hook-beta": connect_hook("channel-beta", BETA, json!({})),
        "overflow": connect_hook("overflow", "overflow-channel-token", json!({"max_queue_size": 3})),
    })
}

#[tokio::test]
async fn admin_api() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    let (s, v) = cloud.admin(Method::GET, "/health").await?;
    assert_eq!((s, v["status"].as_str()), (200, Some("healthy")), "{v}");
    assert_eq!(v["backend"], "embedded");
    let (s, v) = cloud.admin(Method::GET, "/channels").await?;
    assert_eq!(s, 200);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["channel-alpha", "channel-beta", "overflow"],
        "ordered by name"
    );
    let (s, v) = cloud.admin(Method::GET, "/channels/channel-alpha").await?;
    assert_eq!((s, v["name"].as_str()), (200, Some("channel-alpha")), "{v}");
    assert_eq!(v["webhook_id"], "hook-alpha");
    assert!(v["config"]["token"]["source"] == "config", "{v}");
    let (s, v) = cloud
        .admin(Method::GET, "/channels/channel-alpha/stats")
        .await?;
    assert_eq!(s, 200);
    assert!(v.get("messages_queued").is_some(), "{v}");
    let (s, v) = cloud
        .admin(Method::GET, "/channels/channel-alpha/dead-letters")
        .await?;
    assert_eq!(
        (s, v["messages"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let (s, v) = cloud.admin(Method::GET, "/overview").await?;
    assert_eq!(s, 200);
    assert!(v["total_channels"].as_u64().unwrap() >= 2, "{v}");
    // Without a token: 401.
    let r = cloud
        .http
        .get(format!("{}/admin/webhook-connect/channels", cloud.base))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await?["detail"],
        "Missing authorization header"
    );
    let r = cloud
        .http
        .get(format!("{}/admin/webhook-connect/channels", cloud.base))
        .bearer_auth("wrong")
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let (s, _) = cloud.admin(Method::GET, "/channels/nope").await?;
    assert_eq!(s, 404);
    Ok(())
}

async fn poll(cloud: &Cloud, token: &str) -> anyhow::Result<(u16, Value)> {
    let r = cloud
        .http
        .get(format!(
            "{}/connect/stream/channel-alpha/poll?timeout=1",
            cloud.base
        ))
        .bearer_auth(token)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn long_poll_leases_until_ack() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    assert_eq!(poll(&cloud, ALPHA).await?.0, 204, "empty queue");
    let (s, posted) = cloud.post("hook-alpha", r#"{"hello":"poll"}"#).await?;
    assert_eq!(s, 200);
    let (s, v) = poll(&cloud, ALPHA).await?;
    assert_eq!(s, 200, "{v}");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["message_id"], posted["message_id"]);
    assert_eq!(msgs[0]["payload"], json!({"hello": "poll"}));
    // Still leased: a second poll does not return it again.
    assert_eq!(poll(&cloud, ALPHA).await?.0, 204);
    let s = cloud.stats("channel-alpha").await?;
    assert_eq!(s["messages_in_flight"], 1, "{s}");
    // ACK with the poll connection id settles it; a second ACK is 404.
    let ack = |id: String| {
        let url = format!(
            "{}/connect/ack?message_id={}",
            cloud.base,
            posted["message_id"].as_str().unwrap()
        );
        cloud
            .http
            .post(url)
            .bearer_auth(ALPHA)
            .header("x-connection-id", id)
            .send()
    };
    let conn = v["connection_id"].as_str().unwrap().to_owned();
    assert!(conn.starts_with("poll_"));
    assert_eq!(ack(conn.clone()).await?.status(), 200);
    assert_eq!(ack(conn).await?.status(), 404);
    let s = cloud.stats("channel-alpha").await?;
    assert_eq!(
        (
            s["messages_in_flight"].as_u64(),
            s["messages_acked"].as_u64()
        ),
        (Some(0), Some(1)),
        "{s}"
    );
    Ok(())
}

#[tokio::test]
async fn token_rotation_with_grace_and_revocation() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    let (s, v) = cloud
        .admin(Method::POST, "/channels/channel-alpha/rotate-token")
        .await?;
    assert_eq!(s, 200, "{v}");
    let new = v["new_token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("ch_tok_") && new.len() == 55, "{new}");
    assert!(
        matches!(poll(&cloud, ALPHA).await?.0, 200 | 204),
        "old token in grace"
    );
    assert!(
        matches!(poll(&cloud, &new).await?.0, 200 | 204),
        "new token"
    );
    assert_eq!(poll(&cloud, "wrong-token").await?.0, 401);
    // Rotation survives later webhooks and a restart (version 1 lost it on both).
    assert_eq!(cloud.post("hook-alpha", "{}").await?.0, 200);
    let mut cloud = cloud;
    cloud.restart().await?;
    assert!(
        matches!(poll(&cloud, &new).await?.0, 200 | 204),
        "new token after restart"
    );
    // A rotation with grace 0 revokes the previous token at once.
    let r = cloud
        .http
        .post(format!(
            "{}/admin/webhook-connect/channels/channel-alpha/rotate-token",
            cloud.base
        ))
        .bearer_auth(connect_testkit::cloud::ADMIN)
        .json(&json!({"grace_period_seconds": 0}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let newer = r.json::<Value>().await?["new_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(poll(&cloud, &new).await?.0, 401, "revoked");
    assert_eq!(
        poll(&cloud, ALPHA).await?.0,
        401,
        "configured token long replaced"
    );
    assert!(matches!(poll(&cloud, &newer).await?.0, 200 | 204));
    let r = cloud
        .http
        .post(format!(
            "{}/admin/webhook-connect/channels/channel-alpha/rotate-token",
            cloud.base
        ))
        .bearer_auth(connect_testkit::cloud::ADMIN)
        .json(&json!({"grace_period_seconds": -1}))
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    Ok(())
}

#[tokio::test]
async fn rotation_closes_old_token_websocket_with_4005() -> anyhow::Result<()> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let cloud = Cloud::start(two_channels()).await?;
    let mut req =
        format!("{}/connect/stream/channel-alpha", cloud.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {ALPHA}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let r = cloud
        .http
        .post(format!(
            "{}/admin/webhook-connect/channels/channel-alpha/rotate-token",
            cloud.base
        ))
        .bearer_auth(connect_testkit::cloud::ADMIN)
        .json(&json!({"grace_period_seconds": 1}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(Some(f)) = m {
                return Some(u16::from(f.code));
            }
        }
        None
    })
    .await?;
    assert_eq!(code, Some(4005));
    Ok(())
}

#[tokio::test]
async fn queue_overflow_is_refused_not_dropped() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    for _ in 0..3 {
        assert_eq!(cloud.post("overflow", "{}").await?.0, 200);
    }
    let mut refused = 0;
    for _ in 0..6 {
        let r = cloud
            .http
            .post(format!("{}/webhook/overflow", cloud.base))
            .body("{}")
            .send()
            .await?;
        if r.status() == 503 {
            refused += 1;
            assert!(r.headers().get("retry-after").is_some());
            assert_eq!(r.json::<Value>().await?["code"], "queue_full");
        }
    }
    assert_eq!(
        refused, 6,
        "every webhook over the limit gets 503, none is silently dropped"
    );
    let s = cloud.stats("overflow").await?;
    assert_eq!(
        (
            s["messages_queued"].as_u64(),
            s["messages_received"].as_u64()
        ),
        (Some(3), Some(3)),
        "{s}"
    );
    Ok(())
}

#[tokio::test]
async fn multi_channel_routing_over_sse_and_websocket() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    let (a, b) = (
        RecordingTarget::start().await?,
        RecordingTarget::start().await?,
    );
    assert_eq!(cloud.post("hook-alpha", r#"{"ch":"alpha"}"#).await?.0, 200);
    assert_eq!(cloud.post("hook-beta", r#"{"ch":"beta"}"#).await?.0, 200);
    let _sse = TestConnector::start(Transport::Sse, &cloud.base, "channel-alpha", ALPHA, &a.url);
    let _ws = TestConnector::start(Transport::Ws, &cloud.base, "channel-beta", BETA, &b.url);
    for _ in 0..5 {
        assert_eq!(cloud.post("hook-alpha", r#"{"ch":"alpha"}"#).await?.0, 200);
        assert_eq!(cloud.post("hook-beta", r#"{"ch":"beta"}"#).await?.0, 200);
    }
    let got_a = a.wait_for_count(6, Duration::from_secs(15)).await?;
    let got_b = b.wait_for_count(6, Duration::from_secs(15)).await?;
    assert!(got_a.iter().all(|r| r.body_text() == r#"{"ch":"alpha"}"#));
    assert!(got_b.iter().all(|r| r.body_text() == r#"{"ch":"beta"}"#));
    wait_until(
        Duration::from_secs(10),
        "both channels fully acked",
        || async {
            let sa = cloud.stats("channel-alpha").await.unwrap();
            let sb = cloud.stats("channel-beta").await.unwrap();
            sa["messages_acked"] == 6 && sb["messages_acked"] == 6
        },
    )
    .await?;
    let (_, detail) = cloud.admin(Method::GET, "/channels/channel-beta").await?;
    let conns = detail["connected_clients"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["protocol"], "websocket");
    assert_eq!(conns[0]["messages_acked"], 6);
    let (_, detail) = cloud.admin(Method::GET, "/channels/channel-alpha").await?;
    assert_eq!(detail["connected_clients"][0]["protocol"], "sse");
    Ok(())
}

#[tokio::test]
async fn retry_delivery_redelivers_to_an_already_connected_client() -> anyhow::Result<()> {
    let cloud = Cloud::start(two_channels()).await?;
    for i in 0..6 {
        assert_eq!(
            cloud
                .post("hook-alpha", &format!(r#"{{"n":{i}}}"#))
                .await?
                .0,
            200
        );
    }
    assert_eq!(cloud.stats("channel-alpha").await?["messages_queued"], 6);
    let target = RecordingTarget::start().await?;
    // The first two deliveries fail; the connector NACKs with retry, and the cloud redelivers
    // them after the backoff to the same, still connected client (version 1 never did).
    target.script(&[503, 503]);
    let conn = TestConnector::start(
        Transport::Ws,
        &cloud.base,
        "channel-alpha",
        ALPHA,
        &target.url,
    );
    wait_until(Duration::from_secs(20), "6 acked", || async {
        cloud.stats("channel-alpha").await.unwrap()["messages_acked"] == 6
    })
    .await?;
    assert_eq!(
        conn.connects.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no reconnect was needed"
    );
    let s = cloud.stats("channel-alpha").await?;
    assert_eq!(
        (s["messages_nacked"].as_u64(), s["dead_letters"].as_u64()),
        (Some(2), Some(0)),
        "{s}"
    );
    assert_eq!(target.count(), 8);
    Ok(())
}
