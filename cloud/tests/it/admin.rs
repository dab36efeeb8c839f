//! Admin API edge cases (§8): authentication before lookups, validation, disconnects.

use axum::body::Body;
use axum::http::StatusCode;

use crate::support::{ADMIN, CHANNEL, TestApp, bearer, default_webhooks, get};

const BASE: &str = "/admin/webhook-connect";

#[tokio::test]
async fn authentication_is_decided_before_the_channel_lookup() {
    let app = TestApp::new().await;
    let uri = format!("{BASE}/channels/nope");
    let (status, _, body) = app
        .send(get(&uri).body(Body::empty()).expect("request"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Missing authorization header");
    let req = get(&uri)
        .header("authorization", bearer("wrong"))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Invalid admin token");
    let req = get(&uri)
        .header("authorization", bearer(ADMIN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "channel_not_found");
}

#[tokio::test]
async fn without_an_admin_token_the_api_is_forbidden() {
    let app = TestApp::with(default_webhooks(), |s| s.admin_token = None).await;
    let req = get(&format!("{BASE}/channels"))
        .header("authorization", bearer(ADMIN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "forbidden");
}

#[tokio::test]
async fn list_limits_are_validated() {
    let app = TestApp::new().await;
    let req = get(&format!("{BASE}/channels/{CHANNEL}/dead-letters?limit=0"))
        .header("authorization", bearer(ADMIN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"],
        "limit must be an integer between 1 and 1000"
    );
}

#[tokio::test]
async fn disconnecting_an_unknown_connection_is_a_404() {
    let app = TestApp::new().await;
    let req = axum::http::Request::builder()
        .method("DELETE")
        .uri(format!("{BASE}/channels/{CHANNEL}/connections/ws_nope"))
        .header("authorization", bearer(ADMIN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "connection_not_found");
}

#[tokio::test]
async fn the_reload_api_is_forbidden_without_its_token() {
    let app = TestApp::new().await;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/admin/reload-config")
        .header("authorization", bearer(ADMIN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("Configuration reload API disabled")),
        "{body}"
    );
}
