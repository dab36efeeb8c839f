//! docs/OPERATIONS.md "Upgrades": two Redis replicas of different versions can run side by side
//! "as long as the key layout and record formats are unchanged", and a release that changes
//! the layout must say so. This test makes such a change visible: it exercises a channel on a
//! real redis-server (messages queued, leased, NACKed, dead-lettered, a token rotated, a rate
//! limit, a self-service account and channel) and requires every key in Redis to match a row
//! of the documented key layout ("Redis → Key layout"), with the documented type, and every
//! row to be found. A new, renamed or vanished key, or a changed type, fails here until the
//! doc's table (the upgrade contract) says so. Record formats (hash fields, JSON) are not
//! compared.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{RedisServer, wait_until};

const OPERATIONS: &str = include_str!("../../../../docs/OPERATIONS.md");
const PREFIX: &str = "layout";
const TOKEN: &str = "redis-layout-channel-token";

/// (key pattern, type) rows of the documented table; `P` is the prefix, `{C}` a channel's
/// hash tag, `<…>` any text.
fn documented() -> Result<Vec<(String, String)>> {
    let start = OPERATIONS
        .find("### Key layout")
        .context("no Key layout section")?;
    let table = &OPERATIONS[start..];
    let mut rows = Vec::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with('|'))
    {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let keys: Vec<String> = cols[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let types: Vec<String> = cols[2].split(',').map(|t| t.trim().to_owned()).collect();
        for (i, key) in keys.iter().enumerate() {
            let ty = types.get(i).or(types.last()).context("a type")?;
            rows.push((key.clone(), ty.clone()));
        }
    }
    ensure!(rows.len() > 10, "too few rows parsed: {rows:?}");
    Ok(rows)
}

/// Whether `key` matches `pattern` (`P` → the prefix, `{C}` → `{<channel>}`, `<…>` → anything).
fn matches(pattern: &str, key: &str) -> bool {
    let pattern = pattern.replacen('P', PREFIX, 1);
    let mut parts: Vec<String> = Vec::new();
    let mut rest = pattern.as_str();
    let mut literal = String::new();
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{C}") {
            parts.push(std::mem::take(&mut literal));
            parts.push("{*}".into());
            rest = after;
        } else if c == '<' {
            parts.push(std::mem::take(&mut literal));
            parts.push("*".into());
            rest = &rest[rest.find('>').map_or(rest.len(), |e| e + 1)..];
        } else {
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    parts.push(literal);
    glob(&parts, key)
}

