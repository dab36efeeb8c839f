//! Metric series of a deleted self-service channel: none stay behind (but the count of what
//! the deletion discarded), ingress ones included (a self-service channel's ingress series
//! name the channel as their webhook).

use axum::body::Body;
use axum::http::StatusCode;
use connect_protocol::hosted::{CreateChannelRequest, SelfServiceMode};

use crate::support::{TestApp, default_webhooks, get, post};

#[tokio::test]
async fn a_deleted_self_service_channel_leaves_no_ingress_series() {
    let app = TestApp::with(default_webhooks(), |s| {
        s.hosted.self_service = SelfServiceMode::Keys;
        s.hosted.public_url = Some("http://self-service.invalid".into());
    })
    .await;
    let hosted = app.st.hosted().clone();
    let created = hosted.create_account("dora", None).await.expect("account");
    let a = hosted
        .authenticate_key(Some(&created.api_key))
        .await
        .expect("key");
    let req = CreateChannelRequest {
        name: "gh".into(),
        ..CreateChannelRequest::default()
    };
    let ch = hosted.create_channel(&a, &req).await.expect("channel");
    let ingest = post(&format!("/webhook/{}", ch.webhook_id))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"n":1}"#))
        .expect("request");
    let (status, _, body) = app.send(ingest).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The configured webhook gets traffic too: its series must survive the deletion.
    let ingest = post("/webhook/hook")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"n":2}"#))
        .expect("request");
    assert_eq!(app.send(ingest).await.0, StatusCode::OK);
    let scrape = async || {
        let (status, _, body) = app
            .send(get("/metrics").body(Body::empty()).expect("request"))
            .await;
        assert_eq!(status, StatusCode::OK);
        body.as_str().expect("text").to_owned()
    };
    let before = scrape().await;
    let series = "webhook_connect_ingress_requests_total{namespace=\"\",webhook=\"dora.gh\"";
    assert!(before.contains(series), "{before}");

    let deleted = hosted
        .delete_channel(&a, &ch.channel)
        .await
        .expect("delete");
    assert_eq!(deleted.messages_discarded, 1);
    let after = scrape().await;
    // The one series a deletion keeps: what it discarded (OPERATIONS.md, metrics).
    let kept = "webhook_connect_messages_discarded_total{channel=\"dora.gh\",reason=\"channel_deleted\"} 1";
    assert!(after.contains(kept), "{after}");
    let left: Vec<&str> = after
        .lines()
        .filter(|l| l.contains("dora.gh") && !l.starts_with(kept))
        .collect();
    assert!(
        left.is_empty(),
        "series of the deleted channel stay:\n{}",
        left.join("\n")
    );
    assert!(
        after.contains("webhook_connect_ingress_requests_total{namespace=\"\",webhook=\"hook\""),
        "{after}"
    );
}
