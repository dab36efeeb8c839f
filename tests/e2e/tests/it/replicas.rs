//! Replica agreement without a window (#13 finding 7): two cloud processes on one real
//! `redis-server`. A token rotated, a configured token changed, a channel created or deleted
//! through replica B holds on replica A at the very next request — no waiting for A's periodic
//! re-read of the shared state (every second). The same on a three-primary Redis Cluster
//! (`WEBHOOK_CONNECT_REDIS_CLUSTER_URLS`), where a webhook posted to one replica also reaches a
//! connector on the other. And `max_connections` counts the connections of both replicas.

use std::time::Duration;

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{RedisCluster, RedisServer, wait_until};
use futures::StreamExt;
use serde_json::{Value, json};

const CH: &str = "agreed";
const TOKEN: &str = "replicas-e2e-channel-token";
const RELOAD_TOKEN: &str = "reload-token-for-replicas";
/// Repetitions: each one must hold at once, so a lucky re-read cannot make a run pass.
const ROUNDS: usize = 5;
/// Bound for a revocation to reach the other replica: 150 ms, stretched by
/// `CONNECT_TEST_TIME_SCALE` but always below the 1 s periodic re-read it must beat.
fn revoked_within() -> Duration {
    connect_testkit::timing::scaled_below(Duration::from_millis(150), Duration::from_secs(1))
}

async fn replica(redis: &RedisServer, hooks: Value) -> anyhow::Result<Cloud> {
    Cloud::start_with(
        hooks,
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "agree"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
}

/// Opens an SSE stream with `token`; the answer's status (the stream is dropped).
async fn sse_status(c: &Cloud, channel: &str, token: &str) -> u16 {
    c.http
        .get(format!("{}/connect/stream/{channel}/sse", c.base))
        .bearer_auth(token)
        .header("x-webhook-connect-version", "2")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Rewrites `c`'s webhooks.json and applies it through the reload API (answers when done).
async fn reload_with(c: &Cloud, hooks: &Value) -> anyhow::Result<()> {
    std::fs::write(
        c.dir.path().join("webhooks.json"),
        serde_json::to_vec_pretty(hooks)?,
    )?;
    let r = c
        .http
        .post(format!("{}/admin/reload-config", c.base))
        .bearer_auth(RELOAD_TOKEN)
        .json(&json!({}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "reload answered {}", r.status());
    Ok(())
}

#[tokio::test]
async fn a_token_rotated_on_one_replica_works_on_the_other_at_once() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let hooks = json!({"hook": connect_hook(CH, TOKEN, json!({}))});
    let a = replica(&redis, hooks.clone()).await?;
    let b = replica(&redis, hooks).await?;
    assert_eq!(a.connector_status(CH, TOKEN).await, 200);
    let mut old = TOKEN.to_owned();
    for round in 0..ROUNDS {
        let new = b.rotate_token(CH).await?;
        // The very next requests on A: the new token connects, the old one is refused.
        assert_eq!(
            sse_status(&a, CH, &new).await,
            200,
            "round {round}: new token, SSE"
        );
        assert_eq!(
            a.connector_status(CH, &new).await,
            200,
            "round {round}: new token"
        );
        assert_eq!(
            a.connector_status(CH, &old).await,
            401,
            "round {round}: old token"
        );
        old = new;
    }
    Ok(())
}

/// Revocation travels by the published change (a token that is still valid in A's memory is
/// not re-read): the old token stops working on A within a few milliseconds of B's answer,
/// far inside A's periodic re-read.
#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_the_other_at_once() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let hooks = json!({"hook": connect_hook(CH, TOKEN, json!({}))});
    let a = replica(&redis, hooks.clone()).await?;
    let b = replica(&redis, hooks).await?;
    let mut old = TOKEN.to_owned();
    for round in 0..ROUNDS {
        assert_eq!(
            a.connector_status(CH, &old).await,
            200,
            "round {round}: before"
        );
        let new = b.rotate_token(CH).await?;
        let t0 = std::time::Instant::now();
        wait_until(revoked_within(), "the old token refused on A", || {
            let (a, old) = (&a, old.clone());
            async move { a.connector_status(CH, &old).await == 401 }
        })
        .await
        .map_err(|e| anyhow::anyhow!("round {round}: {e}"))?;
        eprintln!(
            "round {round}: old token refused on A after {:?}",
            t0.elapsed()
        );
        old = new;
    }
    Ok(())
}

#[tokio::test]
async fn a_configured_token_change_and_a_new_channel_hold_on_the_other_replica_at_once()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let first = json!({"hook": connect_hook(CH, TOKEN, json!({}))});
    let a = replica(&redis, first.clone()).await?;
    let b = replica(&redis, first).await?;
    let mut old = TOKEN.to_owned();
    for round in 0..ROUNDS {
        // B's configuration: a new token for the channel and a channel A never heard of.
        let new = format!("configured-token-{round}-0123456789");
        let fresh = format!("fresh-{round}");
        let fresh_token = format!("fresh-token-{round}-0123456789");
        let hooks = json!({
            "hook": connect_hook(CH, &new, json!({})),
            format!("hook-{round}"): connect_hook(&fresh, &fresh_token, json!({})),
        });
        reload_with(&b, &hooks).await?;
        assert_eq!(
            a.connector_status(CH, &new).await,
            200,
            "round {round}: new token"
        );
        assert_eq!(
            a.connector_status(CH, &old).await,
            401,
            "round {round}: old token"
        );
        assert_eq!(
            a.connector_status(&fresh, &fresh_token).await,
            200,
            "round {round}: channel created on B"
        );
        old = new;
    }
    Ok(())
}

