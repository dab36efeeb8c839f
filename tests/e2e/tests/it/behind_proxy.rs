//! TLS is terminated at a reverse proxy (docs/OPERATIONS.md, "TLS"). What the cloud itself
//! must do for that: take the client address from `X-Forwarded-For` only when the peer is a
//! trusted proxy (`WEBHOOK_CONNECT_TRUSTED_PROXIES`, used by `ip_whitelist`), tell the proxy
//! not to buffer SSE, and keep serving plain HTTP when the unimplemented
//! `WEBHOOK_CONNECT_TLS_*_FILE` variables are set.

use serde_json::{Value, json};

use connect_testkit::cloud::{Cloud, connect_hook};

const CH: &str = "proxied";
const TOKEN: &str = "behind-a-proxy-channel-token";
const ALLOWED: &str = "203.0.113.5";

fn hooks() -> Value {
    let mut hook = connect_hook(CH, TOKEN, json!({}));
    hook["ip_whitelist"] = json!([ALLOWED]);
    json!({"guarded": hook})
}

/// POSTs to the guarded webhook with `X-Forwarded-For: xff` (none when `None`); the status.
async fn post_from(c: &Cloud, xff: Option<&str>) -> anyhow::Result<u16> {
    let mut req = c
        .http
        .post(format!("{}/webhook/guarded", c.base))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    Ok(req.send().await?.status().as_u16())
}

#[tokio::test]
async fn ip_whitelist_sees_the_client_behind_a_trusted_proxy_only() -> anyhow::Result<()> {
    let behind =
        Cloud::start_with(hooks(), &[("WEBHOOK_CONNECT_TRUSTED_PROXIES", "127.0.0.1")]).await?;
    assert_eq!(
        post_from(&behind, Some(ALLOWED)).await?,
        200,
        "the allowed client"
    );
    assert_eq!(
        post_from(&behind, Some("198.51.100.9")).await?,
        401,
        "another client"
    );
    assert_eq!(
        post_from(&behind, Some(&format!("{ALLOWED}, 198.51.100.9"))).await?,
        401,
        "a client that sends the allowed address itself: the proxy appends the real one"
    );
    assert_eq!(
        post_from(&behind, None).await?,
        401,
        "the proxy's own address is not the allowed client"
    );

    let direct = Cloud::start(hooks()).await?;
    assert_eq!(
        post_from(&direct, Some(ALLOWED)).await?,
        401,
        "without WEBHOOK_CONNECT_TRUSTED_PROXIES the header of the peer is ignored"
    );
    Ok(())
}

#[tokio::test]
async fn sse_answers_tell_a_proxy_not_to_buffer() -> anyhow::Result<()> {
    let c = Cloud::start(hooks()).await?;
    let r = c
        .http
        .get(format!("{}/connect/stream/{CH}/sse", c.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert!(
        header("content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        header("content-type")
    );
    Ok(())
}

#[tokio::test]
async fn the_tls_file_settings_are_not_implemented_and_change_nothing() -> anyhow::Result<()> {
    // Files that do not exist: a build that read them would refuse to start.
    let c = Cloud::start_with(
        hooks(),
        &[
            ("WEBHOOK_CONNECT_TLS_CERT_FILE", "/nonexistent/relay.crt"),
            ("WEBHOOK_CONNECT_TLS_KEY_FILE", "/nonexistent/relay.key"),
            ("WEBHOOK_CONNECT_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await?;
    assert_eq!(
        post_from(&c, Some(ALLOWED)).await?,
        200,
        "plain HTTP, as without them"
    );
    Ok(())
}
