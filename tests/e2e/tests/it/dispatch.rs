//! Dispatch across connections, the in-flight limit, the admin queue views, and ingress
//! authentication through the real binary.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "dispatch-channel-token";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(cloud: &Cloud) -> anyhow::Result<Ws> {
    let mut req = format!("{}/connect/stream/work", cloud.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.as_str().contains("\"connected\"")
        {
            return Ok(ws);
        }
    }
}

/// The next `n` webhook frames (heartbeats and other frames skipped). Call it for frames the
/// cloud's counters say were sent: it waits for them, never for a quiet period.
async fn take(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "webhook" {
                    out.push(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("{} of {n} webhook frames, then {other:?}", out.len()),
        }
    }
    out
}

/// Waits until the channel's in-flight and queued counts are `(in_flight, queued)`: every
/// lease is a frame on its way, so the frames to read are known before reading them.
async fn settled(cloud: &Cloud, channel: &str, in_flight: u64, queued: u64) -> anyhow::Result<()> {
    connect_testkit::wait_until(
        Duration::from_secs(20),
        &format!("{in_flight} in flight and {queued} queued"),
        || async {
            cloud.stats(channel).await.is_ok_and(|s| {
                s["messages_in_flight"] == in_flight && s["messages_queued"] == queued
            })
        },
    )
    .await
}

/// Each connection's lease count (the admin channel view), sorted.
async fn leases(cloud: &Cloud, channel: &str) -> anyhow::Result<Vec<u64>> {
    let v = cloud.admin_get(&format!("/channels/{channel}")).await?;
    let mut n: Vec<u64> = v["connected_clients"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["in_flight_count"].as_u64().unwrap_or(u64::MAX))
        .collect();
    n.sort();
    Ok(n)
}

