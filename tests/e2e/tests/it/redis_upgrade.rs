//! docs/OPERATIONS.md "Upgrades": a replica serves the state an earlier build left in Redis.
//! Each fixture in `tests/e2e/fixtures/redis/` is the RDB snapshot a cloud of one version left
//! behind (`<version>.rdb`, Redis's own format, loadable by this and any later redis-server)
//! and what it knew about that state (`<version>.json`: tokens, keys and the messages in
//! each state). The test loads every fixture into a real redis-server, starts the current
//! cloud on it and requires: every queued message — ready, leased by a connection that is
//! gone, waiting for a retry — reaches a target through the real `webhook-connect`, byte for
//! byte and under its stored `message_id`; the dead letter is listed with its body and
//! replays; the rotated tokens hold as they were left (the configured token revoked, the
//! previous one until its grace ends); the account's API key, its channel and that channel's
//! webhook id still work; the counters carry on.
//!
//! A fixture written by this build only proves that the current code reads its own layout;
//! the test compares two versions once a release changes the layout and the previous
//! release's fixture stays committed. Write one with
//! `cargo nextest run -p connect-e2e --run-ignored only redis_upgrade::write_the_fixture`
//! (docs/TESTING.md, "Upgrades").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::connector::connector_flags;
use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{RecordingTarget, RedisServer, wait_until};

const PREFIX: &str = "upgrade";
const CHANNEL: &str = "shop";
/// The configured token; the fixture's first rotation revoked it at once.
const TOKEN: &str = "redis-upgrade-configured-token";
/// The longest TTL (one year): the fixture's messages are stored with absolute expiry times.
const TTL: u64 = 31_536_000;
/// The grace the fixture's second rotation gave the previous token.
const GRACE: u64 = 30 * 24 * 3600;
const FIXTURE_FILE: &str = "fixture.rdb";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/redis")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The cloud every fixture was written with, so the current one is configured alike.
async fn cloud_on(redis: &RedisServer) -> Result<Cloud> {
    let ttl = TTL.to_string();
    let mut hook = connect_hook(
        CHANNEL,
        TOKEN,
        json!({"ttl_seconds": TTL, "dlq_retention_seconds": 0, "max_delivery_attempts": 1000}),
    );
    hook["data_type"] = json!("blob");
    Cloud::builder(json!({ "hook": hook }))
        .envs(&[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", PREFIX),
            ("WEBHOOK_CONNECT_ACCOUNT_MAX_TTL_SECONDS", &ttl),
        ])
        .self_service("keys")
        .start()
        .await
}

/// Long-polls `channel` for at most `max` messages; `(connection id, messages)`.
async fn poll(c: &Cloud, channel: &str, token: &str, max: usize) -> Result<(String, Vec<Value>)> {
    let r = c
        .http
        .get(format!(
            "{}/connect/stream/{channel}/poll?timeout=5&max_messages={max}",
            c.base
        ))
        .bearer_auth(token)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    ensure!(r.status() == 200, "poll answered {}", r.status());
    let v: Value = r.json().await?;
    let conn = v["connection_id"].as_str().context("a connection id")?;
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    Ok((conn.to_owned(), messages))
}

async fn nack(c: &Cloud, token: &str, conn: &str, id: &str, retry: bool) -> Result<()> {
    let r = c
        .http
        .post(format!(
            "{}/connect/ack?message_id={id}&status=nack&retry={retry}",
            c.base
        ))
        .bearer_auth(token)
        .header("x-webhook-connect-version", "2")
        .header("x-connection-id", conn)
        .send()
        .await?;
    ensure!(r.status().is_success(), "nack answered {}", r.status());
    Ok(())
}

/// Posts `body` (any bytes) to `/webhook/{id}`; the stored message id.
async fn post(c: &Cloud, id: &str, body: &[u8]) -> Result<String> {
    let r = c
        .http
        .post(format!("{}/webhook/{id}", c.base))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await?;
    ensure!(r.status() == 200, "post answered {}", r.status());
    let v: Value = r.json().await?;
    Ok(v["message_id"].as_str().context("a message id")?.to_owned())
}

/// The cumulative counters of a channel's stats, which Redis keeps across replicas and
/// restarts.
fn counters(stats: &Value) -> Value {
    let keys = [
        "messages_received",
        "messages_nacked",
        "messages_dead_lettered",
        "messages_acked",
    ];
    keys.iter()
        .map(|k| ((*k).to_owned(), stats[*k].clone()))
        .collect()
}

/// A body that is not UTF-8 nor JSON, so a format that re-encodes bodies shows.
fn body(i: usize) -> Vec<u8> {
    let mut b = format!("upgrade {i} ").into_bytes();
    b.extend_from_slice(&[0, 0xff, 0xfe, b'\n', i as u8]);
    b
}

