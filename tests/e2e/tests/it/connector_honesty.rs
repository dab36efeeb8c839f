//! The `webhook-connect` binary against the protocol-v1 cloud stand-in of the test kit (issue 15,
//! "connector honesty"): every command ends cleanly when its stdout is closed, and dead letters
//! and retries leave one log line each at the default level, without bodies or secrets.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{
    ChildProcess, RecordingTarget, V1Cloud, V1Options, wait_until, workspace_bin,
};

const TOKEN: &str = "v1-cli-token-s3cr3t";
const WAIT: Duration = Duration::from_secs(20);

/// A connector process (default log level) for the stand-in's channel `ch`, with its control
/// file in `dir`.
fn connector(v1: &V1Cloud, target_url: &str, dir: &std::path::Path) -> Result<ChildProcess> {
    let file = dir.join("control.json");
    ChildProcess::spawn(
        workspace_bin("webhook-connect")?,
        &[
            "--cloud-url",
            &v1.base,
            "--channel",
            "ch",
            "--protocol",
            "websocket",
            "--target-url",
            target_url,
            "--reconnect-delay",
            "0.2",
        ],
        &[
            ("CONNECTOR_TOKEN", TOKEN),
            ("CONNECTOR_CONTROL_FILE", file.to_str().context("utf-8")?),
        ],
        "connector",
    )
}

async fn post(v1: &V1Cloud, body: &str, headers: &[(&str, &str)]) -> Result<()> {
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhook/hook", v1.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let s = req.send().await?.status();
    ensure!(s == 200, "ingress answered {s}");
    Ok(())
}

/// Runs a client command whose stdout is a pipe nobody reads any more (its read end is closed
/// before the command starts, so the first write fails with EPIPE).
async fn with_closed_stdout(dir: &std::path::Path, args: &[&str]) -> Result<(Option<i32>, String)> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = tokio::process::Command::new(workspace_bin("webhook-connect")?)
        .args(args)
        .env("CONNECTOR_CONTROL_FILE", dir.join("control.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        // Not `output()`: tokio's replaces the configured stdout with a pipe of its own.
        .spawn()?
        .wait_with_output()
        .await?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn every_command_exits_0_on_a_closed_stdout() -> Result<()> {
    let v1 = V1Cloud::start(V1Options::new("ch", TOKEN)).await?;
    let target = RecordingTarget::start().await?;
    let dir = tempfile::tempdir()?;
    post(&v1, r#"{"n":1}"#, &[]).await?;
    let conn = connector(&v1, &target.url, dir.path())?;
    let got = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| conn.stderr_text())?;
    let id = got[0]
        .header("x-webhook-message-id")
        .context("message id")?
        .to_owned();
    wait_until(WAIT, "the ACK at the v1 cloud", || async {
        !v1.records().acked.is_empty()
    })
    .await?;

    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["events"],
        vec!["events", "--json"],
        vec!["replay", &id],
        vec!["replay", &id, "--json"],
        vec!["--help"],
        vec!["status", "--help"],
        vec!["--version"],
    ];
    let mut failed = Vec::new();
    for args in commands {
        let (code, stderr) = with_closed_stdout(dir.path(), &args).await?;
        if code != Some(0) || !stderr.is_empty() {
            failed.push(format!("webhook-connect {args:?}: exit {code:?}\n{stderr}"));
        }
    }
    ensure!(
        failed.is_empty(),
        "on a closed stdout:\n{}",
        failed.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn dead_letters_and_retries_are_logged_once_without_bodies_or_secrets() -> Result<()> {
    let v1 = V1Cloud::start(V1Options::new("ch", TOKEN)).await?;
    let target = RecordingTarget::start().await?;
    let dir = tempfile::tempdir()?;
    // A secret in the target URL's query must not reach the log either.
    let target_url = format!("{}/in?sig=url-s3cr3t", target.url.trim_end_matches('/'));
    let conn = connector(&v1, &target_url, dir.path())?;
    let secrets = [
        TOKEN,
        "body-s3cr3t",
        "header-value-s3cr3t",
        "url-s3cr3t",
        "target-answer-s3cr3t",
    ];
    target.set_body("target-answer-s3cr3t");

    // A 404: dead-lettered (NACK retry=false).
    target.set_status(404);
    post(
        &v1,
        r#"{"note":"body-s3cr3t"}"#,
        &[("x-trace", "header-value-s3cr3t")],
    )
    .await?;
    let first = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| conn.stderr_text())?[0]
        .header("x-webhook-message-id")
        .context("message id")?
        .to_owned();
    wait_until(WAIT, "the dead-letter log line", || async {
        conn.stderr_text()
            .lines()
            .any(|l| l.contains("dead-lettered") && l.contains(&first))
    })
    .await
    .with_context(|| conn.stderr_text())?;

    // A 503, then 200: one local retry.
    target.set_status(200);
    target.script(&[503]);
    post(
        &v1,
        r#"{"note":"body-s3cr3t"}"#,
        &[("x-trace", "header-value-s3cr3t")],
    )
    .await?;
    let second = target
        .wait_for_count(3, WAIT)
        .await
        .with_context(|| conn.stderr_text())?[1]
        .header("x-webhook-message-id")
        .context("message id")?
        .to_owned();
    wait_until(WAIT, "the ACK of the retried webhook", || async {
        v1.records().acked.iter().any(|(m, _)| *m == second)
    })
    .await?;
    wait_until(WAIT, "the retry log line", || async {
        conn.stderr_text()
            .lines()
            .any(|l| l.contains("retrying") && l.contains(&second))
    })
    .await
    .with_context(|| conn.stderr_text())?;

    let log = conn.stderr_text();
    let lines_about = |id: &str, what: &str| {
        log.lines()
            .filter(|l| l.contains(id) && l.contains(what))
            .count()
    };
    ensure!(lines_about(&first, "dead-lettered") == 1, "{log}");
    ensure!(lines_about(&second, "retrying") == 1, "{log}");
    ensure!(lines_about(&second, "dead-lettered") == 0, "{log}");
    // The lines say why.
    ensure!(
        log.lines()
            .any(|l| l.contains(&first) && l.contains("HTTP 404")),
        "{log}"
    );
    ensure!(
        log.lines()
            .any(|l| l.contains(&second) && l.contains("HTTP 503")),
        "{log}"
    );
    for s in secrets {
        ensure!(!log.contains(s), "{s:?} in the log:\n{log}");
    }
    Ok(())
}
