//! Logs never carry secrets: one test per kind of secret, with the cloud at `trace` (and the
//! real connector at its most verbose, `DEBUG`), after traffic that uses the secret — right and
//! wrong. Every process's stdout and stderr is searched, and so is every command line on the
//! machine (`/proc/*/cmdline`): secrets travel in the environment or in files, never in argv.
//! Each secret is a distinctive string, so a hit is the secret and nothing else.

use std::time::Duration;

use connect_testkit::cloud::{ADMIN, Cloud, connect_hook};
use connect_testkit::{
    ChildProcess, EtcdServer, RecordingTarget, VaultServer, wait_until, workspace_bin,
};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::json;
use sha2::Sha256;

const TRACE: (&str, &str) = ("WEBHOOK_CONNECT_LOG_LEVEL", "trace");
const WAIT: Duration = Duration::from_secs(20);

/// Fails if `secret` is in any of `procs`' output or in any command line on the machine.
fn assert_never_shown(kind: &str, secret: &str, procs: &[&ChildProcess]) {
    for p in procs {
        for (stream, text) in [("stdout", p.stdout_text()), ("stderr", p.stderr_text())] {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("{kind} in the {stream} of {}: {line}", p.name());
            }
        }
        // The most verbose level really was on, so the search above covered it: the cloud's
        // output carries `TRACE` lines, the connector's `DEBUG` ones.
        let level = if p.name() == "cloud" {
            "TRACE"
        } else {
            "DEBUG"
        };
        assert!(
            p.stderr_text().contains(level) || p.stdout_text().contains(level),
            "{} wrote no {level} line: the search did not cover that level",
            p.name()
        );
    }
    let mut hits = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(secret) {
                hits.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
            }
        }
    }
    assert!(hits.is_empty(), "{kind} on a command line: {hits:?}");
}

