//! A full disk: the cloud answers 503 `buffer_unavailable` while its store cannot write,
//! keeps connectors draining what it stored, says so in `/health`, and takes webhooks again
//! on its own once space is free — every webhook answered 2xx is delivered.
//!
//! The data directory is a 4 MiB tmpfs (`mount` needs root, which CI has).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connect_testkit::{RecordingTarget, wait_until};
use serde_json::json;

use crate::client::{TestConnector, Transport};
use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "disk-full-channel-token";

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes zeros until the file system refuses.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// A cloud whose data directory is on a fresh 4 MiB tmpfs (the guard unmounts it), with
/// `extra` environment; `None` (told on stderr) where mounting needs root and this is not CI.
async fn cloud_on_tmpfs(
    tmp: &Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<Option<(Tmpfs, Cloud)>> {
    let Some(fs) = Tmpfs::mount(&tmp.join("disk"), "4m") else {
        // CI runs as root; a developer without root is told, not silently passed.
        assert!(
            std::env::var_os("CI").is_none(),
            "mount -t tmpfs failed: this test needs root (CI runs as root)"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return Ok(None);
    };
    let data = fs.0.join("data");
    let data_env = data.to_str().unwrap().to_owned();
    let mut env = vec![("WEBHOOK_CONNECT_DATA_DIR", data_env.as_str())];
    env.extend_from_slice(extra);
    let cloud = Cloud::start_with(
        json!({"hook": connect_hook("full", TOKEN, json!({"max_queue_size": 100000}))}),
        &env,
    )
    .await?;
    Ok(Some((fs, cloud)))
}

#[tokio::test]
async fn a_full_disk_refuses_drains_and_recovers_without_a_restart() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((fs, cloud)) = cloud_on_tmpfs(tmp.path(), &[]).await? else {
        return Ok(());
    };
    // Leave about 1.5 MiB for the store, the rest taken by another file on the same disk.
    let filler = fs.0.join("filler");
    let room = free_bytes(&fs.0).saturating_sub(1536 * 1024);
    std::fs::write(&filler, vec![0u8; room as usize])?;

    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..2000 {
        let (status, v) = cloud.post("hook", &body).await?;
        match status {
            200 => accepted.push(v["message_id"].as_str().unwrap().to_owned()),
            _ => {
                refused = Some((status, v));
                break;
            }
        }
    }
    let (status, v) = refused.expect("the disk never filled");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], "buffer_unavailable", "{v}");
    assert!(accepted.len() > 50, "only {} stored", accepted.len());
    // Take the last bytes too, so that no write at all can succeed from here on (a small
    // one, like a lease's state record, still fitted after the 503).
    let filler2 = fs.0.join("filler2");
    fill_up(&filler2);
    // The last partly used page of the log still takes a few small records.
    let mut tiny_refused = false;
    for _ in 0..500 {
        let (status, v) = cloud.post("hook", "{}").await?;
        if status == 200 {
            accepted.push(v["message_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(status, 503, "{v}");
            tiny_refused = true;
            break;
        }
    }
    assert!(tiny_refused, "tiny webhooks were still taken");
    // Nothing has written since: the store reports itself read-only, and the connector and
    // admin endpoints (reads) still answer.
    let h: serde_json::Value = cloud
        .http
        .get(format!("{}/health", cloud.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(h["components"]["buffer"], "read_only", "{h}");
    let status = cloud
        .http
        .get(format!("{}/connect/status/full", cloud.base))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .status();
    assert_eq!(status, 200, "connectors may still drain a read-only store");
    let stats = cloud.stats("full").await?;
    assert!(stats["messages_queued"].as_u64().unwrap() > 50, "{stats}");

    // /health says the store is read-only (and the service unhealthy: it cannot ingest).
    let health = cloud
        .http
        .get(format!("{}/health", cloud.base))
        .send()
        .await?;
    assert_eq!(health.status(), 503);
    let h: serde_json::Value = health.json().await?;
    assert_eq!(h["components"]["buffer"], "read_only", "{h}");

    // Connectors keep draining while writes fail.
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &cloud.base, "full", TOKEN, &target.url);
    wait_until(
        Duration::from_secs(20),
        "some deliveries while full",
        || async { conn.message_ids().len() >= 10 },
    )
    .await?;
    let (status, _) = cloud.post("hook", &body).await?;
    assert_eq!(status, 503, "still full: nothing was freed");

    // Free the space: the next webhooks are taken again within 10 s, with no restart.
    let pid = cloud.proc.pid();
    std::fs::remove_file(&filler)?;
    std::fs::remove_file(&filler2)?;
    let freed = Instant::now();
    let mut back = None;
    while freed.elapsed() < Duration::from_secs(10) {
        let (status, v) = cloud.post("hook", &body).await?;
        if status == 200 {
            accepted.push(v["message_id"].as_str().unwrap().to_owned());
            back = Some(freed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("no webhook taken within 10 s of freeing the disk");
    eprintln!("taking webhooks again {back:?} after the space was freed");
    assert_eq!(cloud.proc.pid(), pid, "the same process recovered");
    for _ in 0..20 {
        let (status, v) = cloud.post("hook", r#"{"after":true}"#).await?;
        assert_eq!(status, 200, "{v}");
        accepted.push(v["message_id"].as_str().unwrap().to_owned());
    }
    let health = cloud
        .http
        .get(format!("{}/health", cloud.base))
        .send()
        .await?;
    assert_eq!(health.status(), 200);

    // Every webhook answered 2xx is delivered.
    let want: HashSet<String> = accepted.iter().cloned().collect();
    wait_until(
        Duration::from_secs(60),
        "every accepted webhook delivered",
        || async {
            let got: HashSet<String> = conn.message_ids().into_iter().collect();
            want.is_subset(&got)
        },
    )
    .await?;
    Ok(())
}

/// The queue itself fills the disk (nothing else to free): draining it frees the space, and
/// webhooks are taken again without anyone touching the disk.
#[tokio::test]
async fn a_queue_that_filled_the_disk_frees_it_by_being_drained() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((_fs, cloud)) =
        cloud_on_tmpfs(tmp.path(), &[("WEBHOOK_CONNECT_SEGMENT_BYTES", "262144")]).await?
    else {
        return Ok(());
    };
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let mut accepted = Vec::new();
    for _ in 0..5000 {
        let (status, v) = cloud.post("hook", &body).await?;
        if status != 200 {
            assert_eq!(
                (status, &v["code"]),
                (503, &json!("buffer_unavailable")),
                "{v}"
            );
            break;
        }
        accepted.push(v["message_id"].as_str().unwrap().to_owned());
    }
    assert!(accepted.len() > 300, "only {} stored", accepted.len());
    let (status, _) = cloud.post("hook", &body).await?;
    assert_eq!(status, 503, "the disk is full");

    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &cloud.base, "full", TOKEN, &target.url);
    let want: HashSet<String> = accepted.iter().cloned().collect();
    wait_until(
        Duration::from_secs(60),
        "the whole queue delivered",
        || async {
            let got: HashSet<String> = conn.message_ids().into_iter().collect();
            want.is_subset(&got)
        },
    )
    .await?;
    // Nothing was freed by hand: the drained segments are deleted and webhooks come back.
    let drained = Instant::now();
    let mut back = false;
    while drained.elapsed() < Duration::from_secs(10) {
        if cloud.post("hook", r#"{"after":true}"#).await?.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "no webhook taken within 10 s of draining the queue that filled the disk"
    );
    eprintln!(
        "taking webhooks again {:?} after the drain",
        drained.elapsed()
    );
    Ok(())
}
