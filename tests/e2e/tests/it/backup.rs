//! Backups of the embedded store (docs/OPERATIONS.md, "Backups" and "Backups of accounts"):
//! "stop, copy, start" — SIGTERM, copy exactly `buffer.redb`, `hosted.redb` and `log/` (not
//! `LOCK`) into a fresh data directory, start a new cloud on the copy — restores every queued
//! webhook byte for byte, no settled one, the dead letter, the account's API key and the
//! self-service channel's token. And a damaged file fails at start: exit 69 with a message
//! naming the file, not a panic and not an empty store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{ADMIN, Cloud, connect_hook};
use connect_testkit::{
    ChildProcess, RecordingTarget, free_port, timing, wait_until, workspace_bin,
};

use crate::connector::connector_flags;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CFG: &str = "backed-up";
const CFG_TOKEN: &str = "backup-configured-channel-token";
/// The parts of a backup, as OPERATIONS.md lists them.
const BACKUP_FILES: [&str; 2] = ["buffer.redb", "hosted.redb"];
const BACKUP_DIR: &str = "log";

fn hooks() -> Value {
    json!({"cfg-hook": connect_hook(CFG, CFG_TOKEN, json!({}))})
}

/// A v2 WebSocket stream of `channel`, after its `connected` frame.
async fn ws(c: &Cloud, channel: &str, credential: &str) -> anyhow::Result<Ws> {
    let mut req = format!("{}/connect/stream/{channel}", c.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {credential}").parse()?);
    req.headers_mut()
        .insert("x-webhook-connect-version", "2".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    next_of(&mut ws, "connected").await?;
    Ok(ws)
}

/// The next frame of type `kind`.
async fn next_of(ws: &mut Ws, kind: &str) -> anyhow::Result<Value> {
    let wait = timing::scaled(Duration::from_secs(20));
    let frame = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    if v["type"] == kind {
                        return Ok(v);
                    }
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("the stream ended before a {kind} frame: {other:?}"),
            }
        }
    };
    tokio::time::timeout(wait, frame)
        .await
        .map_err(|_| anyhow::anyhow!("no {kind} frame within {wait:?}"))?
}

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    Ok(ws.send(Message::Text(frame.to_string().into())).await?)
}

/// POSTs raw `body` to `url` (JSON content type); the status and the JSON answer.
async fn post(c: &Cloud, url: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
    let r = c
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// Waits until `channel`'s admin stats satisfy `ok`.
async fn stats_until(
    c: &Cloud,
    channel: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    wait_until(timing::scaled(Duration::from_secs(20)), what, || async {
        c.stats(channel).await.is_ok_and(|s| ok(&s))
    })
    .await?;
    Ok(())
}

/// SIGTERM, as `docker stop` sends it; the process must exit 0 within the grace period.
fn stop(c: &mut Cloud) {
    let code = c.proc.terminate(timing::scaled(Duration::from_secs(30)));
    assert_eq!(
        code,
        Some(0),
        "SIGTERM ends the cloud cleanly:\n{}",
        c.logs()
    );
}

/// Copies exactly what OPERATIONS.md says a backup is: `buffer.redb`, `hosted.redb`, `log/`.
fn copy_backup(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.join(BACKUP_DIR))?;
    for f in BACKUP_FILES {
        std::fs::copy(from.join(f), to.join(f))?;
    }
    for e in std::fs::read_dir(from.join(BACKUP_DIR))? {
        let e = e?;
        std::fs::copy(e.path(), to.join(BACKUP_DIR).join(e.file_name()))?;
    }
    Ok(())
}

/// Every body `target` received, counted.
fn bodies(target: &RecordingTarget) -> BTreeMap<Vec<u8>, usize> {
    let mut seen = BTreeMap::new();
    for r in target.requests() {
        *seen.entry(r.body.to_vec()).or_default() += 1;
    }
    seen
}

