//! `channels …` and `dead-letters …`, with `--json` output parsed as the API's shapes.

use anyhow::{Context, Result, ensure};
use connect_testkit::{Cloud, RecordingTarget, wait_for};
use serde_json::Value;

use super::{Machine, WAIT, admin_account, hosted_cloud, interrupt, login};

/// Runs `args` (no stdin), which must exit 0, and parses its `--json` output.
async fn run_json(m: &Machine, args: &[&str]) -> Result<Value> {
    m.run(args, "").await?.ok()?.json()
}

/// Runs `args` with `stdin`; it must exit with `code` and name `needle` on stderr.
async fn run_fails(m: &Machine, args: &[&str], stdin: &str, code: i32, needle: &str) -> Result<()> {
    let run = m.run(args, stdin).await?;
    ensure!(
        run.code == Some(code) && run.stderr.contains(needle),
        "{args:?}: exit {:?}, not {code} naming {needle:?}: {}",
        run.code,
        run.stderr
    );
    Ok(())
}

/// POSTs `body` to a channel's webhook URL; the status.
async fn post_webhook(cloud: &Cloud, url: &str, body: String) -> Result<u16> {
    Ok(cloud
        .http
        .post(url)
        .body(body)
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test]
async fn cli_channels_and_dead_letters_with_json_output() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "bob").await?;
    let m = Machine::new()?;
    login(&m, &cloud, &key, &m.path("key")).await?.ok()?;
    let who = run_json(&m, &["whoami", "--json"]).await?;
    ensure!(
        who["name"] == "bob"
            && who["account_id"]
                .as_str()
                .is_some_and(|a| a.starts_with("acc_")),
        "{who}"
    );

    let created = run_json(&m, &["channels", "create", "shop", "--json"]).await?;
    ensure!(created["channel"] == "bob.shop", "{created}");
    let url = created["webhook_url"]
        .as_str()
        .context("webhook_url")?
        .to_owned();
    ensure!(
        created["channel_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{created}"
    );
    let human = m.run(&["channels", "list"], "").await?.ok()?;
    ensure!(
        human.stdout.contains("bob.shop") && human.stdout.contains(&url),
        "{}",
        human.stdout
    );
    // Another account's channel.
    run_fails(
        &m,
        &[
            "listen",
            "--channel",
            "eve.shop",
            "--forward-to",
            "http://127.0.0.1:9",
        ],
        "",
        64,
        "eve",
    )
    .await?;
    run_fails(&m, &["channels", "create", "shop"], "", 1, "409").await?;

    // Three webhooks dead-lettered by a target answering 404.
    let target = RecordingTarget::start().await?;
    target.set_status(404);
    for i in 0..3 {
        ensure!(post_webhook(&cloud, &url, format!("{{\"n\":{i}}}")).await? == 200);
    }
    let mut p = m.listen(&["--channel", "shop", "--forward-to", &target.url])?;
    wait_for(WAIT, "three dead-lettered lines", || async {
        (p.stdout_text().matches("(dead-lettered)").count() == 3).then_some(())
    })
    .await
    .with_context(|| p.stdout_text())?;
    ensure!(interrupt(&mut p).await? == Some(0));
    // The webhook id is the URL's secret part: listen's log (stderr) never names it.
    let webhook_id = created["webhook_id"].as_str().context("webhook_id")?;
    ensure!(!p.stderr_text().contains(webhook_id), "{}", p.stderr_text());
    let dl = run_json(&m, &["dead-letters", "shop", "--json"]).await?;
    ensure!(dl["total"] == 3 && dl["channel"] == "bob.shop", "{dl}");
    let ids: Vec<String> = dl["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|v| v["message_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(ids.len() == 3);
    let human = m.run(&["dead-letters", "bob.shop"], "").await?.ok()?;
    ensure!(
        human.stdout.contains(&ids[0]) && human.stdout.contains("HTTP 404"),
        "{}",
        human.stdout
    );

    let del = run_json(&m, &["dead-letters", "shop", "--delete", &ids[0], "--json"]).await?;
    ensure!(
        del["status"] == "deleted" && del["message_id"] == ids[0].as_str(),
        "{del}"
    );
    let rep = run_json(&m, &["dead-letters", "shop", "--replay", &ids[1], "--json"]).await?;
    ensure!(rep["status"] == "replayed", "{rep}");
    let all = run_json(&m, &["dead-letters", "shop", "--replay-all", "--json"]).await?;
    ensure!(all["replayed"] == 1 && all["remaining"] == 0, "{all}");
    let list = run_json(&m, &["channels", "list", "--json"]).await?;
    ensure!(
        list["channels"][0]["stats"]["messages_queued"] == 2,
        "{list}"
    );
    // Dead-lettered again, then purged.
    let mut p = m.listen(&["--channel", "bob.shop", "--forward-to", &target.url])?;
    wait_for(WAIT, "two dead-lettered lines", || async {
        (p.stdout_text().matches("(dead-lettered)").count() == 2).then_some(())
    })
    .await
    .with_context(|| p.stdout_text())?;
    ensure!(interrupt(&mut p).await? == Some(0));
    let purged = run_json(&m, &["dead-letters", "shop", "--purge", "--json"]).await?;
    ensure!(purged["deleted"] == 2, "{purged}");
    let gone = m
        .run(&["dead-letters", "shop", "--delete", &ids[1]], "")
        .await?;
    ensure!(
        gone.code == Some(1),
        "a missing dead letter is an error: {:?}",
        gone.code
    );

    let rotated = run_json(
        &m,
        &[
            "channels",
            "rotate-token",
            "shop",
            "--grace-seconds",
            "0",
            "--json",
        ],
    )
    .await?;
    ensure!(
        rotated["new_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ch_tok_")),
        "{rotated}"
    );
    let deleted = run_json(&m, &["channels", "delete", "shop", "--json"]).await?;
    ensure!(deleted["deleted"] == "bob.shop", "{deleted}");
    let status = post_webhook(&cloud, &url, "{}".into()).await?;
    ensure!(
        status == 404,
        "a deleted channel's URL answers 404, got {status}"
    );
    let list = run_json(&m, &["channels", "list", "--json"]).await?;
    ensure!(
        list["channels"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );
    run_fails(&m, &["channels", "delete", "shop"], "", 1, "404").await?;

    // A provider check: the secret comes from stdin and is never shown again.
    let gh = m
        .run(
            &[
                "channels",
                "create",
                "gh",
                "--verify",
                "github",
                "--secret-stdin",
                "--json",
            ],
            "s3cret-signing\n",
        )
        .await?
        .ok()?;
    ensure!(!gh.stdout.contains("s3cret-signing"), "{}", gh.stdout);
    let gh = gh.json()?;
    ensure!(
        gh["verify"]["preset"] == "github" && gh["verify"]["secret_set"] == true,
        "{gh}"
    );
    let gh_url = gh["webhook_url"].as_str().context("webhook_url")?;
    let body = br#"{"action":"opened"}"#.to_vec();
    let sign = |secret: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    for (secret, want) in [(&b"wrong"[..], 401), (&b"s3cret-signing"[..], 200)] {
        let r = cloud
            .http
            .post(gh_url)
            .header("x-hub-signature-256", sign(secret))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        ensure!(r.status() == want, "signed with {secret:?}: {}", r.status());
    }
    let list = run_json(&m, &["channels", "list", "--json"]).await?;
    ensure!(
        list["channels"][0]["stats"]["messages_queued"] == 1,
        "only the good one is stored: {list}"
    );
    // An unknown preset: the error names the known ones.
    run_fails(
        &m,
        &[
            "channels",
            "create",
            "x",
            "--verify",
            "gitlab",
            "--secret-stdin",
        ],
        "s\n",
        64,
        "github",
    )
    .await?;
    Ok(())
}