/// Literal parts, `*` (anything non-empty) and `{*}` (a hash tag) matched in order.
fn glob(parts: &[String], key: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return key.is_empty();
    };
    match first.as_str() {
        "*" => (1..=key.len()).any(|n| key.is_char_boundary(n) && glob(rest, &key[n..])),
        "{*}" => {
            key.starts_with('{')
                && key
                    .find('}')
                    .is_some_and(|end| end > 1 && glob(rest, &key[end + 1..]))
        }
        literal => key
            .strip_prefix(literal)
            .is_some_and(|tail| glob(rest, tail)),
    }
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> Result<String> {
    let port = redis.port.to_string();
    let out = Command::new("redis-cli")
        .args(["-p", &port, "--no-raw"])
        .args(args)
        .output()
        .context("running redis-cli")?;
    ensure!(out.status.success(), "redis-cli {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_key_patterns_match_as_documented() {
    assert!(matches("P:{C}:state", "layout:{shop}:state"));
    assert!(!matches("P:{C}:state", "layout:{shop}:stats"));
    assert!(matches("P:acct:<id>", "layout:acct:acc_1"));
    assert!(!matches("P:channels", "layout:channels:x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_key_is_in_the_documented_layout() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut hook = connect_hook("shop", TOKEN, json!({}));
    hook["rate_limit"] = json!({"max_requests": 1000, "window_seconds": 60});
    let c = Cloud::builder(json!({"hook": hook}))
        .envs(&[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", PREFIX),
        ])
        .self_service("keys")
        .start()
        .await?;
    for i in 0..3 {
        let (s, v) = c.post("hook", &format!(r#"{{"n":{i}}}"#)).await?;
        ensure!(s == 200, "{v}");
    }
    c.rotate_token("shop").await?;
    let (_, key) = c.create_account("layout", serde_json::Value::Null).await?;
    c.create_channel(&key, json!({"name": "hosted"})).await?;
    // A long-poll leases every message; one is NACKed without retry (a dead letter), the
    // others stay leased.
    let new_token = c.rotate_token("shop").await?;
    let r = c
        .http
        .get(format!("{}/connect/stream/shop/poll?timeout=5", c.base))
        .bearer_auth(&new_token)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    ensure!(r.status() == 200, "poll answered {}", r.status());
    let v: serde_json::Value = r.json().await?;
    let first = v["messages"][0]["message_id"]
        .as_str()
        .context("a message")?;
    let conn = v["connection_id"].as_str().context("a connection")?;
    let r = c
        .http
        .post(format!(
            "{}/connect/ack?message_id={first}&status=nack&retry=false",
            c.base
        ))
        .bearer_auth(&new_token)
        .header("x-webhook-connect-version", "2")
        .header("x-connection-id", conn)
        .send()
        .await?;
    ensure!(r.status().is_success(), "nack answered {}", r.status());
    // Another NACKed with a retry: it waits in `delayed` for its backoff.
    let second = v["messages"][1]["message_id"]
        .as_str()
        .context("a second message")?;
    let r = c
        .http
        .post(format!(
            "{}/connect/ack?message_id={second}&status=nack&retry=true",
            c.base
        ))
        .bearer_auth(&new_token)
        .header("x-webhook-connect-version", "2")
        .header("x-connection-id", conn)
        .send()
        .await?;
    ensure!(r.status().is_success(), "nack answered {}", r.status());
    wait_until(Duration::from_secs(20), "a dead letter", || async {
        c.stats("shop")
            .await
            .is_ok_and(|s| s["dead_letters"].as_u64().unwrap_or(0) >= 1)
    })
    .await?;

    let rows = documented()?;
    let keys = redis_cli(&redis, &["--scan"])?;
    let mut undocumented = Vec::new();
    let mut checked = 0;
    let mut seen = vec![false; rows.len()];
    for key in keys.lines().map(|k| k.trim().trim_matches('"')) {
        if key.is_empty() {
            continue;
        }
        let ty = redis_cli(&redis, &["type", key])?.trim().to_owned();
        let row = rows.iter().position(|(pattern, _)| matches(pattern, key));
        if let Some(i) = row {
            seen[i] = true;
        }
        let documented_type = row.map(|i| rows[i].1.as_str());
        let ty_doc = match ty.as_str() {
            "zset" => "sorted set",
            other => other,
        };
        match documented_type {
            Some(t) if t == ty_doc => checked += 1,
            other => undocumented.push(format!("{key} ({ty}; documented: {other:?})")),
        }
    }
    ensure!(
        undocumented.is_empty(),
        "keys not in docs/OPERATIONS.md's key layout (a layout change must be documented: \
         replicas of two versions cannot share it):\n{}",
        undocumented.join("\n")
    );
    ensure!(checked >= 10, "only {checked} keys checked:\n{keys}");
    // And every documented key was made by the exercise above (Pub/Sub is not a key), so a
    // row that no longer exists is noticed too.
    let unseen: Vec<&str> = rows
        .iter()
        .zip(&seen)
        .filter(|((_, ty), seen)| !**seen && ty != "pub/sub")
        .map(|((pattern, _), _)| pattern.as_str())
        .collect();
    ensure!(
        unseen.is_empty(),
        "documented keys not found in Redis: {unseen:?}\n{keys}"
    );
    eprintln!("{checked} keys match the documented layout:\n{keys}");
    Ok(())
}
