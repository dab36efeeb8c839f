//! Start-up: configuration is validated before anything is bound, with the documented exit
//! codes (64 bad configuration, 69 data directory in use).

use std::time::Duration;

use connect_testkit::{ChildProcess, free_port, workspace_bin};
use serde_json::json;

use connect_testkit::cloud::{Cloud, connect_hook};

fn run(env: &[(&str, &str)]) -> anyhow::Result<(Option<i32>, String)> {
    let mut p = ChildProcess::spawn(workspace_bin("webhook-connect-cloud")?, &[], env, "cloud")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while p.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = p.exit_status().and_then(|s| s.code());
    Ok((status, p.stderr_text()))
}

/// Each case runs while the test itself holds the listen port: a process that bound (or tried
/// to) before validating would exit 69 "cannot bind" instead of 64, and one that opened its
/// buffer first would leave the data directory behind.
#[test]
fn bad_settings_and_bad_config_exit_64_before_binding() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let held = std::net::TcpListener::bind("127.0.0.1:0")?;
    let listen = held.local_addr()?.to_string();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.json");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json")?;
    let good = dir.path().join("good.json");
    std::fs::write(&good, "{}")?;
    // (what, extra environment, a word the message must contain)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 5] = [
        (
            "a missing configuration file",
            vec![("WEBHOOKS_CONFIG_FILE", missing.to_str().unwrap())],
            "missing.json",
        ),
        (
            "a configuration file that is not JSON",
            vec![("WEBHOOKS_CONFIG_FILE", broken.to_str().unwrap())],
            "broken.json",
        ),
        (
            "a heartbeat interval below the minimum",
            vec![
                ("WEBHOOKS_CONFIG_FILE", good.to_str().unwrap()),
                ("WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS", "1"),
            ],
            "heartbeat",
        ),
        (
            "self-service without a public URL",
            vec![
                ("WEBHOOKS_CONFIG_FILE", good.to_str().unwrap()),
                ("WEBHOOK_CONNECT_SELF_SERVICE", "keys"),
            ],
            "webhook_connect_public_url",
        ),
        (
            "self-service with a public URL that is not an absolute http(s) URL",
            vec![
                ("WEBHOOKS_CONFIG_FILE", good.to_str().unwrap()),
                ("WEBHOOK_CONNECT_SELF_SERVICE", "open"),
                ("WEBHOOK_CONNECT_PUBLIC_URL", "hooks.example.com"),
            ],
            "webhook_connect_public_url",
        ),
    ];
    for (what, extra, names) in cases {
        let mut env = vec![
            ("WEBHOOK_CONNECT_LISTEN", listen.as_str()),
            ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().unwrap()),
        ];
        env.extend(extra);
        let (code, err) = run(&env)?;
        assert_eq!(code, Some(64), "{what}: {err}");
        assert!(
            err.to_lowercase().contains(names),
            "{what}: the message names {names}: {err}"
        );
        assert!(
            !err.contains("cannot listen"),
            "{what}: it tried to bind before validating: {err}"
        );
        assert!(
            !data.exists(),
            "{what}: the data directory was created before validation passed"
        );
    }
    // The same held port with a valid configuration: the bind is refused (69). This is what
    // each case above would have shown had it bound first.
    let (code, err) = run(&[
        ("WEBHOOK_CONNECT_LISTEN", listen.as_str()),
        ("WEBHOOKS_CONFIG_FILE", good.to_str().unwrap()),
        ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().unwrap()),
    ])?;
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    drop(held);
    Ok(())
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_exits_69() -> anyhow::Result<()> {
    let cloud =
        Cloud::start(json!({"a": connect_hook("c", "token-0123456789abcdef", json!({}))})).await?;
    let data = cloud.dir.path().join("data");
    let cfg = cloud.dir.path().join("webhooks.json");
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, err) = tokio::task::spawn_blocking(move || {
        run(&[
            ("WEBHOOK_CONNECT_LISTEN", &listen),
            ("WEBHOOKS_CONFIG_FILE", cfg.to_str().unwrap()),
            ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().unwrap()),
        ])
    })
    .await??;
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert_eq!(
        cloud.post("a", "{}").await?.0,
        200,
        "the first process keeps serving"
    );
    Ok(())
}

#[tokio::test]
async fn default_entry_catches_unknown_ids_but_never_disabled_ones() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({
        "default": connect_hook("catch", "catch-all-token-0123", json!({})),
        "broken": {"module": "webhook_connect", "module-config": {"channel": "catch", "channel_token": "catch-all-token-0123", "ttl_seconds": 0}},
    }))
    .await?;
    let (s, v) = cloud.post("anything-goes", r#"{"a":1}"#).await?;
    assert_eq!(s, 200, "{v}");
    let (_, peek) = cloud
        .admin(reqwest::Method::GET, "/channels/catch/messages")
        .await?;
    assert_eq!(
        peek["messages"][0]["webhook_id"], "anything-goes",
        "the requested id is kept"
    );
    let (s, v) = cloud.post("broken", "{}").await?;
    assert_eq!(
        (s, v["detail"].as_str()),
        (503, Some("Webhook unavailable")),
        "a disabled id never falls back to default"
    );
    Ok(())
}

#[tokio::test]
async fn relay_disabled_answers_503_not_initialized() -> anyhow::Result<()> {
    let cloud = Cloud::start_with(
        json!({"a": connect_hook("c", "token-0123456789abcdef", json!({}))}),
        &[("WEBHOOK_CONNECT_ENABLED", "false")],
    )
    .await?;
    let (s, v) = cloud.post("a", "{}").await?;
    assert_eq!(
        (s, v["detail"].as_str()),
        (503, Some("Webhook Connect not initialized")),
        "{v}"
    );
    let r = cloud
        .http
        .get(format!("{}/connect/stream/c/poll?timeout=1", cloud.base))
        .bearer_auth("token-0123456789abcdef")
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    let (s, _) = cloud.admin(reqwest::Method::GET, "/channels").await?;
    assert_eq!(s, 503);
    Ok(())
}
