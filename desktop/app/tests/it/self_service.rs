//! Self-service in the app (HOSTED.md §5) against a real `webhook-connect-cloud` in `keys` mode
//! with an account the admin created: sign-in with the API key, "New channel" forwarding to a
//! recording target with the key as the connector's credential, "Use here", dead letters with the
//! key (no admin token anywhere), the tray's entries, removal here or at the cloud too.
//! The API key lives in the real Secret Service of each test's own session (`isolated`), checked
//! with `secret-tool`; a CLI `login` in that session is picked up by the app.

use std::time::Duration;

use anyhow::{Context, Result};
use connect_engine::api::LinkState;
use connect_protocol::hosted::{VerifyPreset, VerifySpec};
use connect_testkit::secret_service::{Session, isolated};
use connect_testkit::{RecordingTarget, wait_until, workspace_bin};
use serde_json::{Value, json};
use webhook_connect_app::accounts::{CreateAccountInput, NewChannelInput, SignInInput};
use webhook_connect_app::core::Core;
use webhook_connect_app::menu::{self, Effect, MenuAction, View};
use webhook_connect_app::secrets::KeyringStore;
use webhook_connect_app::settings;

async fn connected(core: &Core, key: &str) -> Result<()> {
    wait_until(Duration::from_secs(20), "the channel to connect", || {
        let up = core
            .snapshot()
            .channels
            .iter()
            .any(|c| c.key == key && c.state == LinkState::Connected);
        async move { up }
    })
    .await
}

