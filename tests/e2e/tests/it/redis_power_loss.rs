//! `appendfsync always` against a Redis host crash (docs/OPERATIONS.md, "What 2xx means:
//! choose the persistence"). `redis-server` keeps its append-only file (Redis 7's multi-part
//! AOF: `appendonlydir/` with a manifest) on the test kit's [`PowerLossFs`]; the real cloud
//! runs on that Redis under eight concurrent senders. A host crash is SIGKILL of
//! `redis-server` *and* a power cut of its filesystem, which throws away every write Redis
//! did not `fdatasync` — what killing the process alone never does (the kernel keeps a killed
//! process's written pages, so such a test cannot tell `always` from `everysec`). Redis is
//! started again on the same directory, and the real connector must deliver every webhook
//! that was answered 2xx.
//!
//! The second test is the same host crash with `appendfsync everysec`, and asserts that
//! acknowledged webhooks *are* lost: the harness can tell the two policies apart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{
    Crash, Durability, PowerLossFs, RecordingTarget, RedisServer, timing, wait_until,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::connector::connector_flags;
use crate::crash_loop::{sender, verify_delivered};

const CH: &str = "redis-power";
const TOKEN: &str = "redis-power-loss-channel-token";

/// `redis-server` with AOF and `appendfsync {policy}`, its data directory on `fs`.
async fn redis_on(fs: &PowerLossFs, policy: &str) -> anyhow::Result<RedisServer> {
    let dir = fs.path().to_str().expect("UTF-8 temporary path").to_owned();
    // Later arguments win over the test kit's own `--dir` and `--appendonly no`.
    RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        policy,
        "--dir",
        &dir,
    ])
    .await
}

async fn cloud_on(redis: &RedisServer) -> anyhow::Result<Cloud> {
    Cloud::start_with(
        json!({"hook": connect_hook(CH, TOKEN, json!({"max_queue_size": 1_000_000}))}),
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "powerloss"),
        ],
    )
    .await
}

/// The host under Redis crashes: the power fails (no flush completes any more), the
/// process dies, the unsynced writes are gone; then Redis starts again on what survived.
async fn host_crash(
    redis: &mut RedisServer,
    fs: &mut PowerLossFs,
    how: Crash,
) -> anyhow::Result<u64> {
    fs.power_off();
    redis.kill9();
    let report = fs.crash(how)?;
    eprintln!("Redis host crash ({how:?}): {report:?}");
    redis.restart().await?;
    Ok(report.bytes_lost)
}

