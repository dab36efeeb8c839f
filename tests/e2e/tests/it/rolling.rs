//! docs/OPERATIONS.md "Upgrades", Redis: "a rolling upgrade (one replica at a time, readiness on
//! `/health`) keeps ingress up". With one build this is a rolling restart of two replicas on
//! one real redis-server: webhooks are posted without pause through a load balancer played by
//! the test (it takes a replica out before stopping it and back once its `/health` answers
//! 200), while the real `webhook-connect` forwards to a recording target. Every post is
//! answered 2xx and every one reaches the target. (Two *versions* side by side are not tested:
//! docs/TESTING.md, "Gaps".)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{RecordingTarget, RedisServer, timing, wait_until};

use crate::connector::connector_flags;

const TOKEN: &str = "rolling-restart-channel-token";
const CH: &str = "rolling";

async fn replica(redis: &RedisServer) -> Result<Cloud> {
    Cloud::builder(json!({"hook": connect_hook(CH, TOKEN, json!({}))}))
        .envs(&[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "rolling"),
            ("WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS", "2"),
        ])
        .ready_when_healthy(timing::scaled(Duration::from_secs(30)))
        .start()
        .await
}

/// The load balancer's view: the base URLs of the replicas it sends to.
type Pool = Arc<Mutex<Vec<String>>>;

/// Posts `{"n":i}` round-robin to the replicas in `pool` until `stop`; each `(n, status)`.
/// Holds the pool's lock for each post, so a replica taken out has no post in flight.
async fn post_loop(
    pool: Pool,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Vec<(u64, u16)>> {
    let http = reqwest::Client::builder()
        .timeout(timing::scaled(Duration::from_secs(10)))
        .build()?;
    let mut answers = Vec::new();
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let members = pool.lock().await;
        ensure!(!members.is_empty(), "no replica in the pool");
        let base = &members[n as usize % members.len()];
        let status = http
            .post(format!("{base}/webhook/hook"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        drop(members);
        answers.push((n, status));
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(answers)
}

/// Takes `cloud` out of the pool, stops it with SIGTERM (exit 0), starts it again, waits for
/// `/health` 200 and puts it back.
async fn roll(pool: &Pool, cloud: &mut Cloud) -> Result<()> {
    pool.lock().await.retain(|b| *b != cloud.base);
    let code = cloud
        .proc
        .terminate(timing::scaled(Duration::from_secs(30)));
    ensure!(
        code == Some(0),
        "SIGTERM ends the replica cleanly: {code:?}"
    );
    cloud.restart().await?;
    pool.lock().await.push(cloud.base.clone());
    Ok(())
}

/// Waits until the pool has served `more` further posts (a positive signal that posting went
/// on while a replica was out, rather than a fixed sleep).
async fn posts_go_on(target: &RecordingTarget, more: usize) -> Result<()> {
    let want = target.count() + more;
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "posts delivered meanwhile",
        || async { target.count() >= want },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_replicas_keeps_ingress_up_and_loses_nothing() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut a = replica(&redis).await?;
    let mut b = replica(&redis).await?;
    let target = RecordingTarget::start().await?;
    let conn = connector_flags(&b, CH, TOKEN, "websocket", &target.url, &[])?;
    let pool: Pool = Arc::new(Mutex::new(vec![a.base.clone(), b.base.clone()]));
    let stop = tokio_util::sync::CancellationToken::new();
    let poster = tokio::spawn(post_loop(pool.clone(), stop.clone()));

    posts_go_on(&target, 10).await?;
    roll(&pool, &mut a).await?;
    posts_go_on(&target, 10).await?;
    // B holds the connector: it reconnects to B once B is back.
    roll(&pool, &mut b).await?;
    posts_go_on(&target, 10).await?;
    stop.cancel();
    let answers = poster.await??;

    eprintln!(
        "{} posts, A started in {:?}, B in {:?}",
        answers.len(),
        a.started_in,
        b.started_in
    );
    let refused: Vec<&(u64, u16)> = answers.iter().filter(|(_, s)| *s != 200).collect();
    ensure!(
        refused.is_empty(),
        "posts not answered 200 during the rolling restart: {refused:?} of {}",
        answers.len()
    );
    let sent: BTreeSet<u64> = answers.iter().map(|(n, _)| *n).collect();
    let arrived = |target: &RecordingTarget| -> BTreeSet<u64> {
        target
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()?["n"].as_u64())
            .collect()
    };
    let delivered = wait_until(
        timing::scaled(Duration::from_secs(30)),
        "every post at the target",
        || async { arrived(&target) == sent },
    )
    .await;
    if delivered.is_err() {
        let got = arrived(&target);
        let missing: Vec<_> = sent.difference(&got).collect();
        anyhow::bail!(
            "{} of {} posts never arrived: {missing:?}\nconnector:\n{}",
            missing.len(),
            sent.len(),
            conn.stderr_text()
        );
    }
    Ok(())
}
