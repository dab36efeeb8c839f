//! Vault over HTTPS (CONFIG.md §5, `VAULT_VERIFY`: `true`, `false` or a CA bundle path) against
//! a real OpenBao dev server with `-dev-tls` (its own CA, made at start): secrets are read with
//! the CA bundle and with verification off; with the default (`true`, the system's CA store)
//! the untrusted certificate disables the entry that needs the secret and names the failing
//! reference and the reason (the certificate) in `/admin/config-status` (the documented failure
//! shape, OPERATIONS.md "Vault");
//! a CA bundle that does not exist is a start-up error (exit 64) naming the file.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use connect_testkit::cloud::Cloud;
use connect_testkit::vault::ROOT_TOKEN;
use connect_testkit::{ChildProcess, VaultServer, wait_for, workspace_bin};

const RELOAD_TOKEN: &str = "reload-token-for-tests";
const SECRET: &str = "token-read-over-tls";

fn hooks() -> Value {
    json!({"guarded": {"module": "log",
        "authorization": "Bearer {$vault:app/relay#webhook_token}"}})
}

async fn vault() -> Result<VaultServer> {
    let vault = VaultServer::start_tls().await?;
    ensure!(vault.addr.starts_with("https://"), "{}", vault.addr);
    vault.kv_put("secret", "app/relay", &[("webhook_token", SECRET)])?;
    Ok(vault)
}

async fn cloud(vault: &VaultServer, verify: &str) -> Result<Cloud> {
    Cloud::start_with(
        hooks(),
        &[
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", &vault.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_VERIFY", verify),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
}

async fn bearer(c: &Cloud, token: &str) -> Result<u16> {
    Ok(c.http
        .post(format!("{}/webhook/guarded", c.base))
        .header("content-type", "application/json")
        .bearer_auth(token)
        .body("{}")
        .send()
        .await?
        .status()
        .as_u16())
}

async fn config_status(c: &Cloud) -> Result<Value> {
    Ok(c.http
        .get(format!("{}/admin/config-status", c.base))
        .bearer_auth(RELOAD_TOKEN)
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test]
async fn secrets_are_read_over_https_with_a_ca_bundle_or_without_verification() -> Result<()> {
    let vault = vault().await?;
    let ca = vault.ca.clone().context("a TLS dev server has a CA")?;
    for verify in [ca.to_str().context("utf-8 path")?, "false"] {
        let c = cloud(&vault, verify).await?;
        let status = bearer(&c, SECRET).await?;
        ensure!(
            status == 200,
            "VAULT_VERIFY={verify}: the secret's token got {status}\n{}",
            c.logs()
        );
        let wrong = bearer(&c, "another-token").await?;
        ensure!(
            wrong == 401,
            "VAULT_VERIFY={verify}: a wrong token got {wrong}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_untrusted_vault_certificate_disables_the_entry_and_names_the_reference() -> Result<()> {
    let vault = vault().await?;
    let c = cloud(&vault, "true").await?;
    // The entry is disabled at first load (503), whatever the token.
    let status = bearer(&c, SECRET).await?;
    ensure!(status == 503, "the guarded entry answered {status}");
    let named = wait_for(
        Duration::from_secs(20),
        "config-status to name the failing reference",
        || async {
            let st = config_status(&c).await.ok()?;
            let failing = st["vault"]["failing_refs"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "app/relay#webhook_token"));
            let entry = st["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["webhook"] == "guarded"));
            (failing && entry).then_some(st)
        },
    )
    .await;
    let last = match named {
        Ok(st) => st,
        Err(e) => {
            let st = config_status(&c).await.unwrap_or_default();
            return Err(e.context(format!("config-status: {st}\ncloud log:\n{}", c.logs())));
        }
    };
    eprintln!("config-status with an untrusted Vault certificate: {last}");
    // The reason, not only "a request failed" (vaultrs keeps it in the error's sources).
    let error = last["errors"][0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("certificate"),
        "config-status does not say why: {error}"
    );
    Ok(())
}

#[test]
fn a_missing_ca_bundle_is_a_start_up_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("webhooks.json");
    std::fs::write(&config, hooks().to_string())?;
    let missing = dir.path().join("no-such-ca.pem");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", connect_testkit::free_port());
    let mut p = ChildProcess::spawn(
        workspace_bin("webhook-connect-cloud")?,
        &[],
        &[
            ("WEBHOOK_CONNECT_LISTEN", &listen),
            ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().context("utf-8")?),
            ("WEBHOOKS_CONFIG_FILE", config.to_str().context("utf-8")?),
            ("SECRETS_BACKEND", "vault"),
            ("VAULT_ADDR", "https://127.0.0.1:1"),
            ("VAULT_TOKEN", "unused"),
            ("VAULT_VERIFY", missing.to_str().context("utf-8")?),
        ],
        "cloud",
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while p.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = p.exit_status().and_then(|s| s.code());
    let err = p.stderr_text();
    ensure!(code == Some(64), "exit {code:?}: {err}");
    ensure!(
        err.contains(&format!(
            "VAULT_VERIFY: CA bundle {} not found",
            missing.display()
        )),
        "{err}"
    );
    Ok(())
}