#[tokio::test]
async fn max_in_flight_bounds_each_connection_and_load_is_shared() -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"w": connect_hook("work", TOKEN, json!({"max_in_flight": 3}))}))
            .await?;
    let mut a = connect(&cloud).await?;
    let mut b = connect(&cloud).await?;
    for i in 0..10 {
        assert_eq!(cloud.post("w", &format!(r#"{{"i":{i}}}"#)).await?.0, 200);
    }
    // Neither connection ACKs: each holds at most 3, and both get work (no stickiness). The
    // cloud's counts say how many frames are on their way; exactly those are read.
    settled(&cloud, "work", 6, 4).await?;
    assert_eq!(leases(&cloud, "work").await?, [3, 3]);
    let got_a = take(&mut a, 3).await;
    let got_b = take(&mut b, 3).await;
    // Each ACK frees one slot on that connection and the next message follows.
    a.send(Message::Text(
        json!({"type": "ack", "message_id": got_a[0]["message_id"]})
            .to_string()
            .into(),
    ))
    .await?;
    connect_testkit::wait_until(Duration::from_secs(20), "the ACK settled", || async {
        cloud
            .stats("work")
            .await
            .is_ok_and(|s| s["messages_acked"] == 1)
    })
    .await?;
    settled(&cloud, "work", 6, 3).await?;
    assert_eq!(leases(&cloud, "work").await?, [3, 3]);
    let more = take(&mut a, 1).await;
    // Exclusive leases: no message went to both.
    let mut ids: Vec<&str> = got_a
        .iter()
        .chain(&got_b)
        .chain(&more)
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    Ok(())
}

#[tokio::test]
async fn admin_queue_views_and_bulk_dead_letter_operations() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({
        "w": connect_hook("work", TOKEN, json!({"max_delivery_attempts": 1})),
        "w2": connect_hook("work", TOKEN, json!({})),
    }))
    .await?;
    for _ in 0..3 {
        assert_eq!(cloud.post("w", "{}").await?.0, 200);
    }
    assert_eq!(cloud.post("w2", r#"{"second":"webhook"}"#).await?.0, 200);
    let (s, peek) = cloud
        .admin(
            Method::GET,
            "/channels/work/messages?limit=10&include_body=true",
        )
        .await?;
    assert_eq!((s, peek["count"].as_u64()), (200, Some(4)), "{peek}");
    assert!(peek["messages"][0]["body_b64"].is_string());
    assert_eq!(peek["messages"][0]["state"], "ready");
    let (_, again) = cloud.admin(Method::GET, "/channels/work/messages").await?;
    assert_eq!(again["count"], 4, "peek changes nothing");
    assert_eq!(
        cloud
            .admin(Method::GET, "/channels/work/messages?state=bogus")
            .await?
            .0,
        422
    );
    assert_eq!(
        cloud
            .admin(Method::GET, "/channels/work/dead-letters?limit=0")
            .await?
            .0,
        422
    );
    let (_, ws) = cloud
        .admin(Method::GET, "/channels/work/webhook-stats")
        .await?;
    assert_eq!(
        ws["webhooks"],
        json!({"w": {"pending": 3}, "w2": {"pending": 1}}),
        "{ws}"
    );
    // One delivery attempt each, never ACKed: the ack timeout cannot be waited for here, so
    // NACK with retry — with max_delivery_attempts = 1 they are dead-lettered.
    let mut c = connect(&cloud).await?;
    settled(&cloud, "work", 4, 0).await?;
    let got = take(&mut c, 4).await;
    for m in &got {
        c.send(Message::Text(
            json!({"type": "nack", "message_id": m["message_id"], "retry": true, "error": "boom"})
                .to_string()
                .into(),
        ))
        .await?;
    }
    connect_testkit::wait_until(Duration::from_secs(5), "4 dead letters", || async {
        cloud.stats("work").await.unwrap()["dead_letters"] == 4
    })
    .await?;
    let (_, dl) = cloud
        .admin(Method::GET, "/channels/work/dead-letters?limit=2")
        .await?;
    assert_eq!(
        (dl["count"].as_u64(), dl["total"].as_u64()),
        (Some(2), Some(4)),
        "{dl}"
    );
    assert_eq!(dl["messages"][0]["reason"], "max_delivery_attempts");
    assert_eq!(dl["messages"][0]["last_error"], "boom");
    drop(c);
    let (s, r) = cloud
        .admin(Method::POST, "/channels/work/dead-letters/replay?limit=3")
        .await?;
    assert_eq!(
        (s, r["replayed"].as_u64(), r["remaining"].as_u64()),
        (200, Some(3), Some(1)),
        "{r}"
    );
    assert_eq!(r["stopped"], Value::Null);
    let (s, p) = cloud
        .admin(Method::DELETE, "/channels/work/dead-letters")
        .await?;
    assert_eq!((s, p["deleted"].as_u64()), (200, Some(1)), "{p}");
    let st = cloud.stats("work").await?;
    assert_eq!(
        (st["messages_queued"].as_u64(), st["dead_letters"].as_u64()),
        (Some(3), Some(0)),
        "{st}"
    );
    Ok(())
}

#[tokio::test]
async fn ingress_authentication_and_rate_limit() -> anyhow::Result<()> {
    let secret = "gh-secret-for-tests";
    let mut gh = connect_hook("work", TOKEN, json!({}));
    gh["hmac"] = json!({"provider": "github", "secret": secret});
    gh["data_type"] = json!("blob");
    let mut limited = connect_hook("work", TOKEN, json!({}));
    limited["authorization"] = json!("Bearer sender-token");
    limited["rate_limit"] = json!({"max_requests": 2, "window_seconds": 60});
    let cloud = Cloud::start(json!({"gh": gh, "limited": limited})).await?;
    let body = b"{\"zen\": \"Keep it logically awesome.\" }\n";
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let post = |sig: &str| {
        cloud
            .http
            .post(format!("{}/webhook/gh", cloud.base))
            .header("x-hub-signature-256", sig)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(post("sha256=00").await?.status(), 401);
    assert_eq!(post(&sig).await?.status(), 200);
    // The stored bytes are exact: the signature can be verified again downstream.
    let (_, peek) = cloud
        .admin(Method::GET, "/channels/work/messages?include_body=true")
        .await?;
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(peek["messages"][0]["body_b64"].as_str().unwrap())?;
    assert_eq!(stored, body);
    // Rate limit counts authenticated requests only; unauthenticated ones get 401, not 429.
    let lim = |tok: &str| {
        cloud
            .http
            .post(format!("{}/webhook/limited", cloud.base))
            .header("authorization", tok.to_owned())
            .body("{}")
            .send()
    };
    for _ in 0..5 {
        assert_eq!(lim("Bearer wrong").await?.status(), 401);
    }
    assert_eq!(
        lim("bearer sender-token").await?.status(),
        200,
        "scheme is case-insensitive"
    );
    assert_eq!(lim("Bearer sender-token").await?.status(), 200);
    let r = lim("Bearer sender-token").await?;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry), "{retry}");
    Ok(())
}