/// Writes `fixtures/redis/<version>.{rdb,json}` with this build: run it once per release
/// that changes the Redis layout or record formats, and commit both files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a fixture; run by hand (module docs)"]
async fn write_the_fixture() -> Result<()> {
    let redis = RedisServer::start().await?;
    let c = cloud_on(&redis).await?;
    let mut messages = Vec::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(post(&c, "hook", &body(i)).await?);
    }
    // The configured token revoked at once, then a second rotation with a long grace: the
    // state holds a current and a previous token.
    let (s, v) = c
        .admin_json(
            reqwest::Method::POST,
            &format!("/channels/{CHANNEL}/rotate-token"),
            &json!({"grace_period_seconds": 0}),
        )
        .await?;
    ensure!(s == 200, "rotate answered {s}: {v}");
    let previous = v["new_token"].as_str().context("a token")?.to_owned();
    let (s, v) = c
        .admin_json(
            reqwest::Method::POST,
            &format!("/channels/{CHANNEL}/rotate-token"),
            &json!({"grace_period_seconds": GRACE}),
        )
        .await?;
    ensure!(s == 200, "rotate answered {s}: {v}");
    let current = v["new_token"].as_str().context("a token")?.to_owned();

    // Three leased by a poll connection that is then gone: one NACKed without retry (the dead
    // letter), one with a retry (delayed), one left leased.
    let (conn, leased) = poll(&c, CHANNEL, &current, 3).await?;
    ensure!(leased.len() == 3, "leased {leased:?}");
    let leased: Vec<String> = leased
        .iter()
        .filter_map(|m| m["message_id"].as_str().map(str::to_owned))
        .collect();
    nack(&c, &current, &conn, &leased[0], false).await?;
    nack(&c, &current, &conn, &leased[1], true).await?;
    wait_until(Duration::from_secs(20), "the dead letter", || async {
        c.stats(CHANNEL)
            .await
            .is_ok_and(|s| s["dead_letters"].as_u64() == Some(1))
    })
    .await?;
    for (i, id) in ids.iter().enumerate() {
        let state = match leased.iter().position(|l| l == id) {
            Some(0) => "dead",
            Some(1) => "delayed",
            Some(_) => "leased",
            None => "ready",
        };
        messages.push(json!({"channel": CHANNEL, "message_id": id, "state": state,
            "body_b64": B64.encode(body(i))}));
    }

    // A self-service account with a channel holding two messages.
    let (account, key) = c
        .create_account("fixture", json!({"max_ttl_seconds": TTL}))
        .await?;
    let hosted = c
        .create_channel(&key, json!({"name": "hosted", "ttl_seconds": TTL}))
        .await?;
    let hosted_channel = hosted["channel"].as_str().context("a channel")?.to_owned();
    let webhook_id = hosted["webhook_id"].as_str().context("a webhook id")?;
    for i in 10..12 {
        let id = post(&c, webhook_id, &body(i)).await?;
        messages.push(
            json!({"channel": hosted_channel, "message_id": id, "state": "ready",
            "body_b64": B64.encode(body(i))}),
        );
    }
    let stats = c.stats(CHANNEL).await?;

    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "SAVE"])
        .output()
        .await?;
    ensure!(out.status.success(), "SAVE failed");
    let info = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "INFO", "server"])
        .output()
        .await?;
    let info = String::from_utf8_lossy(&info.stdout);
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim();
    let version = env!("CARGO_PKG_VERSION");
    std::fs::create_dir_all(fixtures())?;
    std::fs::copy(
        redis.data_dir().join("dump.rdb"),
        fixtures().join(format!("{version}.rdb")),
    )?;
    let meta = json!({
        "written_by": format!("webhook-connect-cloud {version}"),
        "redis_version": redis_version,
        "written_at_ms": now_ms(),
        "configured_token": TOKEN,
        "previous_token": previous,
        "current_token": current,
        "account_id": account,
        "api_key": key,
        "hosted_channel": hosted_channel,
        "hosted_webhook_id": webhook_id,
        "counters": counters(&stats),
        "messages": messages,
    });
    std::fs::write(
        fixtures().join(format!("{version}.json")),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_cloud_serves_every_committed_fixture() -> Result<()> {
    let mut found = 0;
    for entry in std::fs::read_dir(fixtures()).context("the fixtures directory")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            found += 1;
            serves(&path)
                .await
                .with_context(|| format!("fixture {}", path.display()))?;
        }
    }
    ensure!(found > 0, "no fixture in {}", fixtures().display());
    Ok(())
}

fn text<'a>(meta: &'a Value, key: &str) -> Result<&'a str> {
    meta[key]
        .as_str()
        .with_context(|| format!("`{key}` in the fixture"))
}