/// Delivers `channel` through the real connector to a recording target, posts a marker
/// after the restore, waits until the channel holds nothing (every lease ACKed, so every
/// delivery reached the target), and checks the target got exactly `expected` plus the
/// marker, each once.
async fn drain_exactly(
    c: &Cloud,
    channel: &str,
    token: &str,
    url: &str,
    expected: &[Vec<u8>],
) -> anyhow::Result<()> {
    let target = RecordingTarget::start().await?;
    let conn = connector_flags(c, channel, token, "websocket", &target.url, &[])?;
    let marker = format!(r#"{{"marker":"{channel} after the restore"}}"#).into_bytes();
    let (s, v) = post(c, url, &marker).await?;
    assert_eq!(s, 200, "{v}");
    let want: BTreeMap<Vec<u8>, usize> = expected
        .iter()
        .chain([&marker])
        .map(|b| (b.clone(), 1))
        .collect();
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        &format!("{channel}: the queued webhooks and the marker delivered"),
        || async { want.keys().all(|b| bodies(&target).contains_key(b)) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nconnector:\n{}", conn.stderr_text()))?;
    stats_until(c, channel, "nothing left queued or in flight", |s| {
        s["messages_queued"] == 0 && s["messages_in_flight"] == 0
    })
    .await?;
    assert_eq!(
        bodies(&target),
        want,
        "{channel}: exactly the queued webhooks and the marker, byte for byte, once each"
    );
    Ok(())
}

#[tokio::test]
async fn stop_copy_start_restores_queues_dead_letters_accounts_and_tokens() -> anyhow::Result<()> {
    let mut old = Cloud::builder(hooks()).self_service("keys").start().await?;
    let (_, key) = old.create_account("backup", Value::Null).await?;
    let created = old.create_channel(&key, json!({"name": "shop"})).await?;
    let hosted = created["channel"].as_str().unwrap().to_owned();
    let hosted_token = created["channel_token"].as_str().unwrap().to_owned();
    let hosted_url = created["webhook_url"].as_str().unwrap().to_owned();
    let cfg_url = format!("{}/webhook/cfg-hook", old.base);

    // Settled before the backup: three ACKed, one rejected into the dead letters.
    let mut conn = ws(&old, CFG, CFG_TOKEN).await?;
    let settled: Vec<Vec<u8>> = (0..3)
        .map(|i| format!(r#"{{"settled":{i}}}"#).into_bytes())
        .collect();
    for body in &settled {
        assert_eq!(post(&old, &cfg_url, body).await?.0, 200);
        let m = next_of(&mut conn, "webhook").await?;
        send(
            &mut conn,
            json!({"type": "ack", "message_id": m["message_id"]}),
        )
        .await?;
    }
    let dead = br#"{"dead": "letter", "why": "the target said 404"}"#.to_vec();
    let (_, posted) = post(&old, &cfg_url, &dead).await?;
    let dead_id = posted["message_id"].as_str().unwrap().to_owned();
    let m = next_of(&mut conn, "webhook").await?;
    assert_eq!(m["message_id"].as_str(), Some(dead_id.as_str()));
    send(
        &mut conn,
        json!({"type": "nack", "message_id": dead_id, "retry": false, "error": "HTTP 404"}),
    )
    .await?;
    stats_until(&old, CFG, "3 ACKed and 1 dead letter", |s| {
        s["messages_acked"] == 3 && s["dead_letters"] == 1 && s["messages_in_flight"] == 0
    })
    .await?;
    conn.close(None).await?;
    drop(conn);
    stats_until(&old, CFG, "the connection gone", |s| {
        s["connected_clients"] == 0
    })
    .await?;

    // Queued at the backup: bodies whose exact bytes matter (spacing, escapes, non-ASCII),
    // and on the self-service channel bytes that are not even UTF-8.
    let queued: Vec<Vec<u8>> = vec![
        b"{\"q\":0}".to_vec(),
        b"{ \"q\" : 1 ,\n  \"text\": \"\\u00e9t\xc3\xa9\" }\n".to_vec(),
        b"[2,   \"two\"\t]".to_vec(),
        format!(r#"{{"q":3,"pad":"{}"}}"#, "x".repeat(100_000)).into_bytes(),
        b"{\"q\":4}   ".to_vec(),
    ];
    for body in &queued {
        let (s, v) = post(&old, &cfg_url, body).await?;
        assert_eq!(s, 200, "{v}");
    }
    let hosted_queued: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        vec![0xff, 0x00, 0xfe, b'\n', 0x80],
        b"{\"third\":true}".to_vec(),
    ];
    for body in &hosted_queued {
        let (s, v) = post(&old, &hosted_url, body).await?;
        assert_eq!(s, 200, "{v}");
    }
    stats_until(&old, CFG, "5 queued", |s| s["messages_queued"] == 5).await?;
    stats_until(&old, &hosted, "3 queued", |s| s["messages_queued"] == 3).await?;

    // Stop, copy, start.
    stop(&mut old);
    let old_data = old.dir.path().join("data");
    assert!(
        old_data.join("LOCK").exists(),
        "the LOCK file exists and is left out"
    );
    let restored = tempfile::tempdir()?;
    copy_backup(&old_data, &restored.path().join("data"))?;
    drop(old);
    let new = Cloud::builder(hooks())
        .self_service("keys")
        .keep_dir(restored.path())
        .start()
        .await?;

    // The account's key and the self-service channel's token still authenticate.
    assert_eq!(
        new.api(Method::GET, "/account", &key, None).await?.0,
        200,
        "the API key"
    );
    assert_eq!(
        new.connector_status(&hosted, &hosted_token).await,
        200,
        "the channel token"
    );
    assert_eq!(new.connector_status(CFG, CFG_TOKEN).await, 200);
    // What is stored: the queued webhooks, not the settled ones; the dead letter.
    let s = new.stats(CFG).await?;
    assert_eq!(
        (s["messages_queued"].as_u64(), s["dead_letters"].as_u64()),
        (Some(5), Some(1)),
        "{s}"
    );
    let s = new.stats(&hosted).await?;
    assert_eq!(s["messages_queued"].as_u64(), Some(3), "{s}");
    let (status, list) = new
        .admin(Method::GET, &format!("/channels/{CFG}/dead-letters"))
        .await?;
    assert_eq!(status, 200, "{list}");
    let dl = &list["messages"][0];
    assert_eq!(
        (
            dl["message_id"].as_str(),
            dl["reason"].as_str(),
            dl["last_error"].as_str()
        ),
        (Some(dead_id.as_str()), Some("rejected"), Some("HTTP 404")),
        "{list}"
    );
    let (_, one) = new
        .admin(
            Method::GET,
            &format!("/channels/{CFG}/dead-letters/{dead_id}"),
        )
        .await?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(one["body_b64"].as_str().unwrap_or_default())?;
    assert_eq!(body, dead, "the dead letter's body, byte for byte");

    // Every queued webhook is delivered byte for byte, and only those.
    let new_cfg_url = format!("{}/webhook/cfg-hook", new.base);
    drain_exactly(&new, CFG, CFG_TOKEN, &new_cfg_url, &queued).await?;
    let new_hosted_url = hosted_url.replace(&old_base(&hosted_url)?, &new.base);
    drain_exactly(
        &new,
        &hosted,
        &hosted_token,
        &new_hosted_url,
        &hosted_queued,
    )
    .await?;
    Ok(())
}

/// `http://host:port` of a URL.
fn old_base(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("not an http URL: {url}"))?;
    let host = rest.split('/').next().unwrap_or_default();
    Ok(format!("http://{host}"))
}

/// Runs the cloud on `data` until it exits; its exit code and stderr. Fails if it is still
/// running after the deadline: it started on what it was given.
async fn start_on(data: &Path, config: &Path) -> anyhow::Result<(Option<i32>, String)> {
    let listen = format!("127.0.0.1:{}", free_port());
    let public = format!("http://{listen}");
    let mut p = ChildProcess::spawn(
        workspace_bin("webhook-connect-cloud")?,
        &[],
        &[
            ("WEBHOOK_CONNECT_LISTEN", &listen),
            ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().unwrap()),
            ("WEBHOOKS_CONFIG_FILE", config.to_str().unwrap()),
            ("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN),
            ("WEBHOOK_CONNECT_SELF_SERVICE", "keys"),
            ("WEBHOOK_CONNECT_PUBLIC_URL", &public),
        ],
        "cloud",
    )?;
    let wait = timing::scaled(Duration::from_secs(30));
    let exited = wait_until(wait, "the cloud to exit", || {
        let running = p.is_running();
        async move { !running }
    })
    .await;
    let health = reqwest::get(format!("{public}/health"))
        .await
        .map(|r| r.status().as_u16());
    exited.map_err(|e| {
        anyhow::anyhow!(
            "{e}: it started instead (/health: {health:?})\nstderr:\n{}",
            p.stderr_text()
        )
    })?;
    Ok((p.exit_status().and_then(|s| s.code()), p.stderr_text()))
}

/// How a file is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Its first 4 KiB (redb's header and commit slots) overwritten with garbage.
    Header,
    /// Cut to half its length.
    Truncated,
    /// Cut to nothing (a copy that failed half-way).
    Emptied,
}

fn damage(path: &Path, how: Damage) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    match how {
        Damage::Header => {
            let n = bytes.len().min(4096);
            for (i, b) in bytes[..n].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(151).wrapping_add(7);
            }
        }
        Damage::Truncated => bytes.truncate(bytes.len() / 2),
        Damage::Emptied => bytes.clear(),
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

#[tokio::test]
async fn a_damaged_store_file_fails_at_start_with_exit_69_naming_the_file() -> anyhow::Result<()> {
    // A stopped store with something in each file: a channel and messages, an account and
    // its channel.
    let mut c = Cloud::builder(hooks()).self_service("keys").start().await?;
    let (_, key) = c.create_account("damaged", Value::Null).await?;
    c.create_channel(&key, json!({"name": "shop"})).await?;
    for i in 0..20 {
        assert_eq!(c.post("cfg-hook", &format!(r#"{{"i":{i}}}"#)).await?.0, 200);
    }
    stop(&mut c);
    let data = c.dir.path().join("data");
    let config = c.dir.path().join("webhooks.json");

    // The copy itself starts: what the cases below see comes from the damage alone.
    let work = tempfile::tempdir()?;
    let intact = work.path().join("intact");
    copy_backup(&data, &intact.join("data"))?;
    let mut copy = Cloud::builder(hooks())
        .self_service("keys")
        .keep_dir(&intact)
        .start()
        .await?;
    assert_eq!(copy.stats(CFG).await?["messages_queued"], 20);
    stop(&mut copy);

    let mut case = 0;
    for file in BACKUP_FILES {
        for how in [Damage::Header, Damage::Truncated, Damage::Emptied] {
            let what = format!("{file} {how:?}");
            // (A directory name that does not itself contain the file's name.)
            case += 1;
            let dir = work.path().join(format!("case-{case}"));
            copy_backup(&data, &dir)?;
            damage(&dir.join(file), how)?;
            let (code, err) = start_on(&dir, &config).await?;
            eprintln!("{what}: exit {code:?}: {err}");
            assert!(
                !err.contains("panicked"),
                "{what}: a panic, not a clear refusal:\n{err}"
            );
            assert_eq!(code, Some(69), "{what}: exit 69\n{err}");
            assert!(
                err.contains(file),
                "{what}: the message names {file}:\n{err}"
            );
        }
    }
    // A copy without buffer.redb: the log's messages would start orphaned in a new, empty
    // store.
    let dir = work.path().join("without-the-store");
    copy_backup(&data, &dir)?;
    std::fs::remove_file(dir.join("buffer.redb"))?;
    let (code, err) = start_on(&dir, &config).await?;
    assert_eq!(code, Some(69), "buffer.redb missing beside the log\n{err}");
    assert!(
        err.contains("buffer.redb"),
        "the message names buffer.redb:\n{err}"
    );
    Ok(())
}

/// `CFG`'s queued messages.
async fn queued(c: &Cloud) -> anyhow::Result<usize> {
    Ok(c.stats(CFG).await?["messages_queued"].as_u64().unwrap_or(0) as usize)
}

/// The message log is not a redb file and is not refused whole. Start-up reads every
/// record's frame and head, never a body (docs/OPERATIONS.md, "Backups"): a damaged frame in
/// an older segment is logged at start, naming the segment, and the records after it in that
/// segment are skipped; a damaged body is found when that message is leased (logged, and the
/// rest of the channel is delivered).
#[tokio::test]
async fn a_damaged_log_segment_is_reported_and_the_rest_of_the_log_kept() -> anyhow::Result<()> {
    const SENT: usize = 40;
    let small_segments = [("WEBHOOK_CONNECT_SEGMENT_BYTES", "65536")];
    let mut c = Cloud::builder(hooks())
        .envs(&small_segments)
        .start()
        .await?;
    let pad = "x".repeat(8 * 1024);
    for i in 0..SENT {
        let (s, v) = c
            .post("cfg-hook", &format!(r#"{{"i":{i},"pad":"{pad}"}}"#))
            .await?;
        assert_eq!(s, 200, "{v}");
    }
    stop(&mut c);
    let data = c.dir.path().join("data");

    // A copy whose oldest segment is damaged at `offset`, and a cloud started on it.
    let restore = |offset: usize| {
        let data = data.clone();
        async move {
            let dir = tempfile::tempdir()?;
            copy_backup(&data, &dir.path().join("data"))?;
            let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("data").join(BACKUP_DIR))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            segments.sort();
            anyhow::ensure!(segments.len() >= 3, "several segments: {segments:?}");
            let oldest = segments[0].clone();
            let mut bytes = std::fs::read(&oldest)?;
            bytes[offset..offset + 16].fill(0xa5);
            std::fs::write(&oldest, bytes)?;
            let name = oldest.file_name().unwrap().to_string_lossy().into_owned();
            let cloud = Cloud::builder(hooks())
                .envs(&small_segments)
                .keep_dir(dir.path())
                .start()
                .await?;
            anyhow::Ok((dir, cloud, name))
        }
    };

    // The first record's frame: the whole oldest segment is skipped, the others kept.
    let (_dir, new, segment) = restore(0).await?;
    let kept = queued(&new).await?;
    assert!(
        kept > 0 && kept < SENT,
        "the damaged segment's records skipped, the rest kept: {kept} of {SENT}"
    );
    let logs = new.logs();
    assert!(
        logs.lines().any(|l| l.contains("ERROR")
            && l.contains("the message log is damaged")
            && l.contains(&segment)),
        "an error at start names the damaged segment:\n{logs}"
    );
    drop(new);

    // Inside the first record's body: nothing is noticed at start; leasing it fails and is
    // logged, every other message is delivered.
    let (_dir, new, _) = restore(4096).await?;
    assert_eq!(queued(&new).await?, SENT, "bodies are not read at start");
    let target = RecordingTarget::start().await?;
    let _conn = connector_flags(&new, CFG, CFG_TOKEN, "websocket", &target.url, &[])?;
    wait_until(
        timing::scaled(Duration::from_secs(30)),
        "every message but the damaged one delivered",
        || async { bodies(&target).len() >= SENT - 1 },
    )
    .await?;
    let logs = new.logs();
    assert!(
        logs.lines().any(|l| l.contains("ERROR")
            && l.contains("a leased message could not be read")
            && l.contains("body checksum mismatch")),
        "the damaged body is reported when leased:\n{logs}"
    );
    assert!(
        !bodies(&target).keys().any(|b| b.starts_with(br#"{"i":0,"#)),
        "the damaged message is never delivered"
    );
    Ok(())
}

/// docs/OPERATIONS.md, "Upgrades": a store written by a newer build is refused, exit 69 with
/// "buffer store format version N is newer than this build supports" — so going back to an
/// older binary after an upgrade that raised the format needs the backup taken before it.
#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_with_exit_69() -> anyhow::Result<()> {
    let mut c = Cloud::builder(hooks()).self_service("keys").start().await?;
    assert_eq!(c.post("cfg-hook", "{}").await?.0, 200);
    stop(&mut c);
    let data = c.dir.path().join("data");
    {
        use redb::ReadableTable as _;
        let db = redb::Database::open(data.join("buffer.redb"))?;
        let txn = db.begin_write()?;
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta)?;
            let current = table.get("format_version")?.map(|v| v.value());
            assert_eq!(current, Some(4), "the format this build writes");
            table.insert("format_version", 99)?;
        }
        txn.commit()?;
    }
    let (code, err) = start_on(&data, &c.dir.path().join("webhooks.json")).await?;
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains("buffer store format version 99 is newer than this build supports"),
        "{err}"
    );
    Ok(())
}
