//! `listen`: from a fresh machine to forwarding, and how it ends (Ctrl-C, a rotated key, a
//! deleted channel).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{RecordingTarget, wait_for};
use serde_json::Value;

use super::{Machine, WAIT, admin_account, hosted_cloud, interrupt, login, wait_stdout};

#[tokio::test]
async fn cli_login_then_listen_forwards_a_webhook_byte_for_byte_from_a_fresh_machine() -> Result<()>
{
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "alice").await?;
    let target = RecordingTarget::start().await?;
    let m = Machine::new()?;
    let key_file = m.path("keys/webhook-connect.key");
    let run = login(&m, &cloud, &key, &key_file).await?.ok()?;
    ensure!(run.stdout.contains("alice"), "{}", run.stdout);
    ensure!(
        !run.stdout.contains(&key) && !run.stderr.contains(&key),
        "the key is never printed"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "key file mode {mode:o}");
    }
    // The second command: no --cloud-url, no --key-file: both remembered by login.
    let mut p = m.listen(&["--forward-to", &format!("{}/hooks", target.url)])?;
    let out = wait_stdout(&p, "\n").await?;
    let first = out.lines().next().unwrap_or_default();
    let url = first
        .strip_prefix("Webhook URL: ")
        .with_context(|| format!("the first line is the webhook URL: {out}"))?
        .trim()
        .to_owned();
    ensure!(
        url.starts_with(&format!("{}/webhook/wh_", cloud.base)),
        "{url}"
    );
    let body: Vec<u8> = b"{\"k\": \"h\xc3\xa9llo\",\n \"n\": 1.50e3 }\r\n".to_vec();
    let r = cloud
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", "sha256=abc")
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 200, "ingress answered {}", r.status());
    let got = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| p.stderr_text())?;
    ensure!(got[0].body == body, "byte for byte: {:?}", got[0].body);
    ensure!(got[0].header("x-hub-signature-256") == Some("sha256=abc"));
    ensure!(got[0].header("content-type") == Some("application/json"));
    let out = wait_stdout(&p, "-> 200").await?;
    let line = out
        .lines()
        .find(|l| l.contains("-> 200"))
        .unwrap_or_default();
    ensure!(
        line.contains("POST /webhook/wh_") && line.contains(" ms"),
        "{line}"
    );
    let code = interrupt(&mut p).await?;
    ensure!(
        code == Some(0),
        "Ctrl-C exits 0, got {code:?}\n{}",
        p.stderr_text()
    );
    ensure!(!p.stderr_text().contains(&key) && !p.stdout_text().contains(&key));
    // The channel `listen` made is the account's `dev`, and a second listen reuses it.
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    let names: Vec<&str> = list["channels"]
        .as_array()
        .context("channels")?
        .iter()
        .filter_map(|c| c["channel"].as_str())
        .collect();
    ensure!(names == ["alice.dev"], "{list}");
    let mut again = m.listen(&["--forward-to", &target.url, "--json"])?;
    let out = wait_stdout(&again, "\n").await?;
    let ready: Value = serde_json::from_str(out.lines().next().unwrap_or_default())?;
    ensure!(
        ready["webhook_url"] == url.as_str() && ready["created"] == false,
        "{ready}"
    );
    ensure!(interrupt(&mut again).await? == Some(0));
    Ok(())
}

/// `listen` ends by itself when it cannot go on: the key rotated by the operator (the cloud
/// closes the link with 4005) exits 77, the channel deleted (4006) exits 1.
#[tokio::test]
async fn cli_listen_ends_with_77_on_a_rotated_key_and_1_on_a_deleted_channel() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "erin").await?;
    let target = RecordingTarget::start().await?;
    let m = Machine::new()?;
    let key_file = m.path("key");
    login(&m, &cloud, &key, &key_file).await?.ok()?;
    let id = m.run(&["whoami", "--json"], "").await?.ok()?.json()?["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let mut p = m.listen(&["--forward-to", &target.url])?;
    wait_for(WAIT, "connected", || async {
        p.stderr_text().contains("connected (").then_some(())
    })
    .await
    .with_context(|| p.stderr_text())?;
    let (s, v) = cloud
        .admin(reqwest::Method::POST, &format!("/accounts/{id}/rotate-key"))
        .await?;
    ensure!(s == 200, "{v}");
    let new_key = v["api_key"].as_str().context("api_key")?.to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen kept running with a rotated key:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = p.exit_status().and_then(|s| s.code());
    ensure!(
        code == Some(77),
        "rotated key: {code:?}\n{}",
        p.stderr_text()
    );

    login(&m, &cloud, &new_key, &key_file).await?.ok()?;
    let mut p = m.listen(&["--forward-to", &target.url])?;
    wait_for(WAIT, "connected", || async {
        p.stderr_text().contains("connected (").then_some(())
    })
    .await
    .with_context(|| p.stderr_text())?;
    m.run(&["channels", "delete", "dev"], "").await?.ok()?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen kept running on a deleted channel:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = p.exit_status().and_then(|s| s.code());
    ensure!(
        code == Some(1),
        "deleted channel: {code:?}\n{}",
        p.stderr_text()
    );
    Ok(())
}

/// Ctrl-C while a delivery is at the target: `listen` waits for the target's answer, prints its
/// line, ACKs it (nothing is left queued or in flight at the cloud) and exits 0.
#[tokio::test]
async fn cli_listen_settles_a_running_delivery_on_ctrl_c() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "jo").await?;
    let target = RecordingTarget::start().await?;
    target.set_delay(Duration::from_secs(2));
    let m = Machine::new()?;
    login(&m, &cloud, &key, &m.path("key")).await?.ok()?;
    let mut p = m.listen(&["--forward-to", &target.url, "--json"])?;
    let out = wait_stdout(&p, "\n").await?;
    let ready: Value = serde_json::from_str(out.lines().next().unwrap_or_default())?;
    let url = ready["webhook_url"].as_str().context("webhook_url")?;
    let r = cloud.http.post(url).body("{\"slow\":true}").send().await?;
    ensure!(r.status() == 200);
    // The target has the request and holds its answer for 2 s: interrupt now.
    target.wait_for_count(1, WAIT).await?;
    let code = interrupt(&mut p).await?;
    ensure!(code == Some(0), "{code:?}\n{}", p.stderr_text());
    let line = p
        .stdout_text()
        .lines()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no delivery line: {}", p.stdout_text()))?;
    let d: Value = serde_json::from_str(&line)?;
    ensure!(d["status"] == 200 && d["outcome"] == "delivered", "{d}");
    ensure!(
        d["latency_ms"].as_f64().is_some_and(|ms| ms >= 2000.0),
        "{d}"
    );
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    let stats = &list["channels"][0]["stats"];
    ensure!(
        stats["messages_queued"] == 0
            && stats["messages_in_flight"] == 0
            && stats["messages_acked"] == 1,
        "settled at the cloud: {list}"
    );
    ensure!(target.count() == 1, "delivered once");
    Ok(())
}
