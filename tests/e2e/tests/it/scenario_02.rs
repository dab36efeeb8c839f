//! Seed scenario 02 (basic connector): basic flow and queue-while-offline, over every transport.

use std::time::Duration;

use connect_testkit::{RecordingTarget, wait_until};
use serde_json::json;

use crate::client::{TestConnector, Transport};
use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "scenario-02-channel-token";

async fn basic_flow(transport: Transport) -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"basic": connect_hook("test-channel", TOKEN, json!({}))})).await?;
    let target = RecordingTarget::start().await?;
    // 1 webhook before any connector (registers nothing: channels exist from the config).
    let (s, v) = cloud.post("basic", r#"{"n":0}"#).await?;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["message_id"]
            .as_str()
            .is_some_and(|m| m.starts_with("msg_")),
        "{v}"
    );
    let _conn = TestConnector::start(transport, &cloud.base, "test-channel", TOKEN, &target.url);
    for i in 1..10 {
        let (s, _) = cloud.post("basic", &format!(r#"{{"n":{i}}}"#)).await?;
        assert_eq!(s, 200);
    }
    let got = target.wait_for_count(10, Duration::from_secs(15)).await?;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    wait_until(
        Duration::from_secs(10),
        "stats to show 10 acked",
        || async {
            let s = cloud.stats("test-channel").await.unwrap();
            s["messages_acked"] == 10 && s["messages_queued"] == 0 && s["messages_in_flight"] == 0
        },
    )
    .await?;
    let s = cloud.stats("test-channel").await?;
    assert_eq!(s["messages_delivered"], 10, "{s}");
    assert_eq!(s["connected_clients"], 1, "{s}");
    assert_eq!(target.count(), 10, "no duplicates on a healthy link");
    Ok(())
}

#[tokio::test]
async fn basic_flow_websocket() -> anyhow::Result<()> {
    basic_flow(Transport::Ws).await
}

#[tokio::test]
async fn basic_flow_sse() -> anyhow::Result<()> {
    basic_flow(Transport::Sse).await
}

#[tokio::test]
async fn basic_flow_long_poll() -> anyhow::Result<()> {
    basic_flow(Transport::Poll).await
}

async fn queue_while_offline(transport: Transport) -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"basic": connect_hook("test-channel", TOKEN, json!({}))})).await?;
    for i in 0..10 {
        let (s, _) = cloud.post("basic", &format!(r#"{{"n":{i}}}"#)).await?;
        assert_eq!(s, 200);
    }
    let s = cloud.stats("test-channel").await?;
    assert_eq!(s["messages_queued"], 10, "{s}");
    assert_eq!(s["messages_delivered"], 0, "{s}");
    assert_eq!(s["connected_clients"], 0, "{s}");
    let target = RecordingTarget::start().await?;
    let _conn = TestConnector::start(transport, &cloud.base, "test-channel", TOKEN, &target.url);
    let got = target.wait_for_count(10, Duration::from_secs(15)).await?;
    // FIFO by sequence for a single connection.
    let ns: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn queue_while_offline_websocket() -> anyhow::Result<()> {
    queue_while_offline(Transport::Ws).await
}

#[tokio::test]
async fn queue_while_offline_sse() -> anyhow::Result<()> {
    queue_while_offline(Transport::Sse).await
}

#[tokio::test]
async fn queue_while_offline_long_poll() -> anyhow::Result<()> {
    queue_while_offline(Transport::Poll).await
}
