//! Self-service hosting through the real binary (HOSTED.md §2–§3): accounts made by the admin
//! API and by open sign-up, channels created with an API key, webhooks posted to the returned
//! `webhook_url` and received by connectors authenticated with the API key or the channel
//! token; isolation between accounts; quotas; `verify`; key rotation, deletion and restart —
//! on the embedded store and on Redis with two replicas.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{RedisServer, timing, wait_until};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONFIGURED: &str = "configured";
const CONFIGURED_TOKEN: &str = "configured-channel-token-e2e";

fn hooks() -> Value {
    json!({"cfg-hook": connect_hook(CONFIGURED, CONFIGURED_TOKEN, json!({}))})
}

async fn keys_cloud() -> anyhow::Result<Cloud> {
    Cloud::builder(hooks()).self_service("keys").start().await
}

/// A v2 WebSocket stream of `channel` with `credential`, after its `connected` frame.
async fn ws(c: &Cloud, channel: &str, credential: &str) -> anyhow::Result<Ws> {
    let mut req = format!("{}/connect/stream/{channel}", c.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {credential}").parse()?);
    req.headers_mut()
        .insert("x-webhook-connect-version", "2".parse()?);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| anyhow::anyhow!("WebSocket handshake of {channel} took over 10 s"))??;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"connected\"") => {
                return Ok(ws);
            }
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!("no connected frame: {other:?}"),
        }
    }
}

/// The next webhook frame.
async fn next_webhook(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "webhook" {
                    return v;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no webhook frame: {other:?}"),
        }
    }
}

/// The close code of the next Close frame, skipping other frames; `None` when the connection ends
/// without one or none arrives within 20 s (scaled) in all — heartbeats do not extend the wait.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let closed = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(timing::scaled(Duration::from_secs(20)), closed)
        .await
        .unwrap_or(None)
}