async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Result<(u16, Value)> {
    let mut rq = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    let r = rq.send().await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

fn new_channel(cloud: &str, name: &str, target: &str) -> NewChannelInput {
    NewChannelInput {
        cloud_url: cloud.into(),
        name: name.into(),
        target_url: target.into(),
        verify: None,
    }
}

#[test]
fn sign_in_create_forward_use_here_dead_letters_and_delete_at_the_cloud() -> Result<()> {
    isolated(|keyring| async move {
        let cloud = connect_testkit::Cloud::builder(json!({}))
            .self_service("keys")
            .http_timeout(Duration::from_secs(10))
            .start()
            .await?;
        let (_, key) = cloud.create_account("alice", Value::Null).await?;
        let target = RecordingTarget::start().await?;
        let dir = tempfile::tempdir()?;
        let store = KeyringStore::new();
        let core = Core::start(dir.path().join(settings::FILE_NAME), store.clone())
            .map_err(anyhow::Error::msg)?;
        let base = cloud.base.clone();

        // A refused key is told as such and stores nothing; a `keys` cloud refuses sign-up.
        let refused = core
            .sign_in(SignInInput {
                cloud_url: base.clone(),
                api_key: format!("whc_{}", "A".repeat(43)),
            })
            .await
            .expect_err("an unknown key");
        assert_eq!(refused.code(), "api_key_rejected", "{refused}");
        assert!(keyring.accounts()?.is_empty());
        let closed = core
            .create_account(CreateAccountInput {
                cloud_url: base.clone(),
                name: Some("bob".into()),
            })
            .await
            .expect_err("sign-up in keys mode");
        assert_eq!(closed.code(), "forbidden", "{closed}");

        // Signed in with the admin-made key: the key is in the keyring under the CLI's entry only.
        let account = core
            .sign_in(SignInInput {
                cloud_url: format!("{base}/"),
                api_key: key.clone(),
            })
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(account.name, "alice");
        assert_eq!(keyring.accounts()?, vec![format!("api-key:{base}")]);
        let file = std::fs::read_to_string(dir.path().join(settings::FILE_NAME))?;
        assert!(!file.contains(&key), "{file}");

        // New channel: created at the cloud, forwarded here at once with the API key.
        let saved = core
            .create_channel(new_channel(&base, "shop", &format!("{}/shop", target.url)))
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(saved.channel, "alice.shop");
        assert!(saved.self_service && saved.has_token);
        assert!(
            saved
                .webhook_url
                .starts_with(&format!("{base}/webhook/wh_")),
            "{}",
            saved.webhook_url
        );
        connected(&core, &saved.key).await?;
        let (s, v) = post(&saved.webhook_url, r#"{"order":1}"#, &[]).await?;
        assert!((200..300).contains(&s), "ingress {s}: {v}");
        let got = target.wait_for_count(1, Duration::from_secs(20)).await?;
        assert_eq!(got[0].body_text(), r#"{"order":1}"#);
        assert_eq!(got[0].path, "/shop");
        // Only the key is stored: no channel token, no admin token.
        assert_eq!(keyring.accounts()?, vec![format!("api-key:{base}")]);

        // The same name again: the cloud's 409, with its code.
        let taken = core
            .create_channel(new_channel(&base, "shop", &format!("{}/x", target.url)))
            .await
            .expect_err("a taken name");
        assert_eq!(taken.code(), "name_taken", "{taken}");

        // A channel made elsewhere (the CLI, another machine) is listed with "Use here".
        cloud
            .create_channel(&key, json!({"name": "billing"}))
            .await?;
        let remote = core
            .remote_channels(&base)
            .await
            .map_err(anyhow::Error::msg)?;
        let names: Vec<(&str, Option<&str>)> = remote
            .iter()
            .map(|r| (r.channel.as_str(), r.local_key.as_deref()))
            .collect();
        assert!(
            names.contains(&("alice.shop", Some(saved.key.as_str()))),
            "{names:?}"
        );
        assert!(names.contains(&("alice.billing", None)), "{names:?}");
        let billing = core
            .use_remote_channel(&base, "alice.billing", &format!("{}/billing", target.url))
            .await
            .map_err(anyhow::Error::msg)?;
        connected(&core, &billing.key).await?;
        let billing_url = remote
            .iter()
            .find(|r| r.channel == "alice.billing")
            .map(|r| r.webhook_url.clone())
            .context("billing's URL")?;
        assert_eq!(billing.webhook_url, billing_url);
        post(&billing_url, r#"{"invoice":7}"#, &[]).await?;
        let got = target.wait_for_count(2, Duration::from_secs(20)).await?;
        assert_eq!(got[1].path, "/billing");

        // Dead letters with the API key: the target refuses (404: no retry), the app lists and
        // purges them without any admin token.
        target.set_status(404);
        post(&saved.webhook_url, r#"{"order":2}"#, &[]).await?;
        target.wait_for_count(3, Duration::from_secs(20)).await?;
        wait_until(Duration::from_secs(20), "the dead letter", || async {
            core.list_dead_letters(&saved.key, 10, 0)
                .await
                .is_ok_and(|l| l.total == 1)
        })
        .await?;
        let list = core
            .list_dead_letters(&saved.key, 10, 0)
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(list.messages.len(), 1);
        assert_eq!(
            core.purge_dead_letters(&saved.key)
                .await
                .map_err(anyhow::Error::msg)?,
            1
        );
        assert_eq!(
            core.list_dead_letters(&saved.key, 10, 0)
                .await
                .map_err(anyhow::Error::msg)?
                .total,
            0
        );
        target.set_status(200);

        // The tray: "Copy webhook URL" copies the cloud's URL; "New channel…" opens the form.
        let copied = menu::dispatch(&core, MenuAction::CopyWebhookUrl(saved.key.clone())).await;
        assert_eq!(
            copied,
            vec![Effect::CopyToClipboard(saved.webhook_url.clone())]
        );
        let opened = menu::dispatch(&core, MenuAction::NewChannel).await;
        assert_eq!(opened, vec![Effect::ShowWindow(View::NewChannel)]);

        // Removed here only: the cloud keeps it (and keeps queueing).
        core.remove_channel(&billing.key, false)
            .await
            .map_err(anyhow::Error::msg)?;
        let (s, _) = post(&billing_url, r#"{"queued":true}"#, &[]).await?;
        assert!((200..300).contains(&s), "still taking webhooks: {s}");
        // Deleted at the cloud too: its URL answers 404 at once.
        core.remove_channel(&saved.key, true)
            .await
            .map_err(anyhow::Error::msg)?;
        let (s, _) = post(&saved.webhook_url, "{}", &[]).await?;
        assert_eq!(s, 404);
        let left: Vec<String> = core
            .remote_channels(&base)
            .await
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|r| r.channel)
            .collect();
        assert_eq!(left, vec!["alice.billing".to_owned()]);
        assert!(core.list_channels().is_empty());
        // The key stays: it is the account's.
        assert_eq!(
            keyring.lookup(&format!("api-key:{base}"))?.as_deref(),
            Some(key.as_str())
        );
        core.shutdown().await;
        Ok(())
    })
}

#[test]
fn a_provider_check_refuses_a_bad_signature_and_delivers_a_good_one() -> Result<()> {
    isolated(|keyring| async move {
        let cloud = connect_testkit::Cloud::builder(json!({}))
            .self_service("keys")
            .start()
            .await?;
        let (_, key) = cloud.create_account("carol", Value::Null).await?;
        let target = RecordingTarget::start().await?;
        let dir = tempfile::tempdir()?;
        let core = Core::start(dir.path().join(settings::FILE_NAME), KeyringStore::new())
            .map_err(anyhow::Error::msg)?;
        core.sign_in(SignInInput {
            cloud_url: cloud.base.clone(),
            api_key: key.clone(),
        })
        .await
        .map_err(anyhow::Error::msg)?;
        assert_eq!(
            keyring.lookup(&format!("api-key:{}", cloud.base))?,
            Some(key)
        );
        let mut input = new_channel(&cloud.base, "gh", &format!("{}/gh", target.url));
        input.verify = Some(VerifySpec {
            preset: VerifyPreset::Github,
            secret: "gh-secret".into(),
            header: None,
        });
        let saved = core
            .create_channel(input)
            .await
            .map_err(anyhow::Error::msg)?;
        connected(&core, &saved.key).await?;
        let body = r#"{"action":"opened"}"#;
        let (s, _) = post(
            &saved.webhook_url,
            body,
            &[("x-hub-signature-256", "sha256=00")],
        )
        .await?;
        assert_eq!(s, 401, "a bad signature");
        let sig = hmac_sha256_hex(b"gh-secret", body.as_bytes());
        let (s, v) = post(
            &saved.webhook_url,
            body,
            &[("x-hub-signature-256", &format!("sha256={sig}"))],
        )
        .await?;
        assert!((200..300).contains(&s), "a good signature: {s} {v}");
        let got = target.wait_for_count(1, Duration::from_secs(20)).await?;
        assert_eq!(got[0].body_text(), body);
        assert_eq!(target.count(), 1, "the forged one never arrived");
        core.shutdown().await;
        Ok(())
    })
}

/// `webhook-connect login --cloud-url <cloud>` with the key on stdin, in the test's Secret
/// Service session.
async fn cli_login(keyring: &Session, cloud: &str, key: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut cli = tokio::process::Command::new(workspace_bin("webhook-connect")?)
        .args(["login", "--cloud-url", &format!("{cloud}/")])
        .envs(keyring.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    cli.stdin
        .take()
        .context("stdin")?
        .write_all(format!("{key}\n").as_bytes())
        .await?;
    let out = cli.wait_with_output().await?;
    anyhow::ensure!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// GitHub's `X-Hub-Signature-256` value (without `sha256=`).
fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn an_open_cloud_creates_the_account_and_a_cli_login_is_picked_up_without_typing_the_key()
-> Result<()> {
    isolated(|keyring| async move {
        let cloud = connect_testkit::Cloud::builder(json!({}))
            .self_service("open")
            .start()
            .await?;
        let base = cloud.base.clone();
        let target = RecordingTarget::start().await?;
        let dir = tempfile::tempdir()?;
        let store = KeyringStore::new();
        let core = Core::start(dir.path().join(settings::FILE_NAME), store.clone())
            .map_err(anyhow::Error::msg)?;
        let created = core
            .create_account(CreateAccountInput {
                cloud_url: base.clone(),
                name: Some("dana".into()),
            })
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(created.name, "dana");
        let key = keyring
            .lookup(&format!("api-key:{base}"))?
            .context("the new account's key in the keyring")?;
        // The key works at the cloud: it is the one the cloud returned once.
        let (s, v) = cloud
            .api(reqwest::Method::GET, "/account", &key, None)
            .await?;
        assert_eq!((s, v["name"].as_str()), (200, Some("dana")));
        let taken = core
            .create_account(CreateAccountInput {
                cloud_url: base.clone(),
                name: Some("dana".into()),
            })
            .await
            .expect_err("a taken account name");
        assert_eq!(taken.code(), "name_taken", "{taken}");
        let saved = core
            .create_channel(new_channel(&base, "dev", &format!("{}/dev", target.url)))
            .await
            .map_err(anyhow::Error::msg)?;
        connected(&core, &saved.key).await?;
        post(&saved.webhook_url, "{}", &[]).await?;
        target.wait_for_count(1, Duration::from_secs(20)).await?;
        core.shutdown().await;

        // Another app on a computer where the CLI logged in (same keyring entry): signing in needs
        // only the cloud URL. This computer's keyring starts without the key; the real CLI's
        // `login` puts it there.
        keyring.clear(&format!("api-key:{base}"))?;
        let dir2 = tempfile::tempdir()?;
        let store2 = KeyringStore::new();
        let core2 = Core::start(dir2.path().join(settings::FILE_NAME), store2.clone())
            .map_err(anyhow::Error::msg)?;
        let none = core2
            .sign_in(SignInInput {
                cloud_url: base.clone(),
                api_key: String::new(),
            })
            .await
            .expect_err("no key typed and none stored");
        assert_eq!(none.code(), "invalid_input", "{none}");
        cli_login(&keyring, &base, &key).await?;
        let account = core2
            .sign_in(SignInInput {
                cloud_url: base.clone(),
                api_key: String::new(),
            })
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(account.name, "dana");
        let remote = core2
            .remote_channels(&base)
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(remote.len(), 1);
        assert_eq!(remote[0].channel, "dana.dev");
        assert_eq!(
            remote[0].local_key, None,
            "not forwarded on this computer yet"
        );
        core2.shutdown().await;
        Ok(())
    })
}