/// The real connector for `channel`, token in `CONNECTOR_TOKEN`, at `DEBUG`.
fn connector(cloud: &Cloud, channel: &str, token: &str, target: &str) -> ChildProcess {
    ChildProcess::spawn(
        workspace_bin("webhook-connect").unwrap(),
        &[
            "--cloud-url",
            &cloud.base,
            "--channel",
            channel,
            "--protocol",
            "websocket",
            "--target-url",
            target,
            "--reconnect-delay",
            "0.2",
            "--log-level",
            "DEBUG",
        ],
        &[("CONNECTOR_TOKEN", token)],
        "connector",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_tokens_are_never_logged() {
    let token = "chan-secret-7f3a9c2e1d";
    let cloud = Cloud::start_with(
        json!({"hook": connect_hook("sec", token, json!({}))}),
        &[TRACE],
    )
    .await
    .unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let mut conn = connector(&cloud, "sec", token, &target.url);
    assert_eq!(cloud.post("hook", r#"{"n":1}"#).await.unwrap().0, 200);
    target.wait_for_count(1, WAIT).await.unwrap();
    // A wrong token presented to every transport.
    let wrong = "chan-wrong-4b8e0a6f2c";
    for path in [
        "/connect/stream/sec/sse",
        "/connect/stream/sec/poll?timeout=1",
    ] {
        let r = cloud
            .http
            .get(format!("{}{path}", cloud.base))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // A rotation: the new token is in the admin answer, and the connector gets 4005.
    let r = cloud
        .http
        .post(format!(
            "{}/admin/webhook-connect/channels/sec/rotate-token",
            cloud.base
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"grace_period_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: serde_json::Value = r.json().await.unwrap();
    let new = rotated["new_token"].as_str().unwrap().to_owned();
    wait_until(WAIT, "the connector told its token was revoked", || async {
        conn.stderr_text().contains("4005") || conn.stderr_text().contains("revoked")
    })
    .await
    .unwrap();
    conn.kill9();
    for (kind, secret) in [
        ("the channel token", token),
        ("a wrong channel token", wrong),
        ("the rotated channel token", new.as_str()),
    ] {
        assert_never_shown(kind, secret, &[&cloud.proc, &conn]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_is_never_logged() {
    let cloud = Cloud::start_with(
        json!({"hook": connect_hook("adm", "adm-channel-token-0123", json!({}))}),
        &[TRACE],
    )
    .await
    .unwrap();
    assert_eq!(cloud.admin(Method::GET, "/channels").await.unwrap().0, 200);
    assert_eq!(
        cloud.admin(Method::GET, "/channels/adm").await.unwrap().0,
        200
    );
    let wrong = "admin-wrong-9d2c7e1b5a";
    let r = cloud
        .http
        .get(format!("{}/admin/webhook-connect/channels", cloud.base))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_never_shown("the admin token", ADMIN, &[&cloud.proc]);
    assert_never_shown("a wrong admin token", wrong, &[&cloud.proc]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_secrets_are_never_logged() {
    let secret = "hmac-secret-5e1f8a3b7c";
    let mut gh = connect_hook("hm", "hm-channel-token-0123", json!({}));
    gh["hmac"] = json!({"provider": "github", "secret": secret});
    let cloud = Cloud::start_with(json!({"gh": gh}), &[TRACE])
        .await
        .unwrap();
    let body = br#"{"zen":"x"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    for (sig, want) in [(sig.as_str(), 200), ("sha256=00", 401)] {
        let r = cloud
            .http
            .post(format!("{}/webhook/gh", cloud.base))
            .header("x-hub-signature-256", sig)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
    }
    assert_never_shown("the HMAC secret", secret, &[&cloud.proc]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_authorization_headers_are_never_logged() {
    let sender = "sender-secret-2a6d9f4e8b";
    let mut hook = connect_hook("au", "au-channel-token-0123", json!({}));
    hook["authorization"] = json!(format!("Bearer {sender}"));
    let cloud = Cloud::start_with(json!({"hook": hook}), &[TRACE])
        .await
        .unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let mut conn = connector(&cloud, "au", "au-channel-token-0123", &target.url);
    let wrong = "sender-wrong-6c3b1e9d7f";
    for (tok, want) in [(sender, 200), (wrong, 401)] {
        let r = cloud
            .http
            .post(format!("{}/webhook/hook", cloud.base))
            .bearer_auth(tok)
            .body(r#"{"n":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
    }
    target.wait_for_count(1, WAIT).await.unwrap();
    conn.kill9();
    assert_never_shown("the sender's Authorization", sender, &[&cloud.proc, &conn]);
    assert_never_shown("a wrong Authorization", wrong, &[&cloud.proc, &conn]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_values_and_approle_credentials_are_never_logged() {
    let vault = VaultServer::start().await.unwrap();
    let value = "vault-value-8b4e2c6a1f";
    vault
        .kv_put("secret", "app/auth", &[("webhook_token", value)])
        .unwrap();
    let (role_id, secret_id) = vault.approle("cloud").unwrap();
    let cloud = Cloud::start_with(
        json!({"guarded": {"module": "log",
            "authorization": "Bearer {$vault:app/auth#webhook_token}"}}),
        &[
            TRACE,
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", vault.addr.as_str()),
            ("VAULT_ROLE_ID", role_id.as_str()),
            ("VAULT_SECRET_ID", secret_id.as_str()),
        ],
    )
    .await
    .unwrap();
    wait_until(WAIT, "the Vault value in force", || async {
        cloud
            .http
            .post(format!("{}/webhook/guarded", cloud.base))
            .bearer_auth(value)
            .body("{}")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();
    assert_never_shown("a Vault value", value, &[&cloud.proc]);
    assert_never_shown("the AppRole secret_id", &secret_id, &[&cloud.proc]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passwords_are_never_logged() {
    use etcd_client::{Client, ConnectOptions, Permission};
    let etcd = EtcdServer::start().await.unwrap();
    let mut admin = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    admin
        .user_add("root", "root-pw-for-tests", None)
        .await
        .unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("cwm-reader").await.unwrap();
    admin
        .role_grant_permission("cwm-reader", Permission::read("/cwm/").with_prefix())
        .await
        .unwrap();
    let password = "etcd-pw-3f9a1c7e5b";
    admin.user_add("cloud", password, None).await.unwrap();
    admin.user_grant_role("cloud", "cwm-reader").await.unwrap();
    admin.auth_enable().await.unwrap();
    let mut kv = Client::connect(
        [etcd.endpoint.as_str()],
        Some(ConnectOptions::new().with_user("root", "root-pw-for-tests")),
    )
    .await
    .unwrap();
    kv.put(
        "/cwm/default/webhooks/hook",
        json!({"module": "log"}).to_string(),
        None,
    )
    .await
    .unwrap();
    let start = |pw: &'static str| {
        let endpoint = etcd.endpoint.clone();
        async move {
            Cloud::start_with(
                json!({}),
                &[
                    TRACE,
                    ("CONFIG_BACKEND", "etcd"),
                    ("ETCD_PREFIX", "/cwm/"),
                    ("ETCD_ENDPOINTS", endpoint.as_str()),
                    ("ETCD_USERNAME", "cloud"),
                    ("ETCD_PASSWORD", pw),
                ],
            )
            .await
            .unwrap()
        }
    };
    let good = start(password).await;
    wait_until(WAIT, "the etcd definitions loaded", || async {
        good.post("hook", "{}").await.is_ok_and(|(s, _)| s == 200)
    })
    .await
    .unwrap();
    let wrong_pw = "etcd-wrong-7d2b8e4a6c";
    let wrong = start(wrong_pw).await;
    wait_until(WAIT, "the wrong password reported", || async {
        wrong.proc.stderr_text().contains("authentication failed")
    })
    .await
    .unwrap();
    assert_never_shown("the etcd password", password, &[&good.proc, &wrong.proc]);
    assert_never_shown(
        "a wrong etcd password",
        wrong_pw,
        &[&good.proc, &wrong.proc],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_never_logged() {
    let cloud = Cloud::builder(json!({}))
        .self_service("keys")
        .envs(&[TRACE])
        .start()
        .await
        .unwrap();
    let (_, key) = cloud.create_account("seckeys", json!(null)).await.unwrap();
    let created = cloud
        .create_channel(&key, json!({"name": "inbox"}))
        .await
        .unwrap();
    let channel = created["channel"].as_str().unwrap().to_owned();
    let webhook = created["webhook_id"].as_str().unwrap().to_owned();
    // The real connector authenticates with the owner's API key instead of a channel token.
    let target = RecordingTarget::start().await.unwrap();
    let mut conn = connector(&cloud, &channel, &key, &target.url);
    wait_until(WAIT, "a webhook through the API-key connector", || async {
        let _ = cloud.post(&webhook, r#"{"n":1}"#).await;
        target.count() > 0
    })
    .await
    .unwrap();
    let (status, _) = cloud
        .api(Method::GET, "/channels", &key, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let wrong = "whk_wrong-3c9e7a1f5b2d";
    let (status, _) = cloud
        .api(Method::GET, "/channels", wrong, None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    conn.kill9();
    assert_never_shown("the API key", &key, &[&cloud.proc, &conn]);
    assert_never_shown("a wrong API key", wrong, &[&cloud.proc, &conn]);
}
