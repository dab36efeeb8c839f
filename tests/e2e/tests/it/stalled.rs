//! A connector that stops reading (issue #13, finding 2): every send to it has a deadline
//! (`WEBHOOK_CONNECT_WRITE_TIMEOUT_SECONDS`), so an admin disconnect takes effect within it,
//! the connection's slot is given back and its leases are requeued. (Before: with 30 × 1 MB
//! messages queued to a WebSocket client that never read, the connection stayed
//! `disconnecting` for 70+ s and kept its `max_connections` slot; SSE the same.)

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "stalled-channel-token-00";
const MESSAGES: usize = 100;

/// A socket with a tiny receive buffer, so a client that does not read stalls the sender soon.
async fn small_socket(port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

async fn cloud_with_backlog() -> Cloud {
    let cloud = Cloud::builder(json!({"hook": connect_hook("stalled", TOKEN, json!({}))}))
        .envs(&[("WEBHOOK_CONNECT_WRITE_TIMEOUT_SECONDS", "1")])
        .start()
        .await
        .unwrap();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(64 * 1024));
    for _ in 0..MESSAGES {
        let (s, v) = cloud.post("hook", &body).await.unwrap();
        assert_eq!(s, 200, "{v}");
    }
    cloud
}

async fn connection_id(cloud: &Cloud) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = cloud.admin(Method::GET, "/channels/stalled").await.unwrap();
        if let Some(id) = v["connected_clients"][0]["connection_id"].as_str() {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the connector never showed up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Disconnects the stalled connector and waits for its slot and leases to come back.
async fn disconnect_takes_effect(cloud: &Cloud) {
    let id = connection_id(cloud).await;
    // Let the dispatcher lease the backlog to it and fill the socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = cloud
        .admin(
            Method::DELETE,
            &format!("/channels/stalled/connections/{id}"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let asked = Instant::now();
    connect_testkit::wait_until(
        Duration::from_secs(10),
        "the connection gone and its leases requeued",
        || async {
            let s: Value = cloud.stats("stalled").await.unwrap();
            s["connected_clients"] == 0 && s["messages_queued"] == MESSAGES as u64
        },
    )
    .await
    .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn a_websocket_client_that_never_reads_is_disconnected_within_the_write_deadline() {
    let cloud = cloud_with_backlog().await;
    let mut req = format!("{}/connect/stream/stalled", cloud.ws_base())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("x-webhook-connect-version", "2".parse().unwrap());
    let sock = small_socket(cloud.port).await;
    // Handshake, then never read again.
    let (_ws, _) = tokio_tungstenite::client_async(req, sock).await.unwrap();
    disconnect_takes_effect(&cloud).await;
}

#[tokio::test]
async fn an_sse_client_that_never_reads_is_disconnected_within_the_write_deadline() {
    let cloud = cloud_with_backlog().await;
    let mut sock = small_socket(cloud.port).await;
    sock.write_all(
        format!(
            "GET /connect/stream/stalled/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Webhook-Connect-Version: 2\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The response head, then never read again.
    let mut head = [0u8; 12];
    sock.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    disconnect_takes_effect(&cloud).await;
}
