//! Self-service in the real app (HOSTED.md §5): a cloud in `keys` mode with an account the admin
//! created. The user signs in with the API key in Settings → Accounts (it lands in the Secret
//! Service under the CLI's entry, nowhere else), creates a channel with "New channel", copies its
//! URL, and a webhook posted to it reaches the local target; the account's other channel is
//! taken with "Use here"; the tray offers "New channel…" and "Copy webhook URL"; dead letters
//! are read with the key; removal deletes the channel at the cloud too when asked.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{RecordingTarget, wait_until};
use serde_json::{Value, json};

use crate::driver::{self, Driver};
use crate::webdriver::{By, Session};
use crate::{secret_tool_lookup, start_keyring, tray, x11};

async fn post(url: &str, body: &str) -> Result<u16> {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// What the X clipboard holds once it equals `want` (or what it held at the deadline).
async fn clipboard_becomes(want: &str) -> Result<Option<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::task::spawn_blocking(x11::clipboard_text).await??;
        if got.as_deref() == Some(want) || tokio::time::Instant::now() > deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `webhook-connect` entry of the Secret Service, for a failure message (no secrets).
fn secret_tool_search(home: &std::path::Path) -> String {
    Command::new("secret-tool")
        .args(["search", "--all", "service", "webhook-connect"])
        .env("HOME", home)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&o.stderr).lines())
                .filter(|l| !l.starts_with("secret = "))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// Waits until `condition` (a JavaScript expression) holds in the page and one more frame was
/// drawn, so that a screenshot shows what was just typed or clicked.
async fn settled(s: &Session, condition: &str) -> Result<()> {
    let script = format!(
        "const done = arguments[0]; const check = () => {{ if ({condition}) \
         requestAnimationFrame(() => requestAnimationFrame(() => done(true))); \
         else setTimeout(check, 50); }}; check();"
    );
    s.execute_async(&script).await?;
    Ok(())
}

/// Clicks the item `find` picks in the tray menu as it is now; the app rebuilds its menu when
/// its state changes, so a click that lands on a replaced menu is tried again on the new one.
async fn click_in_tray(
    tray: &tray::Tray,
    item: &tray::Item,
    find: &dyn Fn(&tray::Node) -> Option<i32>,
) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        let menu = tray.menu(item).await?;
        let id = find(&menu).with_context(|| format!("not in {:?}", menu.labels()))?;
        match tray.click(item, id).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no click")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus, gnome-keyring, tauri-driver and WebKitWebDriver: run scripts/test-app.sh"]
async fn sign_in_new_channel_use_here_tray_dead_letters_and_delete_at_the_cloud()
-> std::result::Result<(), String> {
    crate::outcome(
        sign_in_new_channel_use_here_tray_dead_letters_and_delete_at_the_cloud_flow().await,
    )
}

