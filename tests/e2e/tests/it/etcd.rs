//! The etcd configuration backend against a real etcd (CONFIG.md §4): seed scenario 05 (all
//! checks), resume after a disconnect without missing events, last good configuration while
//! etcd is away, bad puts keeping the previous value and being reported; mutual TLS,
//! username/password (with token expiry and wrong credentials), an unreachable endpoint in
//! `ETCD_ENDPOINTS`, and a three-member cluster losing members.

use std::time::Duration;

use connect_testkit::{
    EtcdCluster, EtcdOptions, EtcdServer, EtcdTls, TcpProxy, TestPki, wait_until,
};
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, Permission, TlsOptions,
};
use serde_json::{Value, json};

use connect_testkit::cloud::Cloud;

const RELOAD_TOKEN: &str = "reload-token-for-tests";

fn log_hook() -> String {
    json!({"data_type": "json", "module": "log", "module-config": {"pretty_print": true}})
        .to_string()
}

async fn put(etcd: &mut Client, key: &str, value: &str) {
    etcd.put(key, value, None).await.unwrap();
}

/// POSTs `path` (after `/webhook/`) until it answers `want`.
async fn wait_path(c: &Cloud, path: &str, want: u16) {
    let last = std::sync::Mutex::new(0u16);
    let r = wait_until(
        Duration::from_secs(20),
        &format!("/webhook/{path} → {want}"),
        || {
            let last = &last;
            async move {
                let s = c.post(path, "{}").await.map(|(s, _)| s).unwrap_or(0);
                *last.lock().unwrap() = s;
                s == want
            }
        },
    )
    .await;
    if let Err(e) = r {
        panic!(
            "{e} (last answer {})\n{}",
            last.lock().unwrap(),
            c.proc.stderr_text()
        );
    }
}