/// The exact body bytes a webhook frame carries.
fn body_of(frame: &Value) -> Vec<u8> {
    let b64 = frame["message"]["body_b64"]
        .as_str()
        .or_else(|| frame["body_b64"].as_str())
        .unwrap_or_else(|| panic!("no body_b64 in {frame}"));
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

async fn post_url(c: &Cloud, url: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = c.http.post(url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// `(status, error code)` of an answer, for refusals.
fn status_and_code(s: u16, v: &Value) -> (u16, Option<&str>) {
    (s, v["code"].as_str())
}

/// The status `GET /api/v1/account` answers `key` with.
async fn account_status(c: &Cloud, key: &str) -> anyhow::Result<u16> {
    Ok(c.api(Method::GET, "/account", key, None).await?.0)
}

/// `POST /api/v1/channels` with `body`, whatever it answers (see [`Cloud::create_channel`]
/// for one that must succeed).
async fn try_create_channel(c: &Cloud, key: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    c.api(Method::POST, "/channels", key, Some(&body)).await
}

/// Rotates the account's API key through the admin API (must answer 200); the new key.
async fn rotate_key(c: &Cloud, account_id: &str) -> anyhow::Result<String> {
    let (s, r) = c
        .admin(Method::POST, &format!("/accounts/{account_id}/rotate-key"))
        .await?;
    anyhow::ensure!(s == 200, "rotate-key answered {s}: {r}");
    Ok(r["api_key"].as_str().context("no api_key")?.to_owned())
}

/// `PATCH /admin/webhook-connect/accounts/{account_id}` with `body`.
async fn patch_account(c: &Cloud, account_id: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    c.admin_json(Method::PATCH, &format!("/accounts/{account_id}"), &body)
        .await
}

/// `POST /admin/reload-config` with the reload token; the response.
async fn reload_config(c: &Cloud, token: &str) -> anyhow::Result<reqwest::Response> {
    Ok(c.http
        .post(format!("{}/admin/reload-config", c.base))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await?)
}

/// The admin API lists channel `name` as an account's (`owner` is `acc_…`).
async fn assert_account_owns(c: &Cloud, name: &str) -> anyhow::Result<()> {
    let (s, list) = c.admin(Method::GET, "/channels").await?;
    assert_eq!(s, 200);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap();
    assert!(
        row["owner"].as_str().is_some_and(|o| o.starts_with("acc_")),
        "still the account's: {row}"
    );
    Ok(())
}

#[tokio::test]
async fn hosted_account_channel_ingress_and_connectors_on_the_embedded_store() -> anyhow::Result<()>
{
    let mut c = keys_cloud().await?;
    let (alice_id, alice) = c.create_account("alice", Value::Null).await?;
    let (_, bob) = c.create_account("bob", Value::Null).await?;
    let (s, me) = c.api(Method::GET, "/account", &alice, None).await?;
    assert_eq!(
        (s, me["account_id"].as_str()),
        (200, Some(alice_id.as_str()))
    );

    let created = c.create_channel(&alice, json!({"name": "shop"})).await?;
    assert_eq!(created["channel"], "alice.shop");
    let wh = created["webhook_id"].as_str().unwrap().to_owned();
    assert!(wh.starts_with("wh_") && wh.len() == 29, "{wh}");
    let url = created["webhook_url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/webhook/{wh}", c.base));
    let token = created["channel_token"].as_str().unwrap().to_owned();

    // A connector with the API key receives what is posted to the URL, byte for byte.
    let mut by_key = ws(&c, "alice.shop", &alice).await?;
    let body = b"{\"order\": 1,  \"note\":\"exact bytes\"}";
    let (s, _) = post_url(&c, &url, body, &[("content-type", "application/json")]).await;
    assert_eq!(s, 200);
    assert_eq!(body_of(&next_webhook(&mut by_key).await), body);
    // And the channel token works too.
    assert_eq!(c.connector_status("alice.shop", &token).await, 200);
    assert_eq!(c.connector_status("alice.shop", &alice).await, 200);

    // Another account: 404 through the API, 401 on the connector endpoints.
    let (s, _) = c
        .api(Method::GET, "/channels/alice.shop", &bob, None)
        .await?;
    assert_eq!(s, 404);
    let (s, v) = c
        .api(Method::GET, "/channels/alice.shop/dead-letters", &bob, None)
        .await?;
    assert_eq!(s, 404, "{v}");
    let (s_missing, v_missing) = c
        .api(Method::GET, "/channels/bob.nothing", &bob, None)
        .await?;
    assert_eq!(
        (s_missing, &v_missing),
        (404, &v),
        "indistinguishable from missing"
    );
    assert_eq!(c.connector_status("alice.shop", &bob).await, 401);
    let (s, _) = c
        .api(
            Method::GET,
            &format!("/channels/{CONFIGURED}"),
            &alice,
            None,
        )
        .await?;
    assert_eq!(s, 404, "a configured channel is not any account's");
    assert_eq!(c.connector_status(CONFIGURED, &alice).await, 401);
    let (s, list) = c.api(Method::GET, "/channels", &bob, None).await?;
    assert_eq!(
        (s, list["channels"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (s, list) = c.api(Method::GET, "/channels", &alice, None).await?;
    assert_eq!(s, 200);
    assert_eq!(list["channels"][0]["channel"], "alice.shop");
    assert_eq!(list["channels"][0]["stats"]["messages_received"], 1);

    // One 401 for every bad key.
    for bad in ["", "whc_unknown", "not-a-key", CONFIGURED_TOKEN] {
        let (s, v) = c.api(Method::GET, "/account", bad, None).await?;
        assert_eq!(
            status_and_code(s, &v),
            (401, Some("unauthorized")),
            "{bad:?}"
        );
    }

    // Restart: accounts and channels are still there and still work.
    drop(by_key);
    c.restart().await?;
    assert_eq!(account_status(&c, &alice).await?, 200);
    let mut by_token = ws(&c, "alice.shop", &token).await?;
    // The unacknowledged message was kept across the restart and comes first.
    assert_eq!(body_of(&next_webhook(&mut by_token).await), body);
    let (s, _) = post_url(&c, &url, b"after restart", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(
        body_of(&next_webhook(&mut by_token).await),
        b"after restart"
    );

    // Key rotation: the old key is refused at once, its live connection closed.
    let mut old_key_conn = ws(&c, "alice.shop", &alice).await?;
    let new_key = rotate_key(&c, &alice_id).await?;
    assert_eq!(
        account_status(&c, &alice).await?,
        401,
        "old key right after rotation"
    );
    assert_eq!(c.connector_status("alice.shop", &alice).await, 401);
    assert_eq!(close_code(&mut old_key_conn).await, Some(4005));
    assert_eq!(account_status(&c, &new_key).await?, 200);

    // Delete: ingress 404 at once, live connections closed with 4006.
    let (s, v) = c
        .api(Method::DELETE, "/channels/alice.shop", &new_key, None)
        .await?;
    assert_eq!((s, v["deleted"].as_str()), (200, Some("alice.shop")));
    let (s, _) = post_url(&c, &url, b"gone", &[]).await;
    assert_eq!(s, 404);
    assert_eq!(close_code(&mut by_token).await, Some(4006));
    let (s, _) = c
        .api(Method::GET, "/channels/alice.shop", &new_key, None)
        .await?;
    assert_eq!(s, 404);

    // Deleting an account deletes its channels; its key is refused.
    let kept = c.create_channel(&new_key, json!({"name": "kept"})).await?;
    let (s, v) = c
        .admin(Method::DELETE, &format!("/accounts/{alice_id}"))
        .await?;
    assert_eq!((s, v["channels_deleted"].as_u64()), (200, Some(1)), "{v}");
    let (s, _) = post_url(&c, kept["webhook_url"].as_str().unwrap(), b"x", &[]).await;
    assert_eq!(s, 404);
    assert_eq!(account_status(&c, &new_key).await?, 401);
    let (s, _) = c
        .admin(Method::GET, &format!("/accounts/{alice_id}"))
        .await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn hosted_quotas_verify_and_reload() -> anyhow::Result<()> {
    let reload = "reload-token-hosted";
    let c = Cloud::builder(hooks())
        .self_service("keys")
        .envs(&[
            ("CONFIG_RELOAD_ADMIN_TOKEN", reload),
            ("WEBHOOK_CONNECT_LOG_LEVEL", "debug"),
            ("WEBHOOK_CONNECT_ALLOW_QUERY_TOKENS", "true"),
        ])
        .start()
        .await?;
    let (_, key) = c
        .create_account(
            "carol",
            json!({"max_channels": 2, "max_ttl_seconds": 3600, "max_body_bytes": 64, "ingress_per_second": 3}),
        )
        .await?;
    // A setting above the cap: 422 naming the field and the cap; nothing is created.
    let (s, v) = try_create_channel(&c, &key, json!({"name": "a", "ttl_seconds": 7200})).await?;
    assert_eq!(s, 422, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("ttl_seconds") && detail.contains("max_ttl_seconds = 3600"),
        "{detail}"
    );
    // A configured channel's name is taken.
    let (_, cfg_key) = c.create_account("cfg", Value::Null).await?;
    let _ = cfg_key;

    let secret = "gh-webhook-secret";
    let gh = c
        .create_channel(
            &key,
            json!({"name": "gh", "verify": {"preset": "github", "secret": secret}}),
        )
        .await?;
    assert_eq!(
        gh["verify"],
        json!({"preset": "github", "secret_set": true})
    );
    assert!(!gh.to_string().contains(secret), "the secret is write-only");
    let url = gh["webhook_url"].as_str().unwrap().to_owned();
    let _second = c.create_channel(&key, json!({"name": "other"})).await?;
    let (s, v) = try_create_channel(&c, &key, json!({"name": "third"})).await?;
    assert_eq!(status_and_code(s, &v), (403, Some("quota_exceeded")), "{v}");
    let (s, v) = try_create_channel(&c, &key, json!({"name": "gh"})).await?;
    assert_eq!(status_and_code(s, &v), (409, Some("name_taken")), "{v}");

    // verify: a bad signature is 401 and nothing is stored; a good one is delivered exactly.
    let body = br#"{"action":"opened","n":  1}"#;
    let (s, _) = post_url(&c, &url, body, &[("x-hub-signature-256", "sha256=00")]).await;
    assert_eq!(s, 401);
    let (s, _) = post_url(&c, &url, body, &[]).await;
    assert_eq!(s, 401);
    let (_, ch) = c.api(Method::GET, "/channels/carol.gh", &key, None).await?;
    assert_eq!(ch["stats"]["messages_received"], 0, "nothing stored: {ch}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut conn = ws(&c, "carol.gh", &key).await?;
    let (s, _) = post_url(&c, &url, body, &[("x-hub-signature-256", &sig)]).await;
    assert_eq!(s, 200);
    assert_eq!(body_of(&next_webhook(&mut conn).await), body);

    // Body cap 413; rate 429 with Retry-After.
    let (s, _) = post_url(&c, &url, &[b'x'; 65], &[]).await;
    assert_eq!(s, 413);
    let other = _second["webhook_url"].as_str().unwrap();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let r = c.http.post(other).body("x").send().await?;
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some(), "429 carries Retry-After");

    // PATCH: above the cap is refused, within it applied.
    let (s, _) = c
        .api(
            Method::PATCH,
            "/channels/carol.gh",
            &key,
            Some(&json!({"max_queue_size": 1_000_000})),
        )
        .await?;
    assert_eq!(s, 422);
    let (s, v) = c
        .api(
            Method::PATCH,
            "/channels/carol.gh",
            &key,
            Some(&json!({"ttl_seconds": 60, "description": "gh"})),
        )
        .await?;
    assert_eq!((s, v["ttl_seconds"].as_u64()), (200, Some(60)), "{v}");

    // A configuration reload keeps self-service channels.
    assert_eq!(reload_config(&c, reload).await?.status(), 200);
    let (s, _) = post_url(&c, &url, body, &[("x-hub-signature-256", &sig)]).await;
    assert_eq!(s, 200, "after a reload");
    assert_eq!(body_of(&next_webhook(&mut conn).await), body);
    assert_account_owns(&c, "carol.gh").await?;

    // Dead letters and rotate-token through the account's API.
    let (s, v) = c
        .api(Method::GET, "/channels/carol.gh/dead-letters", &key, None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .api(
            Method::POST,
            "/channels/carol.gh/rotate-token",
            &key,
            Some(&json!({"grace_period_seconds": 0})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");

    let (s, queued) = c
        .api(Method::GET, "/channels/carol.gh/messages", &key, None)
        .await?;
    assert_eq!(s, 200, "{queued}");

    // `"verify": null` removes the check: an unsigned webhook is then accepted.
    let (s, patched) = c
        .api(
            Method::PATCH,
            "/channels/carol.gh",
            &key,
            Some(&json!({"verify": null})),
        )
        .await?;
    assert_eq!((s, patched.get("verify")), (200, None), "{patched}");
    let (s, _) = post_url(&c, &url, b"unsigned", &[]).await;
    assert_eq!(s, 200);

    // An API key is never accepted in a URL, even where `?token=` is allowed for tokens.
    let status_by_query = |credential: &str| {
        let url = format!("{}/connect/status/carol.gh?token={credential}", c.base);
        let http = c.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_by_query(&key).await, 401, "API key in the query");
    let rotated_token = v["new_token"].as_str().unwrap().to_owned();
    assert_eq!(
        status_by_query(&rotated_token).await,
        200,
        "channel token in the query"
    );

    // Metrics and the API description.
    let m = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(m.contains("webhook_connect_accounts 2"), "{m}");
    assert!(
        !m.contains("wh_"),
        "self-service webhook ids (capabilities) never reach metrics"
    );
    assert!(m.contains("webhook=\"carol.gh\""), "{m}");
    assert!(
        m.contains("webhook_connect_channels{source=\"self_service\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("webhook_connect_channels{source=\"config\"} 1"),
        "{m}"
    );
    let o: Value = c
        .http
        .get(format!("{}/openapi.json", c.base))
        .send()
        .await?
        .json()
        .await?;
    for path in [
        "/api/v1/accounts",
        "/api/v1/account",
        "/api/v1/channels",
        "/api/v1/channels/{channel}",
        "/api/v1/channels/{channel}/dead-letters",
        "/admin/webhook-connect/accounts/{account_id}/rotate-key",
    ] {
        assert!(o["paths"][path].is_object(), "{path} described");
    }

    // Keys and tokens never reach the log (debug level).
    let logs = c.logs();
    for secret in [
        key.as_str(),
        secret,
        gh["channel_token"].as_str().unwrap(),
        gh["webhook_id"].as_str().unwrap(),
        rotated_token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    Ok(())
}

#[tokio::test]
async fn open_sign_up_is_limited_per_ip_and_modes_gate_the_api() -> anyhow::Result<()> {
    let open = Cloud::builder(hooks())
        .self_service("open")
        .envs(&[("WEBHOOK_CONNECT_SIGNUP_PER_IP_PER_HOUR", "2")])
        .start()
        .await?;
    let (s, v) = open
        .api(
            Method::POST,
            "/accounts",
            "",
            Some(&json!({"name": "dana"})),
        )
        .await?;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("whc_"));
    let (s, me) = open.api(Method::GET, "/account", &key, None).await?;
    assert_eq!((s, me["name"].as_str()), (200, Some("dana")));
    let (s, v) = open
        .api(Method::POST, "/accounts", "", Some(&json!({})))
        .await?;
    assert_eq!(s, 201, "a generated name: {v}");
    let (s, v) = open
        .api(
            Method::POST,
            "/accounts",
            "",
            Some(&json!({"name": "dana"})),
        )
        .await?;
    assert_eq!(s, 429, "third from one IP: {v}");
    let r = open
        .http
        .post(format!("{}/api/v1/accounts", open.base))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let keys = keys_cloud().await?;
    let (s, _) = keys
        .api(Method::POST, "/accounts", "", Some(&json!({})))
        .await?;
    assert_eq!(s, 403);
    let (s, v) = keys
        .admin_json(Method::POST, "/accounts", &json!({"name": "erin"}))
        .await?;
    assert_eq!(s, 201);
    let (s, _) = keys
        .admin_json(Method::POST, "/accounts", &json!({"name": "erin"}))
        .await?;
    assert_eq!(s, 409);
    let id = v["account_id"].as_str().unwrap();
    let (s, bad) = patch_account(&keys, id, json!({"quota": {"max_queue_size": 0}})).await?;
    assert_eq!(s, 422, "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("quota.max_queue_size")
    );
    let (s, patched) = patch_account(&keys, id, json!({"quota": {"max_channels": 3}})).await?;
    assert_eq!(
        (s, patched["quota"]["max_channels"].as_u64()),
        (200, Some(3))
    );
    let (s, _) = patch_account(&keys, id, json!({"disabled": true})).await?;
    assert_eq!(s, 200);
    let (s, list) = keys.admin(Method::GET, "/accounts").await?;
    assert_eq!(
        (s, list["accounts"][0]["disabled"].as_bool()),
        (200, Some(true))
    );
    let (s, v) = keys
        .api(
            Method::GET,
            "/account",
            v["api_key"].as_str().unwrap(),
            None,
        )
        .await?;
    assert_eq!(
        status_and_code(s, &v),
        (401, Some("unauthorized")),
        "disabled"
    );

    let off = Cloud::start(hooks()).await?;
    let (s, _) = off
        .api(Method::POST, "/accounts", "", Some(&json!({})))
        .await?;
    assert_eq!(s, 404, "self-service off");
    Ok(())
}

/// One sign-up through the trusted proxy (127.0.0.1) for the client `xff`.
async fn sign_up_from(c: &Cloud, xff: &str) -> anyhow::Result<(u16, bool)> {
    let r = c
        .http
        .post(format!("{}/api/v1/accounts", c.base))
        .header("x-forwarded-for", xff)
        .json(&json!({}))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.headers().contains_key("retry-after")))
}

/// The sign-up limit (1 per hour) through the trusted proxy: an IPv6 client is its /64, an
/// IPv4-mapped address its IPv4 address.
async fn sign_up_limit_keys_clients(c: &Cloud) -> anyhow::Result<()> {
    assert_eq!(sign_up_from(c, "2001:db8:aa:bb::1").await?.0, 201);
    assert_eq!(
        sign_up_from(c, "2001:db8:aa:bb:1234:5678:9abc:def0").await?,
        (429, true),
        "another address of the same /64 is the same client"
    );
    assert_eq!(
        sign_up_from(c, "2001:db8:aa:bc::1").await?.0,
        201,
        "the next /64 is another client"
    );
    assert_eq!(sign_up_from(c, "::ffff:198.51.100.7").await?.0, 201);
    assert_eq!(
        sign_up_from(c, "198.51.100.7").await?,
        (429, true),
        "an IPv4-mapped address is its IPv4 address"
    );
    Ok(())
}

fn sign_up_envs() -> [(&'static str, &'static str); 2] {
    [
        ("WEBHOOK_CONNECT_SIGNUP_PER_IP_PER_HOUR", "1"),
        ("WEBHOOK_CONNECT_TRUSTED_PROXIES", "127.0.0.1"),
    ]
}

#[tokio::test]
async fn sign_up_limit_counts_an_ipv6_client_by_its_64() -> anyhow::Result<()> {
    let c = Cloud::builder(hooks())
        .self_service("open")
        .envs(&sign_up_envs())
        .start()
        .await?;
    sign_up_limit_keys_clients(&c).await
}

#[tokio::test]
async fn sign_up_limit_counts_an_ipv6_client_by_its_64_across_redis_replicas() -> anyhow::Result<()>
{
    let redis = RedisServer::start().await?;
    let mut env = sign_up_envs().to_vec();
    env.push(("WEBHOOK_CONNECT_REDIS_URL", &redis.url));
    let start = || {
        Cloud::builder(hooks())
            .self_service("open")
            .envs(&env)
            .start()
    };
    let (a, b) = (start().await?, start().await?);
    assert_eq!(sign_up_from(&a, "2001:db8:77:1::1").await?.0, 201);
    assert_eq!(
        sign_up_from(&b, "2001:db8:77:1::2").await?,
        (429, true),
        "the same /64 through the other replica (the shared window)"
    );
    sign_up_limit_keys_clients(&a).await
}

/// 30 concurrent channel creates of one account with `max_channels` 5, then 30 concurrent
/// account creates with `WEBHOOK_CONNECT_MAX_ACCOUNTS` = 5 (one account exists), spread over
/// `clouds` (replicas sharing one store, or one cloud): exactly the quota is created.
async fn quotas_hold_under_concurrent_creates(clouds: &[&Cloud]) -> anyhow::Result<()> {
    let (_, key) = clouds[0]
        .create_account("racer", json!({"max_channels": 5}))
        .await?;
    let creates = (0..30).map(|i| {
        let c = clouds[i % clouds.len()];
        let key = key.clone();
        async move { try_create_channel(c, &key, json!({"name": format!("c{i}")})).await }
    });
    let mut created = 0;
    for r in futures::future::join_all(creates).await {
        let (s, v) = r?;
        match s {
            201 => created += 1,
            403 => assert_eq!(v["code"], "quota_exceeded", "{v}"),
            other => panic!("channel create answered {other}: {v}"),
        }
    }
    assert_eq!(created, 5, "max_channels = 5 under 30 concurrent creates");
    let (s, list) = clouds[0].api(Method::GET, "/channels", &key, None).await?;
    assert_eq!(
        (s, list["channels"].as_array().map(Vec::len)),
        (200, Some(5))
    );

    let creates = (0..30).map(|i| {
        let c = clouds[i % clouds.len()];
        async move {
            c.admin_json(
                Method::POST,
                "/accounts",
                &json!({"name": format!("acct{i}")}),
            )
            .await
        }
    });
    let mut created = 0;
    for r in futures::future::join_all(creates).await {
        let (s, v) = r?;
        match s {
            201 => created += 1,
            503 => assert_eq!(v["code"], "capacity", "{v}"),
            other => panic!("account create answered {other}: {v}"),
        }
    }
    assert_eq!(
        created, 4,
        "MAX_ACCOUNTS = 5 (one existed) under 30 concurrent creates"
    );
    let (_, list) = clouds[0].admin(Method::GET, "/accounts").await?;
    assert_eq!(list["accounts"].as_array().map(Vec::len), Some(5));
    Ok(())
}

#[tokio::test]
async fn quotas_hold_under_concurrent_creates_on_the_embedded_store() -> anyhow::Result<()> {
    let c = Cloud::builder(hooks())
        .self_service("keys")
        .envs(&[("WEBHOOK_CONNECT_MAX_ACCOUNTS", "5")])
        .start()
        .await?;
    quotas_hold_under_concurrent_creates(&[&c]).await
}

#[tokio::test]
async fn quotas_hold_under_concurrent_creates_on_two_redis_replicas() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let replica = || {
        Cloud::builder(hooks())
            .self_service("keys")
            .envs(&[
                ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
                ("WEBHOOK_CONNECT_REDIS_PREFIX", "quota"),
                ("WEBHOOK_CONNECT_MAX_ACCOUNTS", "5"),
            ])
            .start()
    };
    let (a, b) = (replica().await?, replica().await?);
    quotas_hold_under_concurrent_creates(&[&a, &b]).await
}

async fn redis_replica(redis: &RedisServer) -> anyhow::Result<Cloud> {
    Cloud::builder(hooks())
        .self_service("keys")
        .envs(&[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "hosted"),
        ])
        .start()
        .await
}

#[tokio::test]
async fn hosted_channels_agree_between_two_redis_replicas() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = redis_replica(&redis).await?;
    let b = redis_replica(&redis).await?;
    let (alice_id, alice) = a.create_account("alice", Value::Null).await?;
    let (_, bob) = b.create_account("bob", Value::Null).await?;
    let created = a.create_channel(&alice, json!({"name": "shop"})).await?;
    let wh = created["webhook_id"].as_str().unwrap().to_owned();
    let token = created["channel_token"].as_str().unwrap().to_owned();

    // Created through A: B takes its webhooks, its key and its token at the next request.
    let b_url = format!("{}/webhook/{wh}", b.base);
    let mut on_b = ws(&b, "alice.shop", &alice).await?;
    let (s, _) = post_url(&b, &b_url, b"via b", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body_of(&next_webhook(&mut on_b).await), b"via b");
    assert_eq!(b.connector_status("alice.shop", &token).await, 200);
    assert_eq!(b.connector_status("alice.shop", &bob).await, 401);
    let (s, _) = b
        .api(Method::GET, "/channels/alice.shop", &bob, None)
        .await?;
    assert_eq!(s, 404);

    // A accepted the key before (and caches that on its channel view).
    assert_eq!(a.connector_status("alice.shop", &alice).await, 200);
    // Rotated through B: A refuses the old key at once.
    let new_key = rotate_key(&b, &alice_id).await?;
    assert_eq!(account_status(&a, &alice).await?, 401);
    assert_eq!(a.connector_status("alice.shop", &alice).await, 401);
    assert_eq!(a.connector_status("alice.shop", &new_key).await, 200);

    // Deleted through A: B's ingress answers 404 at once and its connection gets 4006.
    let mut by_token_b = ws(&b, "alice.shop", &token).await?;
    let (s, _) = a
        .api(Method::DELETE, "/channels/alice.shop", &new_key, None)
        .await?;
    assert_eq!(s, 200);
    let (s, _) = post_url(&b, &b_url, b"gone", &[]).await;
    assert_eq!(s, 404, "B right after the delete through A");
    assert_eq!(close_code(&mut by_token_b).await, Some(4006));
    wait_until(Duration::from_secs(5), "A's list to be empty", || async {
        a.api(Method::GET, "/channels", &new_key, None)
            .await
            .is_ok_and(|(_, v)| v["channels"].as_array().is_some_and(Vec::is_empty))
    })
    .await?;
    drop(on_b);
    Ok(())
}

#[tokio::test]
async fn a_key_rotated_or_disabled_through_one_replica_closes_its_connections_on_the_other()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = redis_replica(&redis).await?;
    let b = redis_replica(&redis).await?;
    let (id, key) = a.create_account("zoe", Value::Null).await?;
    let created = a.create_channel(&key, json!({"name": "shop"})).await?;
    let token = created["channel_token"].as_str().unwrap().to_owned();
    // Connections on B: one with the API key, one with the channel token.
    let mut by_key = ws(&b, "zoe.shop", &key).await?;
    let mut by_token = ws(&b, "zoe.shop", &token).await?;

    // Rotated through A: B closes the old key's connection at once (4005), without any
    // further request with that key; the channel token's connection stays.
    let new_key = rotate_key(&a, &id).await?;
    assert_eq!(close_code(&mut by_key).await, Some(4005), "old key on B");

    // Disabled through A: B closes the new key's connection too.
    let mut by_new_key = ws(&b, "zoe.shop", &new_key).await?;
    let (s, _) = patch_account(&a, &id, json!({"disabled": true})).await?;
    assert_eq!(s, 200);
    assert_eq!(
        close_code(&mut by_new_key).await,
        Some(4005),
        "disabled account on B"
    );

    // The channel token was never revoked: its connection still receives webhooks.
    let (s, _) = patch_account(&a, &id, json!({"disabled": false})).await?;
    assert_eq!(s, 200);
    let url = created["webhook_url"].as_str().unwrap().to_owned();
    let (s, _) = post_url(&a, &url, b"still here", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body_of(&next_webhook(&mut by_token).await), b"still here");
    Ok(())
}

#[tokio::test]
async fn a_configured_channel_cannot_take_over_a_self_service_channel() -> anyhow::Result<()> {
    let reload = "reload-token-clash";
    let c = Cloud::builder(hooks())
        .self_service("keys")
        .envs(&[("CONFIG_RELOAD_ADMIN_TOKEN", reload)])
        .start()
        .await?;
    let (_, key) = c.create_account("alice", Value::Null).await?;
    let created = c.create_channel(&key, json!({"name": "shop"})).await?;
    let token = created["channel_token"].as_str().unwrap().to_owned();
    let url = created["webhook_url"].as_str().unwrap().to_owned();
    let mut conn = ws(&c, "alice.shop", &token).await?;

    // The operator adds a configured entry naming the self-service channel.
    let clash_token = "configured-clash-token-e2e";
    let mut doc = hooks();
    doc["clash-hook"] = connect_hook("alice.shop", clash_token, json!({}));
    std::fs::write(
        c.dir.path().join("webhooks.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    let details: Value = reload_config(&c, reload).await?.json().await?;
    let errors = details.to_string();
    assert!(
        errors.contains("clash-hook")
            && errors.contains("alice.shop")
            && errors.contains("self-service"),
        "the reload names the conflict: {details}"
    );
    let status = c
        .http
        .get(format!("{}/admin/config-status", c.base))
        .bearer_auth(reload)
        .send()
        .await?
        .text()
        .await?;
    assert!(status.contains("clash-hook"), "{status}");

    // The configured entry is disabled; the self-service channel keeps its token, its
    // connection and its webhooks.
    assert_eq!(c.connector_status("alice.shop", clash_token).await, 401);
    assert_eq!(c.connector_status("alice.shop", &token).await, 200);
    let (s, _) = c.post("clash-hook", "{}").await?;
    assert_eq!(s, 503, "the disabled configured entry");
    let (s, _) = post_url(&c, &url, b"mine", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body_of(&next_webhook(&mut conn).await), b"mine");
    assert_account_owns(&c, "alice.shop").await?;
    Ok(())
}