async fn sign_in_new_channel_use_here_tray_dead_letters_and_delete_at_the_cloud_flow() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    let config_home = home.join(".config");
    std::fs::create_dir_all(&config_home)?;
    let _keyring = start_keyring(&home)?;

    let mut cloud = connect_testkit::Cloud::builder(json!({}))
        .self_service("keys")
        .http_timeout(Duration::from_secs(10))
        .start()
        .await?;
    let base = cloud.base.clone();
    let (_, key) = cloud.create_account("alice", Value::Null).await?;
    let target = RecordingTarget::start().await?;

    let settings_dir = config_home.join("dev.webhookconnect.desktop");
    std::fs::create_dir_all(&settings_dir)?;
    let settings_path = settings_dir.join("settings.toml");
    std::fs::write(&settings_path, "[app]\nstart_minimized = false\n")?;

    let log_path = tmp.path().join("app.log");
    let tray = tray::Tray::start().await?;
    // The app's own default log filter (checked below: it never names a webhook id).
    let driver = Driver::start(&home, &config_home, &log_path, None).await?;
    let s = driver.session().await?;
    let shots = driver::screenshots_dir()?;

    let result: Result<()> = async {
        // Not signed in yet: "New channel" asks to sign in first.
        s.click(By::testid("new-channel")).await?;
        s.wait_for(By::testid("new-channel-sign-in"), Duration::from_secs(30))
            .await?;
        s.click(By::testid("go-accounts")).await?;
        s.type_into(By::testid("account-cloud-url"), &base).await?;
        // A key the cloud does not know is refused, and nothing is stored.
        s.type_into(
            By::testid("account-api-key"),
            &format!("whc_{}", "A".repeat(43)),
        )
        .await?;
        s.click(By::testid("account-submit")).await?;
        s.wait_text(
            By::testid("account-error"),
            "refused this API key",
            Duration::from_secs(15),
        )
        .await?;
        let key_account = format!("api-key:{base}");
        ensure!(secret_tool_lookup(&home, &key_account).is_none(), "a refused key was stored");
        s.type_into(By::testid("account-api-key"), &key).await?;
        s.click(By::testid("account-submit")).await?;
        s.wait_for(By::testid("account-alice"), Duration::from_secs(15))
            .await?;
        // The key is in the Secret Service under the CLI's entry, and nowhere in the file.
        let stored = secret_tool_lookup(&home, &key_account);
        ensure!(
            stored.as_deref() == Some(key.as_str()),
            "the key in the Secret Service: {stored:?}; entries: {}",
            secret_tool_search(&home)
        );
        let file = std::fs::read_to_string(&settings_path)?;
        ensure!(!file.contains(&key), "{file}");
        ensure!(file.contains("[[accounts]]") && file.contains("alice"), "{file}");
        s.screenshot(&shots.join("08-settings-accounts.png")).await?;

        // New channel: name and target; created at the cloud, shown with its URL, connected.
        s.click(By::testid("nav-overview")).await?;
        s.click(By::testid("new-channel")).await?;
        s.type_into(By::testid("new-name"), "shop").await?;
        s.type_into(By::testid("new-target"), &format!("{}/hook", target.url))
            .await?;
        let typed = format!("{}/hook", target.url);
        settled(&s, &format!("document.querySelector('[data-testid=\"new-target\"]').value === {typed:?}")).await?;
        s.screenshot(&shots.join("09-new-channel.png")).await?;
        s.click(By::testid("new-create")).await?;
        // (WebKitWebDriver's element text is empty for this ellipsised `<code>`: read the DOM.)
        s.wait_for(By::testid("created-webhook-url"), Duration::from_secs(20))
            .await?;
        let url = s
            .execute("return document.querySelector('[data-testid=\"created-webhook-url\"]').textContent;")
            .await?
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        ensure!(url.starts_with(&format!("{base}/webhook/wh_")), "{url}");
        s.wait_text(
            By::testid("created-state"),
            "onnected",
            Duration::from_secs(30),
        )
        .await
        .context("the new channel to connect")?;
        // Copy puts the URL on the desktop's clipboard.
        s.click(By::testid("created-copy")).await?;
        let pasted = clipboard_becomes(&url).await?;
        ensure!(pasted.as_deref() == Some(url.as_str()), "clipboard: {pasted:?}, not {url}");
        s.screenshot(&shots.join("10-new-channel-created.png"))
            .await?;
        // Only the account's key is stored: no channel token.
        ensure!(
            secret_tool_lookup(&home, &format!("channel:{base}/alice.shop")).is_none(),
            "a channel token was stored"
        );

        // A webhook posted to the URL reaches the local target, byte for byte.
        let status = post(&url, r#"{"order":1}"#).await?;
        ensure!((200..300).contains(&status), "ingress answered {status}");
        let got = target.wait_for_count(1, Duration::from_secs(20)).await?;
        ensure!(got[0].body_text() == r#"{"order":1}"# && got[0].path == "/hook", "{:?}", got[0]);

        // A channel of the account made elsewhere (the CLI): listed with "Use here".
        let billing = cloud
            .create_channel(&key, json!({"name": "billing"}))
            .await?;
        let billing_url = billing["webhook_url"]
            .as_str()
            .context("webhook_url")?
            .to_owned();
        s.click(By::testid("created-done")).await?;
        let row = s
            .wait_for(
                By::css("[data-testid^='channel-row-']"),
                Duration::from_secs(15),
            )
            .await?;
        let shop_key = s
            .attribute(&row, "data-testid")
            .await?
            .trim_start_matches("channel-row-")
            .to_owned();
        s.wait_for(
            By::testid("remote-channel-alice.billing"),
            Duration::from_secs(15),
        )
        .await?;
        s.execute("document.querySelector('[data-testid=\"remote-alice\"]').scrollIntoView(); return null;")
            .await?;
        s.screenshot(&shots.join("11-overview-use-here.png"))
            .await?;
        s.click(By::testid("use-here-alice.billing")).await?;
        s.type_into(
            By::testid("use-here-target"),
            &format!("{}/billing", target.url),
        )
        .await?;
        s.click(By::testid("use-here-submit")).await?;
        wait_until(Duration::from_secs(20), "billing forwarded here", || async {
            s.invoke("list_channels", json!({}))
                .await
                .is_ok_and(|v| v.to_string().contains("alice.billing"))
        })
        .await?;
        post(&billing_url, r#"{"invoice":7}"#).await?;
        let got = target.wait_for_count(2, Duration::from_secs(20)).await?;
        ensure!(got[1].path == "/billing", "{:?}", got[1]);

        // The tray: per channel "Copy webhook URL" (the cloud's URL), and "New channel…".
        let app_pid = driver.app_pid().context("the app process")?;
        let item = tray.item_of(app_pid, 0, Duration::from_secs(20)).await?;
        let menu = tray
            .wait_menu(&item, "both channels", Duration::from_secs(20), |m| {
                m.labels()[0].contains("2/2")
            })
            .await?;
        eprintln!("tray menu: {:?}", menu.labels());
        // Another URL on the clipboard first (the billing card's Copy), so the tray's copy is
        // seen.
        let channels = s.invoke("list_channels", json!({})).await?;
        let billing_key = channels
            .as_array()
            .and_then(|a| a.iter().find(|c| c["channel"] == "alice.billing"))
            .and_then(|c| c["key"].as_str())
            .context("billing's key")?
            .to_owned();
        s.click(By::testid("nav-overview")).await?;
        s.click(By::testid(&format!("copy-url-{billing_key}"))).await?;
        let pasted = clipboard_becomes(&billing_url).await?;
        ensure!(pasted.as_deref() == Some(billing_url.as_str()), "card copy: {pasted:?}");
        click_in_tray(&tray, &item, &|m| {
            m.children
                .iter()
                .find(|c| c.label.starts_with("alice.shop") && !c.children.is_empty())
                .and_then(|c| c.find(&|l| l == "Copy webhook URL"))
                .map(|n| n.id)
        })
        .await
        .context("Copy webhook URL under alice.shop")?;
        let pasted = clipboard_becomes(&url).await?;
        ensure!(pasted.as_deref() == Some(url.as_str()), "tray copy: {pasted:?}");
        click_in_tray(&tray, &item, &|m| m.id_of("New channel…").ok())
            .await
            .context("New channel…")?;
        s.wait_for(By::testid("new-channel-form"), Duration::from_secs(15))
            .await
            .context("the tray's New channel… to open the form")?;

        // Dead letters with the API key: the target refuses (404, no retry).
        target.set_status(404);
        post(&url, r#"{"order":2}"#).await?;
        target.wait_for_count(3, Duration::from_secs(20)).await?;
        s.click(By::testid("nav-overview")).await?;
        s.click(By::testid(&format!("dead-letters-{shop_key}"))).await?;
        let mut listed = false;
        for _ in 0..30 {
            if s.find(By::css("[data-testid^='dlq-row-']")).await.is_ok() {
                listed = true;
                break;
            }
            let _ = s.click(By::testid("dlq-refresh")).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure!(listed, "the dead letter is not listed");
        ensure!(
            s.find(By::testid("dlq-needs-admin")).await.is_err(),
            "asked for an admin token"
        );
        s.screenshot(&shots.join("12-dead-letters-self-service.png"))
            .await?;
        target.set_status(200);

        // Removed with "Also delete it at the cloud": its URL answers 404 at once.
        s.click(By::testid("nav-overview")).await?;
        s.click(By::testid(&format!("remove-channel-{shop_key}")))
            .await?;
        s.click(By::testid("confirm-check")).await?;
        settled(&s, "document.querySelector('[data-testid=\"confirm-check\"]').checked").await?;
        s.screenshot(&shots.join("13-remove-self-service.png"))
            .await?;
        s.click(By::testid("confirm-ok")).await?;
        wait_until(Duration::from_secs(20), "the channel gone at the cloud", || async {
            post(&url, "{}").await.is_ok_and(|st| st == 404)
        })
        .await?;
        let (st, list) = cloud
            .api(reqwest::Method::GET, "/channels", &key, None)
            .await?;
        ensure!(st == 200 && !list.to_string().contains("alice.shop"), "{list}");
        ensure!(list.to_string().contains("alice.billing"), "{list}");
        // The webhook id is the URL's secret part (knowing it lets anyone post): the app's log
        // never names it, though webhooks were forwarded through both channels and one
        // failed (dead-lettered).
        for id in [&url, &billing_url].map(|u| u.rsplit('/').next().unwrap_or_default().to_owned()) {
            let log = std::fs::read_to_string(&log_path)?;
            ensure!(id.starts_with("wh_") && !log.contains(&id), "the app's log names {id}");
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        driver::failure_screenshot(&s, "self-service").await;
        eprintln!("cloud stderr:\n{}", cloud.proc.stderr_text());
        eprintln!("app log:\n{}", driver.app_log());
    }
    driver.stop(Some(&s)).await;
    cloud.proc.kill9();
    result
}