async fn health(c: &Cloud) -> (u16, Value) {
    let r = c
        .http
        .get(format!("{}/health", c.base))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn config_status(c: &Cloud) -> Value {
    let r = c
        .http
        .get(format!("{}/admin/config-status", c.base))
        .bearer_auth(RELOAD_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn start_cloud(endpoint: &str) -> Cloud {
    Cloud::start_with(
        json!({}),
        &[
            ("CONFIG_BACKEND", "etcd"),
            ("ETCD_ENDPOINTS", endpoint),
            ("ETCD_PREFIX", "/cwm/"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_05_etcd_namespaces() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    // 1. Seed ns_alpha (hook1, hook2), ns_beta (hook1) and the default namespace.
    put(&mut kv, "/cwm/ns_alpha/webhooks/hook1", &log_hook()).await;
    put(&mut kv, "/cwm/ns_alpha/webhooks/hook2", &log_hook()).await;
    put(&mut kv, "/cwm/ns_beta/webhooks/hook1", &log_hook()).await;
    put(&mut kv, "/cwm/default/webhooks/fallback_hook", &log_hook()).await;
    let c = start_cloud(&etcd.endpoint).await;
    // 2–4. Seeded namespaced webhooks answer 200.
    wait_path(&c, "ns_alpha/hook1", 200).await;
    assert_eq!(c.post("ns_alpha/hook2", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("ns_beta/hook1", "{}").await.unwrap().0, 200);
    // 5. Not seeded → 404; an unknown namespace too.
    assert_eq!(c.post("ns_beta/hook2", "{}").await.unwrap().0, 404);
    assert_eq!(c.post("ns_gamma/hook1", "{}").await.unwrap().0, 404);
    // 6. Live add.
    put(&mut kv, "/cwm/ns_beta/webhooks/hook_new", &log_hook()).await;
    wait_path(&c, "ns_beta/hook_new", 200).await;
    // 7. Live delete.
    kv.delete("/cwm/ns_alpha/webhooks/hook2", None)
        .await
        .unwrap();
    wait_path(&c, "ns_alpha/hook2", 404).await;
    assert_eq!(c.post("ns_alpha/hook1", "{}").await.unwrap().0, 200);
    // 8. Non-namespaced URL → ETCD_NAMESPACE (default), same entry as /webhook/default/x.
    assert_eq!(c.post("fallback_hook", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("default/fallback_hook", "{}").await.unwrap().0, 200);
    assert_eq!(
        c.post("hook1", "{}").await.unwrap().0,
        404,
        "namespaces do not leak"
    );
    let (code, h) = health(&c).await;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["components"]["config_backend"], "etcd");
    assert_eq!(h["components"]["etcd"], "healthy");
    assert_eq!(h["status"], "healthy", "{h}");
    let st = config_status(&c).await;
    assert_eq!(st["provider"]["type"], "etcd");
    assert_eq!(st["provider"]["connected"], true);
    assert!(st["provider"]["revision"].as_i64().unwrap() > 0, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_put_keeps_the_previous_value_and_is_reported() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let guarded = json!({"module": "log", "authorization": "Bearer one"}).to_string();
    put(&mut kv, "/cwm/default/webhooks/guarded", &guarded).await;
    let c = start_cloud(&etcd.endpoint).await;
    wait_path(&c, "guarded", 401).await;
    // Not JSON, then JSON with an unsupported module: the previous definition stays.
    put(&mut kv, "/cwm/default/webhooks/guarded", "{broken").await;
    put(&mut kv, "/cwm/default/webhooks/marker", &log_hook()).await;
    wait_path(&c, "marker", 200).await;
    let (code, h) = health(&c).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["config_errors"], 1, "{h}");
    let ok = c
        .http
        .post(format!("{}/webhook/guarded", c.base))
        .header("authorization", "Bearer one")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status().as_u16(),
        200,
        "previous definition still serves"
    );
    put(
        &mut kv,
        "/cwm/default/webhooks/guarded",
        &json!({"module": "kafka"}).to_string(),
    )
    .await;
    // A new key with an invalid value is disabled (503).
    put(
        &mut kv,
        "/cwm/default/webhooks/newbad",
        &json!({"module": "kafka"}).to_string(),
    )
    .await;
    wait_path(&c, "newbad", 503).await;
    let st = config_status(&c).await;
    let errs = st["errors"].as_array().unwrap();
    assert!(errs.iter().any(|e| e["webhook"] == "guarded"), "{st}");
    assert!(errs.iter().any(|e| e["webhook"] == "newbad"), "{st}");
    // A valid put clears the error.
    put(&mut kv, "/cwm/default/webhooks/guarded", &log_hook()).await;
    kv.delete("/cwm/default/webhooks/newbad", None)
        .await
        .unwrap();
    wait_path(&c, "guarded", 200).await;
    wait_until(Duration::from_secs(10), "health healthy again", || async {
        health(&c).await.1["status"] == "healthy"
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_resumes_after_a_disconnect_without_missing_events() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", etcd.port).parse().unwrap())
        .await
        .unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    put(&mut kv, "/cwm/default/webhooks/keep", &log_hook()).await;
    put(&mut kv, "/cwm/default/webhooks/doomed", &log_hook()).await;
    let c = start_cloud(&format!("http://127.0.0.1:{}", proxy.port)).await;
    wait_path(&c, "keep", 200).await;
    wait_until(Duration::from_secs(10), "etcd healthy", || async {
        health(&c).await.1["components"]["etcd"] == "healthy"
    })
    .await
    .unwrap();

    // Cut the link; change etcd meanwhile (several events, including a put then delete).
    proxy.cut();
    wait_until(
        Duration::from_secs(30),
        "etcd reported disconnected",
        || async { health(&c).await.1["components"]["etcd"] == "disconnected" },
    )
    .await
    .unwrap();
    let (code, h) = health(&c).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("degraded")), "{h}");
    put(&mut kv, "/cwm/default/webhooks/added_offline", &log_hook()).await;
    put(&mut kv, "/cwm/ns_x/webhooks/transient", &log_hook()).await;
    kv.delete("/cwm/ns_x/webhooks/transient", None)
        .await
        .unwrap();
    kv.delete("/cwm/default/webhooks/doomed", None)
        .await
        .unwrap();
    // The last good configuration keeps serving while etcd is unreachable.
    assert_eq!(c.post("keep", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("doomed", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("added_offline", "{}").await.unwrap().0, 404);

    proxy.restore();
    wait_path(&c, "added_offline", 200).await;
    wait_path(&c, "doomed", 404).await;
    assert_eq!(c.post("ns_x/transient", "{}").await.unwrap().0, 404);
    assert_eq!(c.post("keep", "{}").await.unwrap().0, 200);

    // etcd itself restarts (same data): the watch resumes again.
    etcd.restart().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    put(&mut kv, "/cwm/default/webhooks/after_restart", &log_hook()).await;
    wait_path(&c, "after_restart", 200).await;
    let n = kv
        .get(
            "/cwm/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    let st = config_status(&c).await;
    assert_eq!(st["webhooks_count"].as_i64().unwrap(), n, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_answers_503_until_etcd_is_reachable() {
    let port = connect_testkit::free_port();
    let c = start_cloud(&format!("http://127.0.0.1:{port}")).await;
    let (s, v) = c.post("anything", "{}").await.unwrap();
    assert_eq!(s, 503, "{v}");
    let (code, h) = health(&c).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
}

#[test]
fn bad_backend_settings_exit_64_before_binding() {
    use connect_testkit::{ChildProcess, free_port, workspace_bin};
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("webhooks.json");
    std::fs::write(&hooks, "{}").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let base = [
        ("WEBHOOK_CONNECT_LISTEN", listen.as_str()),
        ("WEBHOOK_CONNECT_DATA_DIR", data.to_str().unwrap()),
        ("WEBHOOKS_CONFIG_FILE", hooks.to_str().unwrap()),
    ];
    for (case, extra) in [
        (
            "etcd user without password",
            vec![("CONFIG_BACKEND", "etcd"), ("ETCD_USERNAME", "u")],
        ),
        (
            "bad etcd namespace",
            vec![("CONFIG_BACKEND", "ETCD"), ("ETCD_NAMESPACE", "a/b")],
        ),
        ("vault without address", vec![("SECRETS_BACKEND", "vault")]),
        (
            "vault without auth",
            vec![
                ("VAULT_ENABLED", "true"),
                ("VAULT_ADDR", "http://127.0.0.1:1"),
            ],
        ),
    ] {
        let env: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let mut p = ChildProcess::spawn(
            workspace_bin("webhook-connect-cloud").unwrap(),
            &[],
            &env,
            "cloud",
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while p.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let code = p.exit_status().and_then(|s| s.code());
        assert_eq!(code, Some(64), "{case}: {}", p.stderr_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_forces_a_full_reread() {
    let etcd = EtcdServer::start().await.unwrap();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", etcd.port).parse().unwrap())
        .await
        .unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    put(&mut kv, "/cwm/default/webhooks/old", &log_hook()).await;
    let c = start_cloud(&format!("http://127.0.0.1:{}", proxy.port)).await;
    wait_path(&c, "old", 200).await;
    proxy.cut();
    wait_until(
        Duration::from_secs(30),
        "etcd reported disconnected",
        || async { health(&c).await.1["components"]["etcd"] == "disconnected" },
    )
    .await
    .unwrap();
    // Changes while away, then compaction past the revision the cloud would resume from.
    put(&mut kv, "/cwm/default/webhooks/new", &log_hook()).await;
    kv.delete("/cwm/default/webhooks/old", None).await.unwrap();
    let rev = kv
        .put("/cwm/default/webhooks/newest", log_hook(), None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(rev, None).await.unwrap();
    proxy.restore();
    wait_path(&c, "newest", 200).await;
    wait_path(&c, "old", 404).await;
    assert_eq!(c.post("new", "{}").await.unwrap().0, 200);
    let st = config_status(&c).await;
    assert!(st["provider"]["revision"].as_i64().unwrap() >= rev, "{st}");
    assert!(
        c.proc.stderr_text().contains("re-reading the whole prefix"),
        "the compaction path was not taken"
    );
}

// --- TLS, authentication, several endpoints (issue "Ops backends") ---------------------------

fn tls_client_options(pki: &TestPki, with_client_cert: bool) -> ConnectOptions {
    let mut tls =
        TlsOptions::new().ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pki.client_cert).unwrap(),
            std::fs::read(&pki.client_key).unwrap(),
        ));
    }
    ConnectOptions::new().with_tls(tls)
}

/// A cloud on the etcd backend with extra settings; `/health/live` only (it may never load).
async fn start_cloud_with(extra: &[(&str, &str)]) -> Cloud {
    let mut env = vec![
        ("CONFIG_BACKEND", "etcd"),
        ("ETCD_PREFIX", "/cwm/"),
        ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
    ];
    env.extend_from_slice(extra);
    Cloud::start_with(json!({}), &env).await.unwrap()
}

/// Waits until the config status reports an etcd error containing `needle`; returns it.
async fn wait_etcd_error(c: &Cloud, needle: &str) -> String {
    let found = std::sync::Mutex::new(String::new());
    let r = wait_until(
        Duration::from_secs(20),
        &format!("an etcd error mentioning {needle:?}"),
        || async {
            let st = config_status(c).await;
            let hit = st["errors"].as_array().into_iter().flatten().find_map(|e| {
                let text = e["error"].as_str()?;
                (text.starts_with("etcd:") && text.contains(needle)).then(|| text.to_owned())
            });
            match hit {
                Some(t) => {
                    *found.lock().unwrap() = t;
                    true
                }
                None => false,
            }
        },
    )
    .await;
    if let Err(e) = r {
        panic!(
            "{e}\nstatus: {}\n{}",
            config_status(c).await,
            c.proc.stderr_text()
        );
    }
    found.into_inner().unwrap()
}

/// Not loaded: `/health` 503 unhealthy with etcd disconnected, ingress 503.
async fn assert_not_loaded(c: &Cloud) {
    let (code, h) = health(c).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert_eq!(h["components"]["etcd"], "disconnected", "{h}");
    assert_eq!(c.post("hook", "{}").await.unwrap().0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_loads_and_watches() {
    let pki = TestPki::generate().unwrap();
    let etcd = EtcdCluster::start(
        1,
        EtcdOptions {
            tls: Some(EtcdTls {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                ca: pki.ca.clone(),
                client_cert_auth: true,
            }),
            ..EtcdOptions::default()
        },
    )
    .await
    .unwrap();
    let endpoint = etcd.members[0].endpoint.clone();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let mut kv = Client::connect([endpoint.as_str()], Some(tls_client_options(&pki, true)))
        .await
        .unwrap();
    put(&mut kv, "/cwm/default/webhooks/hook", &log_hook()).await;
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let c = start_cloud_with(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_CA_FILE", ca),
        ("ETCD_CERT_FILE", cert),
        ("ETCD_KEY_FILE", key),
    ])
    .await;
    wait_path(&c, "hook", 200).await;
    // Live watch over TLS.
    put(&mut kv, "/cwm/default/webhooks/live", &log_hook()).await;
    wait_path(&c, "live", 200).await;
    kv.delete("/cwm/default/webhooks/hook", None).await.unwrap();
    wait_path(&c, "hook", 404).await;
    let (code, h) = health(&c).await;
    assert_eq!(
        (code, &h["components"]["etcd"]),
        (200, &json!("healthy")),
        "{h}"
    );

    // ETCD_HOST/ETCD_PORT with the TLS files: the single endpoint is dialled over https://.
    let port = etcd.members[0].port.to_string();
    let by_host = start_cloud_with(&[
        ("ETCD_HOST", "127.0.0.1"),
        ("ETCD_PORT", &port),
        ("ETCD_CA_FILE", ca),
        ("ETCD_CERT_FILE", cert),
        ("ETCD_KEY_FILE", key),
    ])
    .await;
    wait_path(&by_host, "live", 200).await;

    // Without the client certificate etcd refuses the cloud: not loaded, and reported.
    let no_cert = start_cloud_with(&[("ETCD_ENDPOINTS", &endpoint), ("ETCD_CA_FILE", ca)]).await;
    // The documented reason names the TLS files to check.
    wait_etcd_error(
        &no_cert,
        "TLS failed (check ETCD_CA_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE)",
    )
    .await;
    assert_not_loaded(&no_cert).await;
    // A CA that did not sign the server's certificate: refused as well.
    let other = TestPki::generate().unwrap();
    let wrong_ca = start_cloud_with(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_CA_FILE", other.ca.to_str().unwrap()),
        ("ETCD_CERT_FILE", cert),
        ("ETCD_KEY_FILE", key),
    ])
    .await;
    let e = wait_etcd_error(
        &wrong_ca,
        "TLS failed (check ETCD_CA_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE)",
    )
    .await;
    assert_not_loaded(&wrong_ca).await;
    assert!(e.contains("certificate"), "the cause is kept: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_authenticate_and_wrong_ones_are_reported() {
    // A short token TTL (2 s times CONNECT_TEST_TIME_SCALE): the cloud must log in again on
    // its own once its token has expired.
    let token_ttl = connect_testkit::timing::secs(2);
    let etcd = EtcdCluster::start(
        1,
        EtcdOptions {
            auth_token_ttl: Some(token_ttl),
            ..EtcdOptions::default()
        },
    )
    .await
    .unwrap();
    let endpoint = etcd.members[0].endpoint.clone();
    let mut admin = Client::connect([endpoint.as_str()], None).await.unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    // The cloud's user may only read the configuration prefix.
    admin.role_add("cwm-reader").await.unwrap();
    admin
        .role_grant_permission("cwm-reader", Permission::read("/cwm/").with_prefix())
        .await
        .unwrap();
    admin.user_add("cloud", "cloud-pw", None).await.unwrap();
    admin.user_grant_role("cloud", "cwm-reader").await.unwrap();
    admin
        .user_add("outsider", "outsider-pw", None)
        .await
        .unwrap();
    admin.auth_enable().await.unwrap();
    let mut kv = Client::connect(
        [endpoint.as_str()],
        Some(
            ConnectOptions::new()
                .with_user("root", "root-pw")
                .with_auto_token_refresh(true),
        ),
    )
    .await
    .unwrap();
    put(&mut kv, "/cwm/default/webhooks/hook", &log_hook()).await;

    let c = start_cloud_with(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_USERNAME", "cloud"),
        ("ETCD_PASSWORD", "cloud-pw"),
    ])
    .await;
    wait_path(&c, "hook", 200).await;
    put(&mut kv, "/cwm/default/webhooks/live", &log_hook()).await;
    wait_path(&c, "live", 200).await;
    // Past the token TTL: the watch keeps delivering and a reload (a fresh range read with
    // the client's token) succeeds.
    // (Time must pass here: the stimulus is the token's expiry, twice over.)
    tokio::time::sleep(Duration::from_secs(2 * token_ttl)).await;
    put(&mut kv, "/cwm/default/webhooks/after_ttl", &log_hook()).await;
    wait_path(&c, "after_ttl", 200).await;
    let r = c
        .http
        .post(format!("{}/admin/reload-config", c.base))
        .bearer_auth(RELOAD_TOKEN)
        .send()
        .await
        .unwrap();
    let (code, body) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!(code, 200, "{body}\n{}", c.proc.stderr_text());
    assert_eq!(body["details"]["total_webhooks"], 3, "{body}");
    let (code, h) = health(&c).await;
    assert_eq!((code, &h["status"]), (200, &json!("healthy")), "{h}");
    let logs = c.proc.stderr_text();
    assert!(!logs.contains("etcd disconnected"), "{logs}");

    // Wrong password: nothing loads, /health says so and the config status says why.
    let wrong = start_cloud_with(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_USERNAME", "cloud"),
        ("ETCD_PASSWORD", "not-the-password"),
    ])
    .await;
    let e = wait_etcd_error(&wrong, "authentication failed").await;
    assert!(e.contains("ETCD_USERNAME / ETCD_PASSWORD"), "{e}");
    assert!(!e.contains("not-the-password"), "the password leaked: {e}");
    assert_not_loaded(&wrong).await;
    assert!(
        !wrong.proc.stderr_text().contains("not-the-password"),
        "the password leaked into the log"
    );
    // A user without read access to the prefix.
    let outsider = start_cloud_with(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_USERNAME", "outsider"),
        ("ETCD_PASSWORD", "outsider-pw"),
    ])
    .await;
    wait_etcd_error(&outsider, "permission denied").await;
    assert_not_loaded(&outsider).await;
    // No credentials at all against an etcd with authentication on.
    let anonymous = start_cloud_with(&[("ETCD_ENDPOINTS", &endpoint)]).await;
    wait_etcd_error(
        &anonymous,
        "etcd requires authentication (set ETCD_USERNAME / ETCD_PASSWORD)",
    )
    .await;
    assert_not_loaded(&anonymous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_first_endpoint_does_not_stop_loading_or_watching() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    put(&mut kv, "/cwm/default/webhooks/hook", &log_hook()).await;
    let dead = format!("http://127.0.0.1:{}", connect_testkit::free_port());
    let c = start_cloud_with(&[("ETCD_ENDPOINTS", &format!("{dead},{}", etcd.endpoint))]).await;
    wait_path(&c, "hook", 200).await;
    put(&mut kv, "/cwm/default/webhooks/live", &log_hook()).await;
    wait_path(&c, "live", 200).await;
    wait_until(Duration::from_secs(15), "etcd healthy", || async {
        health(&c).await.1["components"]["etcd"] == "healthy"
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_keeps_serving_when_members_fail() {
    let mut cluster = EtcdCluster::start(3, EtcdOptions::default()).await.unwrap();
    let eps = cluster.endpoints();
    let client = |i: usize| {
        let ep = eps[i].clone();
        async move { Client::connect([ep], None).await.unwrap() }
    };
    let mut kv = client(2).await;
    put(&mut kv, "/cwm/default/webhooks/hook", &log_hook()).await;
    let c = start_cloud_with(&[("ETCD_ENDPOINTS", &eps.join(","))]).await;
    wait_path(&c, "hook", 200).await;
    // Whichever member the watch uses, losing one member (quorum kept) only moves it.
    for (down, via) in [(0, 2), (1, 0)] {
        cluster.kill9(down);
        let kv = client(via).await;
        let id = format!("after_losing_m{down}");
        // Losing the leader stalls writes until a new one is elected.
        let key = format!("/cwm/default/webhooks/{id}");
        wait_until(
            Duration::from_secs(30),
            "a put to the remaining members",
            || {
                let (kv, key) = (kv.clone(), key.clone());
                async move {
                    let mut kv = kv;
                    kv.put(key, log_hook(), None).await.is_ok()
                }
            },
        )
        .await
        .unwrap();
        wait_path(&c, &id, 200).await;
        cluster.restart(down).await.unwrap();
    }
    wait_until(Duration::from_secs(30), "etcd healthy", || async {
        health(&c).await.1["components"]["etcd"] == "healthy"
    })
    .await
    .unwrap();
    assert_eq!(c.post("hook", "{}").await.unwrap().0, 200);
}

// --- replicas (OPERATIONS.md "Scaling out: several replicas on Redis + etcd") ------------------

/// Every replica watches the same etcd prefix and converges: two replicas sharing Redis and one
/// prefix serve a `webhook_connect` channel put into etcd, both honour its token once etcd
/// changes it (and refuse the old one), and both answer 404 once it is deleted. Each step waits
/// for both replicas and prints how long the slower one took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_redis_follow_one_etcd_prefix() {
    let etcd = EtcdServer::start().await.unwrap();
    let redis = connect_testkit::RedisServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let env = [
        ("CONFIG_BACKEND", "etcd"),
        ("ETCD_ENDPOINTS", etcd.endpoint.as_str()),
        ("ETCD_PREFIX", "/cwm/"),
        ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ("WEBHOOK_CONNECT_REDIS_URL", redis.url.as_str()),
        ("WEBHOOK_CONNECT_REDIS_PREFIX", "etcdreplicas"),
    ];
    let a = Cloud::start_with(json!({}), &env).await.unwrap();
    let b = Cloud::start_with(json!({}), &env).await.unwrap();
    let hook = |token: &str| {
        json!({"data_type": "json", "module": "webhook_connect",
            "module-config": {"channel": "shared", "channel_token": token}})
        .to_string()
    };
    let (first, second) = ("etcd-replicas-token-one", "etcd-replicas-token-two");
    let both = |what: &'static str, token: &'static str, want: u16| {
        let (a, b) = (&a, &b);
        async move {
            let started = std::time::Instant::now();
            wait_until(Duration::from_secs(20), what, || async {
                a.connector_status("shared", token).await == want
                    && b.connector_status("shared", token).await == want
            })
            .await
            .unwrap();
            eprintln!("{what}: both replicas within {:?}", started.elapsed());
        }
    };

    put(&mut kv, "/cwm/default/webhooks/shared_hook", &hook(first)).await;
    both("the channel served", first, 200).await;
    wait_path(&a, "shared_hook", 200).await;
    wait_path(&b, "shared_hook", 200).await;

    put(&mut kv, "/cwm/default/webhooks/shared_hook", &hook(second)).await;
    both("the token changed in etcd", second, 200).await;
    both("the old token refused", first, 401).await;

    kv.delete("/cwm/default/webhooks/shared_hook", None)
        .await
        .unwrap();
    wait_path(&a, "shared_hook", 404).await;
    wait_path(&b, "shared_hook", 404).await;
}
