//! Ingress edge cases (§2.3): the order of the checks and the answer of each.

use axum::body::Body;
use axum::http::StatusCode;

use crate::support::{CHANNEL, TestApp, get, post};

#[tokio::test]
async fn only_post_is_allowed_and_the_answer_says_so() {
    let app = TestApp::new().await;
    let (status, headers, body) = app
        .send(get("/webhook/hook").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn id_syntax_is_checked_before_the_lookup() {
    let app = TestApp::new().await;
    let (status, _, body) = app
        .send(
            post("/webhook/bad%20id")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_request");
    let (status, _, body) = app
        .send(
            post("/webhook/unknown")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "webhook_not_found");
    assert_eq!(body["detail"], "Webhook ID not found");
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_read() {
    let app = TestApp::with(crate::support::default_webhooks(), |s| {
        s.max_body_bytes = 16
    })
    .await;
    // The declared length decides before a byte is read (the body here is small).
    let req = post("/webhook/hook")
        .header("content-length", "1000000000")
        .body(Body::from("{}"))
        .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(
        body["detail"],
        "Payload too large: 1000000000 bytes (max: 16)"
    );
    assert_eq!(headers["connection"], "close");
}

#[tokio::test]
async fn malformed_json_is_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let req = post("/webhook/hook")
        .header("content-type", "application/json")
        .body(Body::from("{\"a\":"))
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "malformed_json");
    let stats = app.st.buffer().stats(CHANNEL).await.expect("stats");
    assert_eq!(stats.ready, 0);
}

#[tokio::test]
async fn an_accepted_webhook_is_stored_before_the_answer() {
    let app = TestApp::new().await;
    let req = post("/webhook/hook")
        .header("content-type", "application/json")
        .body(Body::from("{\"order\":42}"))
        .expect("request");
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "200 OK");
    assert!(body["message_id"].is_string());
    // Every answer carries the security headers; JSON ones are not cached.
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let stats = app.st.buffer().stats(CHANNEL).await.expect("stats");
    assert_eq!(stats.ready, 1);
}

#[tokio::test]
async fn unknown_paths_get_the_error_shape() {
    let app = TestApp::new().await;
    let (status, _, body) = app
        .send(get("/nowhere").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["detail"], "Not Found");
}
