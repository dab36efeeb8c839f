//! Every error answer in the documented JSON shape (issue #13, finding 4), even where axum
//! answers before our handlers: extractor and body-limit rejections, the WebSocket handshake;
//! and connector endpoints carry `X-Webhook-Connect-Version` on their errors too.

use axum::body::Body;
use axum::http::StatusCode;

use crate::support::{ADMIN, CHANNEL, TOKEN, TestApp, bearer, get, post};

const BASE: &str = "/admin/webhook-connect";

fn assert_shape(body: &serde_json::Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_repeated_query_key_is_a_json_400() {
    let app = TestApp::new().await;
    let req = get(&format!(
        "{BASE}/channels/{CHANNEL}/dead-letters?limit=1&limit=2"
    ))
    .header("authorization", bearer(ADMIN))
    .body(Body::empty())
    .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/json");
    assert_shape(&body, "invalid_request");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn an_oversized_admin_body_is_a_json_413() {
    let app = TestApp::new().await;
    let req = post(&format!("{BASE}/channels/{CHANNEL}/rotate-token"))
        .header("authorization", bearer(ADMIN))
        .header("content-type", "application/json")
        .body(Body::from(vec![b' '; 3 * 1024 * 1024]))
        .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/json");
    assert_shape(&body, "payload_too_large");
}

#[tokio::test]
async fn a_websocket_request_without_the_upgrade_is_a_json_error_with_the_version() {
    let app = TestApp::new().await;
    let req = get(&format!("/connect/stream/{CHANNEL}"))
        .header("authorization", bearer(TOKEN))
        .header("x-webhook-connect-version", "2")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(headers["content-type"], "application/json");
    assert_shape(&body, "invalid_request");
    assert_eq!(headers["x-webhook-connect-version"], "2");
}

#[tokio::test]
async fn a_401_on_the_stream_endpoints_carries_the_protocol_version() {
    let app = TestApp::new().await;
    for path in [
        format!("/connect/stream/{CHANNEL}"),
        format!("/connect/stream/{CHANNEL}/sse"),
    ] {
        let req = get(&path)
            .header("authorization", bearer("wrong"))
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = app.send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(headers["x-webhook-connect-version"], "2", "{path}");
        // PROTOCOL fixes this body as version 1 had it: `detail` only.
        assert_eq!(body["detail"], "Invalid channel token", "{path}: {body}");
    }
}
