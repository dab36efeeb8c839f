//! The bad-input catalogue: every kind of bad input gets its documented answer, and nothing
//! that was accepted is lost.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "bad-input-channel-token";

async fn cloud() -> anyhow::Result<Cloud> {
    Cloud::start_with(
        json!({"hook": connect_hook("bad", TOKEN, json!({})), "blob": {"data_type": "blob", "module": "webhook_connect", "module-config": {"channel": "bad", "channel_token": TOKEN}}}),
        &[("WEBHOOK_CONNECT_MAX_BODY_BYTES", "1024"), ("WEBHOOK_CONNECT_BODY_READ_TIMEOUT_SECONDS", "1")],
    )
    .await
}

async fn detail(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ingress_rejects_bad_bodies_with_documented_answers() -> anyhow::Result<()> {
    let c = cloud().await?;
    let url = format!("{}/webhook/hook", c.base);
    // Oversized, declared.
    let (s, v) = detail(c.http.post(&url).body(vec![b'1'; 2000]).send().await?).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (413, Some("Payload too large: 2000 bytes (max: 1024)")),
        "{v}"
    );
    // The body was not read to its end, so the connection is not reused.
    let r = c.http.post(&url).body(vec![b'1'; 2000]).send().await?;
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // Oversized, chunked (no Content-Length).
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 500])));
    let (s, v) = detail(
        c.http
            .post(&url)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await?,
    )
    .await;
    assert_eq!(s, 413, "{v}");
    // Malformed and non-strict JSON.
    for bad in ["{", "[1,]", "NaN", ""] {
        let (s, v) = detail(c.http.post(&url).body(bad).send().await?).await;
        assert_eq!(
            (s, v["detail"].as_str()),
            (400, Some("Malformed JSON payload")),
            "{bad:?} → {v}"
        );
    }
    // Too deep.
    let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
    let (s, v) = detail(c.http.post(&url).body(deep).send().await?).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (400, Some("JSON too deeply nested: 59 levels (max: 50)")),
        "{v}"
    );
    // Bad charset.
    let (s, v) = detail(
        c.http
            .post(&url)
            .body(vec![b'"', 0xff, b'"'])
            .send()
            .await?,
    )
    .await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (400, Some("Invalid character encoding")),
        "{v}"
    );
    // Unknown webhook, bad id, wrong method.
    assert_eq!(
        detail(
            c.http
                .post(format!("{}/webhook/nope", c.base))
                .body("{}")
                .send()
                .await?
        )
        .await
        .0,
        404
    );
    let (s, v) = detail(
        c.http
            .post(format!("{}/webhook/a--b", c.base))
            .body("{}")
            .send()
            .await?,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let r = c.http.get(&url).send().await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Too many headers.
    let mut req = c.http.post(&url).body("{}");
    for i in 0..101 {
        req = req.header(format!("x-h-{i}"), "v");
    }
    let (s, v) = detail(req.send().await?).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Too many headers"),
        "{v}"
    );
    // A blob body is relayed even when it is not JSON.
    let (s, _) = detail(
        c.http
            .post(format!("{}/webhook/blob", c.base))
            .body(vec![0u8, 159, 146, 150])
            .send()
            .await?,
    )
    .await;
    assert_eq!(s, 200);
    // Nothing rejected was stored; the accepted blob and one valid JSON webhook are.
    assert_eq!(c.post("hook", r#"{"ok":true}"#).await?.0, 200);
    let st = c.stats("bad").await?;
    assert_eq!(st["messages_received"], 2, "{st}");
    Ok(())
}

#[tokio::test]
async fn slow_body_times_out_with_408() -> anyhow::Result<()> {
    let c = cloud().await?;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port)).await?;
    s.write_all(b"POST /webhook/hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("Request body timeout"), "{text}");
    Ok(())
}