async fn serves(meta_path: &Path) -> Result<()> {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(meta_path)?)?;
    let age_ms = now_ms().saturating_sub(meta["written_at_ms"].as_u64().context("written_at_ms")?);
    // Every message expires a year after it was written (the longest TTL there is).
    ensure!(
        age_ms < (TTL - 30 * 24 * 3600) * 1000,
        "the fixture is {} days old and its messages expire at 365: write a new one (module docs)",
        age_ms / 86_400_000
    );
    let mut redis = RedisServer::start_with(&["--dbfilename", FIXTURE_FILE]).await?;
    std::fs::copy(
        meta_path.with_extension("rdb"),
        redis.data_dir().join(FIXTURE_FILE),
    )?;
    redis.restart().await?;
    let c = cloud_on(&redis).await?;

    // Tokens as the fixture left them.
    let current = text(&meta, "current_token")?;
    ensure!(
        c.connector_status(CHANNEL, text(&meta, "configured_token")?)
            .await
            == 401,
        "the revoked configured token is accepted"
    );
    let previous_ok = c
        .connector_status(CHANNEL, text(&meta, "previous_token")?)
        .await;
    let in_grace = age_ms < GRACE * 1000;
    ensure!(
        (previous_ok == 401) != in_grace,
        "the previous token answered {previous_ok}; its grace {} over",
        if in_grace { "is not" } else { "is" }
    );
    let after = counters(&c.stats(CHANNEL).await?);
    ensure!(
        after == meta["counters"],
        "counters {after} after the upgrade, {} before",
        meta["counters"]
    );

    // The dead letter, with its body, through the admin API.
    let messages = meta["messages"].as_array().context("messages")?;
    let body_of = |m: &Value| -> Result<Vec<u8>> {
        Ok(B64.decode(m["body_b64"].as_str().context("body_b64")?)?)
    };
    let dead = messages
        .iter()
        .find(|m| m["state"] == "dead")
        .context("a dead letter in the fixture")?;
    let dead_id = dead["message_id"].as_str().context("an id")?;
    let v = c
        .admin_get(&format!("/channels/{CHANNEL}/dead-letters/{dead_id}"))
        .await?;
    ensure!(
        v["body_b64"].as_str().map(|b| B64.decode(b)).transpose()? == Some(body_of(dead)?),
        "the dead letter's body changed: {v}"
    );

    // Every other message (and the dead letter, replayed) reaches a target through the real
    // connector, byte for byte and under its id; the account's key serves its channel.
    let target = RecordingTarget::start().await?;
    let _shop = connector_flags(&c, CHANNEL, current, "websocket", &target.url, &[])?;
    let hosted = text(&meta, "hosted_channel")?;
    let key = text(&meta, "api_key")?;
    let _hosted = connector_flags(&c, hosted, key, "websocket", &target.url, &[])?;
    let (s, v) = c
        .admin(
            reqwest::Method::POST,
            &format!("/channels/{CHANNEL}/dead-letters/{dead_id}/replay"),
        )
        .await?;
    ensure!(s == 200, "replay answered {s}: {v}");
    let fresh = post(&c, text(&meta, "hosted_webhook_id")?, b"after the upgrade").await?;

    let mut expected: HashMap<String, Vec<u8>> = HashMap::new();
    for m in messages {
        let id = m["message_id"].as_str().context("an id")?;
        expected.insert(id.to_owned(), body_of(m)?);
    }
    expected.insert(fresh, b"after the upgrade".to_vec());
    let delivered = || -> HashMap<String, Vec<u8>> {
        target
            .requests()
            .iter()
            .filter_map(|r| {
                let id = r.header("x-webhook-message-id")?;
                Some((id.to_owned(), r.body.to_vec()))
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "every message of the fixture delivered",
        || async { expected.keys().all(|id| delivered().contains_key(id)) },
    )
    .await
    .map_err(|e| {
        let got = delivered();
        let missing: Vec<_> = expected
            .keys()
            .filter(|id| !got.contains_key(*id))
            .collect();
        anyhow::anyhow!("{e}: missing {missing:?}\ncloud log:\n{}", c.logs())
    })?;
    let got = delivered();
    for (id, body) in &expected {
        ensure!(
            got.get(id) == Some(body),
            "{id} arrived as {:?}, stored as {:?}",
            got.get(id).map(|b| String::from_utf8_lossy(b).into_owned()),
            String::from_utf8_lossy(body)
        );
    }
    eprintln!(
        "{}: {} messages delivered byte for byte, tokens and counters as left",
        meta["written_by"],
        expected.len()
    );
    let (s, v) = c.api(reqwest::Method::GET, "/channels", key, None).await?;
    ensure!(
        s == 200 && v.to_string().contains(hosted),
        "the account's channels: {s} {v}"
    );
    Ok(())
}