/// The AOF files Redis wrote on the power-loss filesystem (for the failure messages).
fn aof_files(fs: &PowerLossFs) -> Vec<String> {
    std::fs::read_dir(fs.path().join("appendonlydir"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    format!("{} ({len} B)", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn appendfsync_always_loses_no_acknowledged_webhook_when_the_redis_host_crashes()
-> anyhow::Result<()> {
    // Crash until three crashes caught unsynced writes (a crash between two fsyncs loses
    // nothing and proves little), at most 20 times.
    const CRASHES_THAT_LOST_WRITES: usize = 3;
    const MAX_CRASHES: usize = 20;
    let mut fs = PowerLossFs::mount(Durability::Honest)?;
    let mut redis = redis_on(&fs, "always").await?;
    let cloud = cloud_on(&redis).await?;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..8)
        .map(|w| sender(cloud.base.clone(), w, accepted.clone(), stop.clone()))
        .collect();
    let (mut crashes, mut crashes_that_lost, mut lost_bytes) = (0, 0, 0);
    while crashes_that_lost < CRASHES_THAT_LOST_WRITES {
        anyhow::ensure!(
            crashes < MAX_CRASHES,
            "{MAX_CRASHES} host crashes and only {crashes_that_lost} caught unsynced writes"
        );
        let before = accepted.lock().len();
        wait_until(
            timing::scaled(Duration::from_secs(60)),
            &format!("100 more webhooks accepted before host crash {crashes}"),
            || async { accepted.lock().len() >= before + 100 },
        )
        .await?;
        // Both kinds of crash: every unsynced write lost, or the last one torn.
        let how = if crashes % 2 == 0 {
            Crash::LoseAll
        } else {
            Crash::TornTail {
                keep_per_mille: 500,
            }
        };
        let lost = host_crash(&mut redis, &mut fs, how).await?;
        crashes += 1;
        crashes_that_lost += usize::from(lost > 0);
        lost_bytes += lost;
    }
    let before = accepted.lock().len();
    wait_until(
        timing::scaled(Duration::from_secs(60)),
        "webhooks accepted after the last host crash",
        || async { accepted.lock().len() >= before + 50 },
    )
    .await?;
    stop.cancel();
    for s in senders {
        s.await?;
    }
    eprintln!(
        "{lost_bytes} unsynced bytes thrown away over {crashes} crashes; AOF: {:?}",
        aof_files(&fs)
    );

    let target = RecordingTarget::start().await?;
    let conn = connector_flags(&cloud, CH, TOKEN, "websocket", &target.url, &[])?;
    verify_delivered(&accepted, &target, &conn, crashes)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nredis log:\n{}", redis.logs()))
}

#[tokio::test]
async fn the_harness_catches_appendfsync_everysec_losing_acknowledged_webhooks()
-> anyhow::Result<()> {
    let mut fs = PowerLossFs::mount(Durability::Honest)?;
    let mut redis = redis_on(&fs, "everysec").await?;
    let cloud = cloud_on(&redis).await?;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..8)
        .map(|w| sender(cloud.base.clone(), w, accepted.clone(), stop.clone()))
        .collect();
    wait_until(
        timing::scaled(Duration::from_secs(60)),
        "100 webhooks accepted",
        || async { accepted.lock().len() >= 100 },
    )
    .await?;
    // Redis's once-a-second fsync has run under the stream (what it had not synced shrank),
    // so the loss below is the window since the last fsync, not everything.
    let unsynced = fs.unsynced_bytes();
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "an everysec fsync of the AOF",
        || async { fs.unsynced_bytes() < unsynced },
    )
    .await?;
    let before = accepted.lock().len();
    wait_until(
        timing::scaled(Duration::from_secs(60)),
        "100 more webhooks accepted after that fsync",
        || async { accepted.lock().len() >= before + 100 },
    )
    .await?;
    // The crash comes in the middle of the stream: what Redis wrote since its last
    // once-a-second fsync is on no disk.
    host_crash(&mut redis, &mut fs, Crash::LoseAll).await?;
    stop.cancel();
    for s in senders {
        s.await?;
    }

    // What Redis still has: the connector drains it; a webhook posted after the crash, then
    // an empty channel, show the drain is complete.
    let target = RecordingTarget::start().await?;
    let _conn = connector_flags(&cloud, CH, TOKEN, "websocket", &target.url, &[])?;
    let marker = wait_until_accepted(&cloud).await?;
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "the marker delivered",
        || async {
            target
                .requests()
                .iter()
                .any(|r| r.header("x-webhook-message-id") == Some(marker.as_str()))
        },
    )
    .await?;
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "nothing left queued or in flight",
        || async {
            cloud
                .stats(CH)
                .await
                .is_ok_and(|s| s["messages_queued"] == 0 && s["messages_in_flight"] == 0)
        },
    )
    .await?;
    let delivered: HashSet<String> = target
        .requests()
        .iter()
        .filter_map(|r| r.header("x-webhook-message-id").map(str::to_owned))
        .collect();
    let accepted: HashSet<String> = accepted.lock().iter().cloned().collect();
    let lost = accepted.difference(&delivered).count();
    eprintln!(
        "appendfsync everysec: {lost} of {} acknowledged webhooks lost in a host crash",
        accepted.len()
    );
    assert!(
        lost > 0,
        "with appendfsync everysec a host crash must lose acknowledged webhooks; if it does \
         not, the harness cannot tell everysec from always"
    );
    assert!(
        lost < accepted.len(),
        "what the everysec fsync had synced survives: the loss is the last window, not all"
    );
    Ok(())
}

/// Posts a marker until the cloud (which re-registers the channel once it sees Redis lost
/// it) takes it; its message id.
async fn wait_until_accepted(cloud: &Cloud) -> anyhow::Result<String> {
    let id = Arc::new(Mutex::new(None::<String>));
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "a webhook accepted after the crash",
        || async {
            match cloud.post("hook", r#"{"after":"crash"}"#).await {
                Ok((200, v)) => {
                    *id.lock() = v["message_id"].as_str().map(str::to_owned);
                    true
                }
                _ => false,
            }
        },
    )
    .await?;
    let id = id.lock().clone();
    id.ok_or_else(|| anyhow::anyhow!("the marker's answer had no message_id"))
}