#[tokio::test]
async fn connector_auth_failures_look_the_same() -> anyhow::Result<()> {
    let c = cloud().await?;
    let poll = |ch: &str, tok: Option<&str>| {
        let mut r = c
            .http
            .get(format!("{}/connect/stream/{ch}/poll?timeout=1", c.base));
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let (s, v) = detail(poll("bad", None).await?).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (401, Some("Missing authorization token"))
    );
    for (ch, tok) in [
        ("bad", "wrong"),
        ("unknown-channel", TOKEN),
        ("a:b", TOKEN),
        ("a*", TOKEN),
        ("a%3F", TOKEN),
        ("a%5B", TOKEN),
    ] {
        let (s, v) = detail(poll(ch, Some(tok)).await?).await;
        assert_eq!(
            (s, v["detail"].as_str()),
            (401, Some("Invalid channel token")),
            "{ch}"
        );
    }
    // A slash in the channel name is a different route: 404, never another channel.
    assert_eq!(poll("a/b", Some(TOKEN)).await?.status(), 404);
    // WebSocket: HTTP 401 before the upgrade (version 1 answered 403).
    let mut req = format!("{}/connect/stream/bad", c.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", "Bearer wrong".parse()?);
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    // Ack: token first, then inputs, then connection.
    let ack = c.http.post(format!(
        "{}/connect/ack?message_id=msg_0000000000000000",
        c.base
    ));
    assert_eq!(ack.try_clone().unwrap().send().await?.status(), 401);
    assert_eq!(
        ack.try_clone()
            .unwrap()
            .bearer_auth("wrong")
            .header("x-connection-id", "wsc_x")
            .send()
            .await?
            .status(),
        401
    );
    assert_eq!(
        ack.try_clone()
            .unwrap()
            .bearer_auth(TOKEN)
            .send()
            .await?
            .status(),
        422
    );
    let (s, v) = detail(
        ack.bearer_auth(TOKEN)
            .header("x-connection-id", "wsc_unknown")
            .send()
            .await?,
    )
    .await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (404, Some("Connection not found"))
    );
    Ok(())
}

#[tokio::test]
async fn malformed_websocket_frames_get_error_frames_and_the_connection_keeps_working()
-> anyhow::Result<()> {
    let c = cloud().await?;
    let mut req = format!("{}/connect/stream/bad", c.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert_eq!(resp.headers()["x-webhook-connect-version"], "2");
    let connected = next_json(&mut ws).await;
    assert_eq!(connected["type"], "connected");
    assert_eq!(connected["protocol_version"], 2);
    ws.send(Message::Text("not json".into())).await?;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("invalid_json")),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send(Message::Binary(vec![1, 2, 3].into())).await?;
    let e = next_json(&mut ws).await;
    assert_eq!(e["code"], "binary_frame");
    // An ACK for an unknown message is ignored without reply; the connection still works.
    ws.send(Message::Text(
        json!({"type": "ack", "message_id": "msg_ffffffffffffffff"})
            .to_string()
            .into(),
    ))
    .await?;
    let (s, posted) = c.post("hook", r#"{"still":"works"}"#).await?;
    assert_eq!(s, 200);
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["message_id"].as_str()),
        (Some("webhook"), posted["message_id"].as_str()),
        "{m}"
    );
    assert_eq!(m["delivery_count"], 1);
    ws.send(Message::Text(
        json!({"type": "ack", "message_id": m["message_id"]})
            .to_string()
            .into(),
    ))
    .await?;
    connect_testkit::wait_until(Duration::from_secs(5), "ack settles", || async {
        c.stats("bad").await.unwrap()["messages_acked"] == 1
    })
    .await?;
    let (_, dl) = c.admin(Method::GET, "/channels/bad/dead-letters").await?;
    assert_eq!(dl["total"], 0);
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON, skipping control frames and the cloud's heartbeats (one can
/// arrive at any moment: the test kit's cloud sends one every 5 s).
async fn next_json(ws: &mut Ws) -> Value {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v = serde_json::from_str::<Value>(t.as_str()).unwrap();
                    if v["type"] != "heartbeat" {
                        return v;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("stream ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("a frame within 10 s")
}
