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

#[tokio::test]
async fn ack_checks_the_token_before_anything_about_connections() {
    let app = TestApp::new().await;
    let ack = |auth: Option<&str>, query: &str| {
        let mut b = post(&format!("/connect/ack{query}")).header("x-connection-id", "lp_nope");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).expect("request")
    };
    let (status, _, body) = app.send(ack(None, "?message_id=m")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Missing authorization token");
    let (status, _, body) = app.send(ack(Some("Bearer wrong"), "?message_id=m")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Invalid token");
    let (status, _, body) = app.send(ack(Some(&bearer(TOKEN)), "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"], "message_id is required");
    let (status, _, body) = app.send(ack(Some(&bearer(TOKEN)), "?message_id=m")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "connection_not_found");
}

#[tokio::test]
async fn a_wrong_token_and_an_unknown_channel_answer_the_same() {
    let app = TestApp::new().await;
    let status_of = |channel: &str, token: &str| {
        get(&format!("/connect/status/{channel}"))
            .header("authorization", bearer(token))
            .body(Body::empty())
            .expect("request")
    };
    let wrong = app.send(status_of(CHANNEL, "wrong")).await;
    let unknown = app.send(status_of("nope", TOKEN)).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.0, unknown.0);
    assert_eq!(wrong.2, unknown.2);
    assert_eq!(wrong.2, json!({"detail": "Invalid channel token"}));
}

#[tokio::test]
async fn poll_parameters_are_validated() {
    let app = TestApp::new().await;
    let req = get(&format!("/connect/stream/{CHANNEL}/poll?timeout=0"))
        .header("authorization", bearer(TOKEN))
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"],
        "timeout must be an integer between 1 and 60"
    );
}

/// Posts `{"n":1}` to the default webhook; its message id.
async fn post_one(app: &TestApp) -> String {
    let (status, _, accepted) = app
        .send(
            post("/webhook/hook")
                .header("content-type", "application/json")
                .body(Body::from("{\"n\":1}"))
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    accepted["message_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_polled_message_is_in_flight_until_acked_once() {
    let app = TestApp::new().await;
    let message_id = post_one(&app).await;
    let poll = || {
        get(&format!("/connect/stream/{CHANNEL}/poll?timeout=1"))
            .header("authorization", bearer(TOKEN))
            .header("x-connector-id", "router-test")
            .body(Body::empty())
            .expect("request")
    };
    let (status, _, body) = app.send(poll()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messages"][0]["message_id"], message_id.as_str());
    let conn_id = body["connection_id"]
        .as_str()
        .expect("connection")
        .to_owned();
    let conn = app
        .st
        .hub()
        .connection(&conn_id)
        .expect("live poll connection");
    assert_eq!(conn.in_flight(), 1, "the answered message stays leased");
    let ack = || {
        post(&format!("/connect/ack?message_id={message_id}"))
            .header("authorization", bearer(TOKEN))
            .header("x-connection-id", conn_id.as_str())
            .body(Body::empty())
            .expect("request")
    };
    let (status, _, body) = app.send(ack()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(conn.in_flight(), 0);
    let (status, _, body) = app.send(ack()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "message_not_in_flight");
    // Nothing left: the next poll waits out its timeout and answers 204.
    let (status, _, _) = app.send(poll()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// An ACK whose token is valid for the channel of the connection it names is checked against
/// that channel alone. Searching every channel for the token (§5.4 step 2) is O(channels) —
/// 100,000 on a hosted deployment, on every ACK of a long-poll or SSE connector — and is left
/// for a token that fails the named channel, which still gets 401 before anything about
/// connections.
#[tokio::test]
async fn an_ack_with_a_valid_token_does_not_search_every_channel() {
    let app = TestApp::new().await;
    let message_id = post_one(&app).await;
    let (status, _, body) = app
        .send(
            get(&format!("/connect/stream/{CHANNEL}/poll?timeout=1"))
                .header("authorization", bearer(TOKEN))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let conn_id = body["connection_id"].as_str().expect("connection");
    let ack = |token: &str| {
        post(&format!("/connect/ack?message_id={message_id}"))
            .header("authorization", bearer(token))
            .header("x-connection-id", conn_id)
            .body(Body::empty())
            .expect("request")
    };
    let scans = app.st.hub().token_scans();
    let (status, _, body) = app.send(ack("wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["detail"], "Invalid token");
    assert_eq!(
        app.st.hub().token_scans(),
        scans + 1,
        "a failing token is searched for"
    );
    let (status, _, body) = app.send(ack(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.st.hub().token_scans(),
        scans + 1,
        "the valid ACK searched every channel for its token"
    );
}
