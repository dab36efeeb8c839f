//! The connector CLI's control commands against a running `webhook-connect`: `status`, `events`
//! and `replay <message-id>`; a YAML configuration; `token_ref = "keyring"` through a real
//! Secret Service (the test kit's own D-Bus session and gnome-keyring).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{ChildProcess, RecordingTarget, SecretService, wait_until, workspace_bin};
use serde_json::{Value, json};

use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "control-e2e-channel-token";
const WAIT: Duration = Duration::from_secs(20);

/// Runs a client subcommand against the connector whose control file is `file`. Async: the
/// recording targets live on this test's runtime and must keep answering while the command runs.
async fn cli(file: &std::path::Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(workspace_bin("webhook-connect")?)
        .args(args)
        .env("CONNECTOR_CONTROL_FILE", file)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn connector_status_events_and_replay_from_the_cli() -> Result<()> {
    let cloud = Cloud::start(json!({"hook": connect_hook("ctl", TOKEN, json!({}))})).await?;
    let target = RecordingTarget::start().await?;
    let other = RecordingTarget::start().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("control.json");
    let file_s = file.to_str().context("utf-8")?.to_owned();
    let conn = ChildProcess::spawn(
        workspace_bin("webhook-connect")?,
        &[
            "--cloud-url",
            &cloud.base,
            "--channel",
            "ctl",
            "--target-url",
            &target.url,
            "--reconnect-delay",
            "0.2",
        ],
        &[
            ("CONNECTOR_TOKEN", TOKEN),
            ("CONNECTOR_CONTROL_FILE", &file_s),
        ],
        "connector",
    )?;
    wait_until(WAIT, "control file", || async { file.exists() }).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "control file mode {mode:o}");
    }
    let body = "{\"n\": 1,\n \"s\": \"é\"}";
    let (s, v) = cloud.post("hook", body).await?;
    ensure!(s == 200, "{v}");
    let got = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| conn.stderr_text())?;
    let id = got[0]
        .header("x-webhook-message-id")
        .context("id")?
        .to_owned();

    // events --json lists it once settled.
    wait_until(WAIT, "event delivered in the history", || {
        let file = file.clone();
        async move {
            cli(&file, &["events", "--json"])
                .await
                .is_ok_and(|(c, out, _)| c == 0 && out.contains("\"outcome\": \"delivered\""))
        }
    })
    .await?;
    let (c, out, err) = cli(&file, &["events"]).await?;
    ensure!(
        c == 0 && out.contains(&id) && out.contains("ctl (1 events)"),
        "{out}{err}"
    );

    // status: counters, latency and (after the first poll) the cloud queue.
    let (c, out, err) = cli(&file, &["status", "--json"]).await?;
    ensure!(c == 0, "{err}");
    let st: Value = serde_json::from_str(&out)?;
    ensure!(st[0]["state"] == "connected", "{st}");
    ensure!(st[0]["counters"]["delivered"] == 1, "{st}");
    ensure!(st[0]["latency"]["samples"] == 1, "{st}");
    let (c, out, _) = cli(&file, &["status"]).await?;
    ensure!(
        c == 0 && out.contains("delivered=1") && out.contains("latency p50="),
        "{out}"
    );

    // replay to the same target: the same bytes again.
    let (c, out, err) = cli(&file, &["replay", &id]).await?;
    ensure!(c == 0, "{out}{err}");
    ensure!(
        out.contains("HTTP 200") && out.contains(&format!("replay of {id}")),
        "{out}"
    );
    let got = target.wait_for_count(2, WAIT).await?;
    ensure!(got[1].body == got[0].body);
    ensure!(got[1].header("x-webhook-message-id") == Some(id.as_str()));

    // replay elsewhere with an edited header and body; the target refuses it: exit 1.
    other.set_status(400);
    let bf = dir.path().join("body.bin");
    std::fs::write(&bf, b"\x00\x01edited")?;
    let (c, out, err) = cli(
        &file,
        &[
            "replay",
            &id,
            "--target",
            &other.url,
            "-H",
            "X-Extra: yes",
            "-H",
            "Content-Type:",
            "--body-file",
            bf.to_str().context("utf-8")?,
        ],
    )
    .await?;
    ensure!(c == 1, "exit {c}: {out}{err}");
    ensure!(out.contains("HTTP 400"), "{out}");
    let got = other.wait_for_count(1, WAIT).await?;
    ensure!(got[0].body.as_ref() == b"\x00\x01edited");
    ensure!(got[0].header("x-extra") == Some("yes"));
    ensure!(
        got[0].header("content-type").is_none(),
        "{:?}",
        got[0].headers
    );

    // Unknown id: a clear error, exit 1.
    let (c, _, err) = cli(&file, &["replay", "msg_nope"]).await?;
    ensure!(c == 1 && err.contains("no event"), "{err}");
    // The cloud saw one delivery only: replays are local.
    let stats = cloud.stats("ctl").await?;
    ensure!(stats["messages_delivered"] == 1, "{stats}");
    drop(conn);
    Ok(())
}

