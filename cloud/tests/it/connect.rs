//! Connector endpoints: `/connect/ack`, `/connect/status`, the poll stream's parameters.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::json;

use crate::support::{CHANNEL, TOKEN, TestApp, bearer, get, post};

#[tokio::test]
async fn a_malformed_escape_in_the_ack_query_is_a_400_not_a_panic() {
    let app = TestApp::new().await;
    // `%a` followed by the two bytes of `é`: the escape is cut inside a character.
    let req = post("/connect/ack?message_id=%a\u{e9}")
        .header("authorization", bearer(TOKEN))
        .header("x-connection-id", "ws_1")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_request");
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn a_malformed_escape_in_a_query_token_is_a_400_not_a_panic() {
    let app = TestApp::with(crate::support::default_webhooks(), |s| {
        s.allow_query_tokens = true;
    })
    .await;
    let req = get(&format!("/connect/status/{CHANNEL}?token=%a\u{e9}"))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_request");
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn query_tokens_are_percent_decoded_when_allowed() {
    let app = TestApp::with(
        json!({"hook": {"module": "webhook_connect",
            "module-config": {"channel": CHANNEL, "channel_token": "a b+c/d"}}}),
        |s| s.allow_query_tokens = true,
    )
    .await;
    let req = get(&format!("/connect/status/{CHANNEL}?token=a+b%2Bc%2Fd"))
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["channel"], CHANNEL);
    assert_eq!(body["connected"], false);
    assert_eq!(headers["x-webhook-connect-version"], "2");
}
