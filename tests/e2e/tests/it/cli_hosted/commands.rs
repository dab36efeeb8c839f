//! `channels …` and `dead-letters …`, with `--json` output parsed as the API's shapes.

use anyhow::{Context, Result, ensure};
use connect_testkit::{RecordingTarget, wait_for};

use super::{Machine, WAIT, admin_account, hosted_cloud, interrupt, login};

#[tokio::test]
async fn cli_channels_and_dead_letters_with_json_output() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "bob").await?;
    let m = Machine::new()?;
    login(&m, &cloud, &key, &m.path("key")).await?.ok()?;
    let who = m.run(&["whoami", "--json"], "").await?.ok()?.json()?;
    ensure!(
        who["name"] == "bob"
            && who["account_id"]
                .as_str()
                .is_some_and(|a| a.starts_with("acc_")),
        "{who}"
    );

    let created = m
        .run(&["channels", "create", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
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
    let other = m
        .run(
            &[
                "listen",
                "--channel",
                "eve.shop",
                "--forward-to",
                "http://127.0.0.1:9",
            ],
            "",
        )
        .await?;
    ensure!(
        other.code == Some(64) && other.stderr.contains("eve"),
        "another account's channel: {:?} {}",
        other.code,
        other.stderr
    );
    let taken = m.run(&["channels", "create", "shop"], "").await?;
    ensure!(
        taken.code == Some(1) && taken.stderr.contains("409"),
        "{}",
        taken.stderr
    );

    // Three webhooks dead-lettered by a target answering 404.
    let target = RecordingTarget::start().await?;
    target.set_status(404);
    for i in 0..3 {
        let r = cloud
            .http
            .post(&url)
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await?;
        ensure!(r.status() == 200);
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
    let dl = m
        .run(&["dead-letters", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
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

    let del = m
        .run(&["dead-letters", "shop", "--delete", &ids[0], "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        del["status"] == "deleted" && del["message_id"] == ids[0].as_str(),
        "{del}"
    );
    let rep = m
        .run(&["dead-letters", "shop", "--replay", &ids[1], "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(rep["status"] == "replayed", "{rep}");
    let all = m
        .run(&["dead-letters", "shop", "--replay-all", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(all["replayed"] == 1 && all["remaining"] == 0, "{all}");
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
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
    let purged = m
        .run(&["dead-letters", "shop", "--purge", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(purged["deleted"] == 2, "{purged}");
    let gone = m
        .run(&["dead-letters", "shop", "--delete", &ids[1]], "")
        .await?;
    ensure!(
        gone.code == Some(1),
        "a missing dead letter is an error: {:?}",
        gone.code
    );

    let rotated = m
        .run(
            &[
                "channels",
                "rotate-token",
                "shop",
                "--grace-seconds",
                "0",
                "--json",
            ],
            "",
        )
        .await?
        .ok()?
        .json()?;
    ensure!(
        rotated["new_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ch_tok_")),
        "{rotated}"
    );
    let deleted = m
        .run(&["channels", "delete", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(deleted["deleted"] == "bob.shop", "{deleted}");
    let r = cloud.http.post(&url).body("{}").send().await?;
    ensure!(
        r.status() == 404,
        "a deleted channel's URL answers 404, got {}",
        r.status()
    );
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        list["channels"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );
    let again = m.run(&["channels", "delete", "shop"], "").await?;
    ensure!(
        again.code == Some(1) && again.stderr.contains("404"),
        "{}",
        again.stderr
    );

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
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        list["channels"][0]["stats"]["messages_queued"] == 1,
        "only the good one is stored: {list}"
    );
    let bad = m
        .run(
            &[
                "channels",
                "create",
                "x",
                "--verify",
                "gitlab",
                "--secret-stdin",
            ],
            "s\n",
        )
        .await?;
    ensure!(
        bad.code == Some(64) && bad.stderr.contains("github"),
        "{}",
        bad.stderr
    );
    Ok(())
}