#[tokio::test]
async fn connector_client_commands_without_a_running_connector_fail_clearly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (c, _, err) = cli(&dir.path().join("none.json"), &["status"]).await?;
    ensure!(c == 1 && err.contains("is a connector running"), "{err}");
    Ok(())
}

#[tokio::test]
async fn connector_loads_a_yaml_configuration() -> Result<()> {
    let cloud = Cloud::start(json!({"hook": connect_hook("yml", TOKEN, json!({}))})).await?;
    let target = RecordingTarget::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("connector.yaml");
    std::fs::write(
        &path,
        format!(
            "# a YAML connector configuration\ncloud_url: {}\nchannel: yml\ntoken_ref: env:MY_TOKEN\nprotocol: sse\nreconnect_delay: 0.2\ndefault_target:\n  url: {}\n  headers:\n    X-From-Yaml: \"1\"\n",
            cloud.base, target.url
        ),
    )?;
    let conn = ChildProcess::spawn(
        workspace_bin("webhook-connect")?,
        &[
            "--config",
            path.to_str().context("utf-8")?,
            "--control-listen",
            "off",
        ],
        &[("MY_TOKEN", TOKEN)],
        "connector",
    )?;
    let (s, v) = cloud.post("hook", "{\"y\":1}").await?;
    ensure!(s == 200, "{v}");
    let got = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| conn.stderr_text())?;
    ensure!(
        got[0].header("x-from-yaml") == Some("1"),
        "{:?}",
        got[0].headers
    );
    // A broken YAML file is a configuration error (64) with the reason.
    std::fs::write(&path, "cloud_url: [unclosed\n")?;
    let out = Command::new(workspace_bin("webhook-connect")?)
        .args(["--config", path.to_str().context("utf-8")?])
        .output()?;
    ensure!(out.status.code() == Some(64));
    ensure!(String::from_utf8_lossy(&out.stderr).contains("invalid YAML"));
    Ok(())
}

/// `token_ref = "keyring"` with a real Secret Service: the test kit's own D-Bus session and
/// gnome-keyring with a throwaway HOME. The token is stored with `webhook-connect store-token`.
/// Every process is the test's child, killed on drop; at the end nothing started in the session
/// may still run.
#[tokio::test]
async fn connector_reads_its_token_from_the_os_keyring() -> Result<()> {
    let cloud = Cloud::start(json!({"hook": connect_hook("kr", TOKEN, json!({}))})).await?;
    let target = RecordingTarget::start().await?;
    let keyring = SecretService::start()?;
    let env = keyring.env();
    let bin = workspace_bin("webhook-connect")?;
    let mut store = tokio::process::Command::new(&bin)
        .args(["store-token", "--for-cloud", &format!("{}/", cloud.base)])
        .args(["--for-channel", "kr"])
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = store.stdin.take().context("stdin")?;
        stdin.write_all(format!("{TOKEN}\n").as_bytes()).await?;
    }
    let stored = store.wait_with_output().await?;
    let stored_log = String::from_utf8_lossy(&stored.stderr).into_owned();
    ensure!(stored.status.success(), "store-token: {stored_log}");
    ensure!(stored_log.contains("stored \"channel:"), "{stored_log}");
    let account = format!("channel:{}/kr", cloud.base);
    ensure!(
        keyring.session().lookup(&account)?.as_deref() == Some(TOKEN),
        "the token is in gnome-keyring under {account}: {:?}",
        keyring.session().accounts()?
    );
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let conn = ChildProcess::spawn(
        &bin,
        &[
            "--cloud-url",
            &cloud.base,
            "--channel",
            "kr",
            "--token-ref",
            "keyring",
            "--target-url",
            &target.url,
            "--control-listen",
            "off",
        ],
        &env_refs,
        "keyring-connector",
    )?;
    let (s, v) = cloud.post("hook", "{\"k\":1}").await?;
    ensure!(s == 200, "{v}");
    target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| conn.stderr_text())?;
    let log = conn.stderr_text() + &stored_log;
    ensure!(
        !log.contains(TOKEN),
        "the token must never be logged: {log}"
    );
    drop(conn);
    // Kills the daemons and fails if the connector, the bus or the keyring daemon survived.
    keyring.shutdown()
}