#[tokio::test]
async fn a_channel_deleted_on_one_replica_closes_its_streams_on_the_other_at_once()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let hooks = json!({
        "hook": connect_hook(CH, TOKEN, json!({})),
        "other": connect_hook("other", TOKEN, json!({})),
    });
    let a = replica(&redis, hooks.clone()).await?;
    let b = Cloud::start_with(
        hooks,
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "agree"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
            ("WEBHOOK_CONNECT_ORPHAN_CHANNEL_POLICY", "delete"),
        ],
    )
    .await?;
    let stream = a
        .http
        .get(format!("{}/connect/stream/{CH}/sse", a.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    // The connection is registered once `connected` arrives.
    let mut seen = String::new();
    while !seen.contains("event: connected") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended before connected: {seen}"))??;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // B drops the channel from its configuration and deletes it from the shared store.
    reload_with(
        &b,
        &json!({"other": connect_hook("other", TOKEN, json!({}))}),
    )
    .await?;
    // A ends the stream well within its periodic re-read (which never removed channels).
    let ended = tokio::time::timeout(Duration::from_millis(900), async {
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await;
    let text = ended.map_err(|_| anyhow::anyhow!("A kept the stream of a deleted channel"))?;
    assert!(text.contains("channel_removed"), "{text}");
    Ok(())
}

/// Reads SSE chunks until `needle` shows up (20 s at most); the text read.
async fn read_until<S, B>(body: &mut S, needle: &str) -> anyhow::Result<String>
where
    S: futures::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended before {needle}: {seen}"))??;
        seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
    Ok(seen)
}

#[tokio::test]
async fn replicas_on_a_redis_cluster_deliver_across_and_agree_at_once() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let urls = cluster.urls();
    let env = [
        ("WEBHOOK_CONNECT_REDIS_CLUSTER_URLS", urls.as_str()),
        ("WEBHOOK_CONNECT_REDIS_PREFIX", "agree"),
    ];
    let hooks = json!({"hook": connect_hook(CH, TOKEN, json!({}))});
    let a = Cloud::start_with(hooks.clone(), &env).await?;
    let b = Cloud::start_with(hooks, &env).await?;
    let stream = a
        .http
        .get(format!("{}/connect/stream/{CH}/sse", a.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    read_until(&mut body, "event: connected").await?;
    let (s, _) = b.post("hook", r#"{"n":1}"#).await?;
    assert!((200..300).contains(&s), "POST to B answered {s}");
    read_until(&mut body, "event: webhook").await?;

    let new = b.rotate_token(CH).await?;
    assert_eq!(a.connector_status(CH, &new).await, 200, "new token on A");
    let closed = read_until(&mut body, "token_revoked").await?;
    assert!(closed.contains("token_revoked"));
    assert_eq!(a.connector_status(CH, TOKEN).await, 401, "old token on A");
    Ok(())
}

/// Opens an SSE stream on `c` and reads until its first event; returns that event's text and
/// the still open response (its connection counts until it is dropped).
async fn first_sse_event(c: &Cloud) -> anyhow::Result<(String, reqwest::Response)> {
    let mut r = c
        .http
        .get(format!("{}/connect/stream/{CH}/sse", c.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "sse answered {}", r.status());
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.chunk())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the stream ended after {text:?}"))?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok((text, r))
}

#[tokio::test]
async fn max_connections_holds_across_two_replicas() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let hooks = json!({"hook": connect_hook(CH, TOKEN, json!({"max_connections": 1}))});
    let a = replica(&redis, hooks.clone()).await?;
    let b = replica(&redis, hooks).await?;
    let (event, on_a) = first_sse_event(&a).await?;
    assert!(event.contains("event: connected"), "{event}");
    // The one slot is taken on A: B refuses every transport.
    for round in 0..ROUNDS {
        let (event, _) = first_sse_event(&b).await?;
        assert!(
            event.contains("event: error") && event.contains("max_connections_reached"),
            "round {round}: SSE on B: {event}"
        );
        let poll = b
            .http
            .get(format!("{}/connect/stream/{CH}/poll?timeout=1", b.base))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(poll.status(), 503, "round {round}: long poll on B");
    }
    // The slot is freed when A's connection ends: B then admits one.
    drop(on_a);
    let admitted = wait_until(
        Duration::from_secs(20),
        "B to admit a connection",
        || async {
            first_sse_event(&b)
                .await
                .is_ok_and(|(event, _)| event.contains("event: connected"))
        },
    )
    .await;
    admitted?;
    Ok(())
}
