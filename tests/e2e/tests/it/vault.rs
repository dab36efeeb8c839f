//! Vault secrets against a real OpenBao dev server (CONFIG.md §5): seed scenario 06 (all eight
//! checks, rotation with the etcd re-put), live rotation without any configuration change, the
//! last good value during an outage, KV v1 + AppRole + defaults with the file backend.

use std::time::Duration;

use connect_testkit::{EtcdServer, VaultServer, timing, vault::ROOT_TOKEN, wait_until};
use etcd_client::Client;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use connect_testkit::cloud::Cloud;

const RELOAD_TOKEN: &str = "reload-token-for-tests";

async fn post_with(c: &Cloud, id: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut req = c
        .http
        .post(format!("{}/webhook/{id}", c.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn bearer(c: &Cloud, id: &str, token: &str) -> u16 {
    post_with(
        c,
        id,
        &[("authorization", &format!("Bearer {token}"))],
        "{}",
    )
    .await
}

async fn wait_bearer(c: &Cloud, id: &str, token: &str, want: u16) {
    let r = wait_until(
        Duration::from_secs(20),
        &format!("{id} with {token} → {want}"),
        || async move { bearer(c, id, token).await == want },
    )
    .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.proc.stderr_text());
    }
}

fn sign(secret: &str, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

async fn health(c: &Cloud) -> Value {
    c.http
        .get(format!("{}/health", c.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn config_status(c: &Cloud) -> Value {
    c.http
        .get(format!("{}/admin/config-status", c.base))
        .bearer_auth(RELOAD_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn auth_hook() -> String {
    json!({"module": "log", "authorization": "Bearer {$vault:app/auth#webhook_token}"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_06_vault_and_etcd_secrets() {
    let mut vault = VaultServer::start().await.unwrap();
    vault.enable_kv("webhooks", 2).unwrap();
    vault
        .kv_put(
            "webhooks",
            "app/auth",
            &[("webhook_token", "tok-1"), ("hmac_secret", "hmac-1")],
        )
        .unwrap();
    let etcd = EtcdServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    kv.put("/cwm/default/webhooks/vault_auth", auth_hook(), None)
        .await
        .unwrap();
    kv.put(
        "/cwm/default/webhooks/vault_hmac",
        json!({"module": "log", "hmac": {"secret": "{$vault:app/auth#hmac_secret}",
               "header": "X-HMAC-Signature", "algorithm": "sha256", "encoding": "hex"}})
        .to_string(),
        None,
    )
    .await
    .unwrap();
    kv.put(
        "/cwm/default/webhooks/legacy_env",
        json!({"module": "log", "authorization": "Bearer {$LEGACY_ENV_TOKEN}"}).to_string(),
        None,
    )
    .await
    .unwrap();
    let c = Cloud::start_with(
        json!({}),
        &[
            ("CONFIG_BACKEND", "etcd"),
            ("ETCD_ENDPOINTS", &etcd.endpoint),
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", &vault.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_MOUNT_POINT", "webhooks"),
            ("VAULT_CACHE_TTL_SECONDS", "1"),
            ("LEGACY_ENV_TOKEN", "legacy-tok"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
    .unwrap();
    // 3 first (it waits for the configuration), then 1 and 2.
    wait_bearer(&c, "vault_auth", "tok-1", 200).await;
    assert_eq!(
        post_with(&c, "vault_auth", &[], "{}").await,
        401,
        "1. no token"
    );
    assert_eq!(
        bearer(&c, "vault_auth", "wrong").await,
        401,
        "2. wrong token"
    );
    // 4–5. HMAC with the Vault secret.
    let body = r#"{"event":"push"}"#;
    assert_eq!(
        post_with(
            &c,
            "vault_hmac",
            &[("x-hmac-signature", &sign("wrong", body))],
            body
        )
        .await,
        401,
        "4. wrong signature"
    );
    assert_eq!(
        post_with(
            &c,
            "vault_hmac",
            &[("x-hmac-signature", &sign("hmac-1", body))],
            body
        )
        .await,
        200,
        "5. signature with the Vault secret"
    );
    // 6. Legacy env placeholder alongside Vault references.
    assert_eq!(
        bearer(&c, "legacy_env", "legacy-tok").await,
        200,
        "6. env placeholder"
    );
    // 7–8. Rotation: update Vault, re-publish the etcd entry.
    vault
        .kv_put(
            "webhooks",
            "app/auth",
            &[("webhook_token", "tok-2"), ("hmac_secret", "hmac-1")],
        )
        .unwrap();
    kv.put("/cwm/default/webhooks/vault_auth", auth_hook(), None)
        .await
        .unwrap();
    wait_bearer(&c, "vault_auth", "tok-2", 200).await;
    assert_eq!(
        bearer(&c, "vault_auth", "tok-1").await,
        401,
        "7. old token rejected"
    );
    assert_eq!(
        bearer(&c, "vault_auth", "tok-2").await,
        200,
        "8. new token accepted"
    );
    let h = health(&c).await;
    assert_eq!(h["components"]["vault"], "healthy", "{h}");
    assert_eq!(h["status"], "healthy", "{h}");

    // Live rotation without any configuration change: the TTL refresh picks it up.
    vault
        .kv_put(
            "webhooks",
            "app/auth",
            &[("webhook_token", "tok-3"), ("hmac_secret", "hmac-3")],
        )
        .unwrap();
    wait_bearer(&c, "vault_auth", "tok-3", 200).await;
    assert_eq!(bearer(&c, "vault_auth", "tok-2").await, 401);
    assert_eq!(
        post_with(
            &c,
            "vault_hmac",
            &[("x-hmac-signature", &sign("hmac-3", body))],
            body
        )
        .await,
        200
    );

    // Outage: the last good value stays in force and the failure is reported.
    vault.kill9();
    wait_until(
        Duration::from_secs(20),
        "vault reported degraded",
        || async { health(&c).await["components"]["vault"] == "degraded" },
    )
    .await
    .unwrap();
    assert_eq!(
        bearer(&c, "vault_auth", "tok-3").await,
        200,
        "last good value kept"
    );
    let st = config_status(&c).await;
    assert_eq!(st["vault"]["status"], "degraded", "{st}");
    let failing: Vec<&str> = st["vault"]["failing_refs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(failing.contains(&"app/auth#webhook_token"), "{st}");
    assert_eq!(health(&c).await["status"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv1_with_approle_defaults_and_unresolved_references() {
    let vault = VaultServer::start().await.unwrap();
    vault.enable_kv("kv1", 1).unwrap();
    vault
        .kv_put(
            "kv1",
            "svc/tokens",
            &[("api", "kv1-token"), ("rotating", "r-1")],
        )
        .unwrap();
    let (role_id, secret_id) = vault.approle("cloud").unwrap();
    let hooks = json!({
        "from_kv1": {"module": "log", "authorization": "Bearer {$vault:svc/tokens#api}"},
        "embedded": {"module": "log", "header_auth": {"header_name": "X-Key", "api_key": "k-{$vault:svc/tokens#rotating}-{$SUFFIX:s}"}},
        "with_default": {"module": "log", "authorization": "Bearer {$vault:svc/absent#token:dev-default}"},
        "unresolved": {"module": "log", "authorization": "Bearer {$vault:svc/tokens#no_such_field}"},
    });
    let c = Cloud::start_with(
        hooks,
        &[
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", &vault.addr),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
            ("VAULT_MOUNT_POINT", "kv1"),
            ("VAULT_KV_VERSION", "1"),
            ("VAULT_CACHE_TTL_SECONDS", "1"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        bearer(&c, "from_kv1", "kv1-token").await,
        200,
        "{}",
        c.proc.stderr_text()
    );
    assert_eq!(bearer(&c, "from_kv1", "other").await, 401);
    assert_eq!(
        post_with(&c, "embedded", &[("x-key", "k-r-1-s")], "{}").await,
        200
    );
    assert_eq!(bearer(&c, "with_default", "dev-default").await, 200);
    assert_eq!(
        bearer(&c, "unresolved", "x").await,
        503,
        "unresolvable reference disables the entry"
    );
    let st = config_status(&c).await;
    assert!(
        st["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["webhook"] == "unresolved"),
        "{st}"
    );
    // Rotation of a KV v1 secret reaches the embedded reference without a file change.
    vault
        .kv_put(
            "kv1",
            "svc/tokens",
            &[("api", "kv1-token"), ("rotating", "r-2")],
        )
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "embedded value rotated",
        || async { post_with(&c, "embedded", &[("x-key", "k-r-2-s")], "{}").await == 200 },
    )
    .await
    .unwrap();
    assert_eq!(
        post_with(&c, "embedded", &[("x-key", "k-r-1-s")], "{}").await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_channel_token_closes_old_connections_and_admits_the_new_one() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let vault = VaultServer::start().await.unwrap();
    vault
        .kv_put(
            "secret",
            "connect/team",
            &[("channel_token", "channel-token-one-xyz")],
        )
        .unwrap();
    let hooks = json!({"relay": {"module": "webhook_connect", "module-config": {
        "channel": "team", "channel_token": "{$vault:connect/team#channel_token}"}}});
    let c = Cloud::start_with(
        hooks,
        &[
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", &vault.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_CACHE_TTL_SECONDS", "1"),
        ],
    )
    .await
    .unwrap();
    let connect = |token: &'static str| {
        let url = format!("{}/connect/stream/team", c.ws_base());
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(req).await
        }
    };
    let (mut ws, _) = connect("channel-token-one-xyz").await.unwrap();
    vault
        .kv_put(
            "secret",
            "connect/team",
            &[("channel_token", "channel-token-two-xyz")],
        )
        .unwrap();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(Some(f)) = m {
                return Some(u16::from(f.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(code, Some(4005), "{}", c.proc.stderr_text());
    assert!(
        connect("channel-token-one-xyz").await.is_err(),
        "old token refused"
    );
    assert!(
        connect("channel-token-two-xyz").await.is_ok(),
        "new token admitted"
    );
}

// --- Short-lived Vault tokens (issue "Ops backends") -----------------------------------------

/// Writes the policy `read-all` (read and list everything).
fn read_all_policy(vault: &VaultServer) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "path \"*\" { capabilities = [\"read\", \"list\"] }\n",
    )
    .unwrap();
    vault
        .cli(&["policy", "write", "read-all", file.path().to_str().unwrap()])
        .unwrap();
}

/// `webhook_connect_secret_refresh_total{result="<result>"}` from `/metrics`.
async fn refresh_count(c: &Cloud, result: &str) -> u64 {
    let text = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("webhook_connect_secret_refresh_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn vault_env<'a>(vault: &'a VaultServer, auth: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("SECRETS_BACKEND", "vault"),
        ("VAULT_ADDR", vault.addr.as_str()),
        ("VAULT_CACHE_TTL_SECONDS", "1"),
        ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
    ];
    env.extend_from_slice(auth);
    env
}

fn token_hook() -> Value {
    json!({"guarded": {"module": "log",
        "authorization": "Bearer {$vault:app/auth#webhook_token}"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_renewed_and_a_revoked_one_keeps_the_last_good_value() {
    let vault = VaultServer::start().await.unwrap();
    read_all_policy(&vault);
    vault
        .kv_put("secret", "app/auth", &[("webhook_token", "t-1")])
        .unwrap();
    // A renewable token that lives 6 s unless renewed (up to 10 min); the cloud renews it
    // half-way, which leaves 3 s (times CONNECT_TEST_TIME_SCALE) for a late renewal.
    let ttl_secs = timing::secs(6);
    let ttl_arg = format!("-ttl={ttl_secs}s");
    let token = vault
        .cli(&[
            "token",
            "create",
            "-policy=read-all",
            &ttl_arg,
            "-explicit-max-ttl=10m",
            "-field=token",
        ])
        .unwrap()
        .trim()
        .to_string();
    let c = Cloud::start_with(
        token_hook(),
        &vault_env(&vault, &[("VAULT_TOKEN", token.as_str())]),
    )
    .await
    .unwrap();
    wait_bearer(&c, "guarded", "t-1", 200).await;
    // Wait until the token has outlived its own TTL through a renewal (Vault's record), then
    // secrets must still refresh.
    wait_until(
        timing::scaled(Duration::from_secs(60)),
        "the token renewed and past its first TTL",
        || async {
            let Ok(out) = vault.cli(&["token", "lookup", "-format=json", &token]) else {
                return false;
            };
            let v: Value = serde_json::from_str(&out).unwrap_or_default();
            let created = v["data"]["creation_time"].as_u64().unwrap_or(u64::MAX);
            let renewed = v["data"]["last_renewal_time"].as_u64().unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            renewed > 0 && now > created.saturating_add(ttl_secs + 1)
        },
    )
    .await
    .unwrap();
    vault
        .kv_put("secret", "app/auth", &[("webhook_token", "t-2")])
        .unwrap();
    wait_bearer(&c, "guarded", "t-2", 200).await;
    assert_eq!(bearer(&c, "guarded", "t-1").await, 401);
    let h = health(&c).await;
    assert_eq!(h["components"]["vault"], "healthy", "{h}");
    let ttl: Value = serde_json::from_str(
        &vault
            .cli(&["token", "lookup", "-format=json", &token])
            .unwrap(),
    )
    .unwrap();
    assert!(
        ttl["data"]["ttl"].as_u64().unwrap() > 0,
        "the token is still alive: {ttl}"
    );

    // The token is revoked: refreshes fail, the last good value stays in force, and the
    // failure is reported in /health, the config status and the metrics.
    let errors_before = refresh_count(&c, "error").await;
    vault.cli(&["token", "revoke", &token]).unwrap();
    vault
        .kv_put("secret", "app/auth", &[("webhook_token", "t-3")])
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "vault reported degraded",
        || async { health(&c).await["components"]["vault"] == "degraded" },
    )
    .await
    .unwrap();
    assert_eq!(
        bearer(&c, "guarded", "t-2").await,
        200,
        "last good value kept"
    );
    assert_eq!(bearer(&c, "guarded", "t-3").await, 401);
    let h = health(&c).await;
    assert_eq!(h["status"], "degraded", "{h}");
    let st = config_status(&c).await;
    assert_eq!(st["vault"]["status"], "degraded", "{st}");
    assert_eq!(
        st["vault"]["failing_refs"],
        json!(["app/auth#webhook_token"]),
        "{st}"
    );
    assert!(st["vault"]["last_refresh"].is_string(), "{st}");
    assert!(refresh_count(&c, "error").await > errors_before);
    assert!(!c.proc.stderr_text().contains(&token), "the token leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_again_when_its_token_expires() {
    let vault = VaultServer::start().await.unwrap();
    vault
        .kv_put("secret", "app/auth", &[("webhook_token", "a-1")])
        .unwrap();
    let (role_id, secret_id) = vault.approle("cloud").unwrap();
    // Tokens of this role live 6 s (times CONNECT_TEST_TIME_SCALE) and cannot be renewed past
    // that; the cloud logs in again half-way.
    let ttl = format!("token_ttl={}s", timing::secs(6));
    let max_ttl = format!("token_max_ttl={}s", timing::secs(6));
    vault
        .cli(&[
            "write",
            "auth/approle/role/cloud",
            "token_policies=read-all",
            &ttl,
            &max_ttl,
        ])
        .unwrap();
    let c = Cloud::start_with(
        token_hook(),
        &vault_env(
            &vault,
            &[
                ("VAULT_ROLE_ID", role_id.as_str()),
                ("VAULT_SECRET_ID", secret_id.as_str()),
            ],
        ),
    )
    .await
    .unwrap();
    wait_bearer(&c, "guarded", "a-1", 200).await;
    let logins = || {
        c.proc
            .stderr_text()
            .matches("Vault AppRole login succeeded")
            .count()
    };
    // After each further login the cloud still reads: it logged in again in time.
    for (round, value) in ["a-2", "a-3"].into_iter().enumerate() {
        let before = logins();
        wait_until(
            timing::scaled(Duration::from_secs(30)),
            &format!("round {round}: another AppRole login"),
            || async { logins() > before },
        )
        .await
        .unwrap();
        vault
            .kv_put("secret", "app/auth", &[("webhook_token", value)])
            .unwrap();
        wait_bearer(&c, "guarded", value, 200).await;
        let h = health(&c).await;
        assert_eq!(h["components"]["vault"], "healthy", "round {round}: {h}");
    }
    let logins = logins();
    assert!(logins >= 3, "{logins} logins");
    assert!(
        !c.proc.stderr_text().contains("Vault secret read failed"),
        "a read failed: {}",
        c.proc.stderr_text()
    );
}
