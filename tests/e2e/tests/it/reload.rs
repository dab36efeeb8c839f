//! File live reload and the reload endpoints (CONFIG.md §6; seed scenario 01 idea): webhooks
//! keep answering through repeated reloads by atomic rename and symlink swap; plain files
//! replaced by rename and ConfigMap-style `..data` swaps (old version deleted, connections too)
//! reload by file-system events alone; bad entries are disabled or keep their previous
//! definition and are reported; the endpoints follow §6.3/6.4.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use connect_testkit::wait_until;
use serde_json::{Value, json};

use connect_testkit::cloud::Cloud;

const RELOAD_TOKEN: &str = "reload-token-for-tests";

fn log_hook() -> Value {
    json!({"module": "log", "module-config": {"pretty_print": false}})
}

/// Writes `doc` next to `path` and renames it over `path` (atomic replace).
fn replace_atomically(path: &Path, doc: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_status(c: &Cloud, id: &str, want: u16) {
    wait_until(
        Duration::from_secs(15),
        &format!("/webhook/{id} to answer {want}"),
        || async move { c.post(id, "{}").await.map(|(s, _)| s).unwrap_or(0) == want },
    )
    .await
    .unwrap();
}

async fn reload(c: &Cloud, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = c.http.post(format!("{}/admin/reload-config", c.base));
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
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

/// Posts to every id in a loop until stopped; returns every non-200 answer seen.
fn hammer(
    c: Arc<Cloud>,
    ids: Vec<&'static str>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut sent = 0;
        let mut bad = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for id in &ids {
                sent += 1;
                match c.post(id, r#"{"n":1}"#).await {
                    Ok((200, _)) => {}
                    Ok((s, v)) => bad.push(format!("{id}: {s} {v}")),
                    Err(e) => bad.push(format!("{id}: {e}")),
                }
            }
        }
        (sent, bad)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_keep_answering_through_repeated_reloads() {
    // The configured path is a symlink into a `..data` directory that is swapped, as a
    // Kubernetes ConfigMap volume does; plain renames over the target are mixed in.
    let dir = tempfile::tempdir().unwrap();
    let v0 = dir.path().join("v0");
    std::fs::create_dir(&v0).unwrap();
    let base = json!({"stable-a": log_hook(), "stable-b": log_hook()});
    std::fs::write(v0.join("webhooks.json"), serde_json::to_vec(&base).unwrap()).unwrap();
    std::os::unix::fs::symlink("v0", dir.path().join("..data")).unwrap();
    let cfg = dir.path().join("webhooks.json");
    std::os::unix::fs::symlink("..data/webhooks.json", &cfg).unwrap();
    let c = Arc::new(
        Cloud::start_with(
            json!({}),
            &[
                ("WEBHOOKS_CONFIG_FILE", cfg.to_str().unwrap()),
                ("CONFIG_FILE_WATCHING_ENABLED", "true"),
                ("CONFIG_RELOAD_DEBOUNCE_SECONDS", "0.2"),
                ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
            ],
        )
        .await
        .unwrap(),
    );
    wait_status(&c, "stable-a", 200).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = hammer(c.clone(), vec!["stable-a", "stable-b"], stop.clone());
    let mut doc = base.clone();
    for i in 0..8 {
        let id = format!("added-{i}");
        doc[&id] = log_hook();
        if i % 2 == 0 {
            // Symlink swap: new directory, then rename a new `..data` link over the old one.
            let vd = dir.path().join(format!("v{}", i + 1));
            std::fs::create_dir(&vd).unwrap();
            std::fs::write(vd.join("webhooks.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
            let tmp_link = dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(format!("v{}", i + 1), &tmp_link).unwrap();
            std::fs::rename(&tmp_link, dir.path().join("..data")).unwrap();
        } else {
            replace_atomically(&std::fs::canonicalize(&cfg).unwrap(), &doc);
        }
        wait_status(&c, &id, 200).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (sent, bad) = load.await.unwrap();
    assert!(sent > 0);
    assert!(
        bad.is_empty(),
        "answers other than 200 during reloads: {bad:?}"
    );
    // Nothing was lost on the way: every added webhook still answers.
    for i in 0..8 {
        assert_eq!(c.post(&format!("added-{i}"), "{}").await.unwrap().0, 200);
    }
    let st = config_status(&c).await;
    assert_eq!(st["webhooks_count"], 10, "{st}");
    assert_eq!(st["file_watching_enabled"], true);
    assert_eq!(st["provider"]["type"], "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_reported_and_the_rest_keep_serving() {
    let c = Cloud::start_with(
        json!({"good": log_hook(), "flaky": log_hook()}),
        &[
            ("CONFIG_FILE_WATCHING_ENABLED", "true"),
            ("CONFIG_RELOAD_DEBOUNCE_SECONDS", "0.2"),
            ("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN),
        ],
    )
    .await
    .unwrap();
    let path = c.dir.path().join("webhooks.json");
    // `flaky` becomes invalid (keeps its previous definition), `broken` is new and invalid.
    replace_atomically(
        &path,
        &json!({
            "good": log_hook(),
            "flaky": {"module": "rabbitmq"},
            "broken": {"module": "log", "authorization": ""},
            "fresh": log_hook(),
        }),
    );
    wait_status(&c, "fresh", 200).await;
    assert_eq!(c.post("good", "{}").await.unwrap().0, 200);
    assert_eq!(
        c.post("flaky", "{}").await.unwrap().0,
        200,
        "previous definition kept"
    );
    assert_eq!(c.post("broken", "{}").await.unwrap().0, 503);
    let st = config_status(&c).await;
    let errs: Vec<String> = st["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["webhook"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        errs.contains(&"flaky".to_string()) && errs.contains(&"broken".to_string()),
        "{st}"
    );
    assert_eq!(st["webhooks_disabled"], 1);
    let (code, h) = health(&c).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["components"]["config_manager"], "degraded");
    assert_eq!(h["config_errors"], 2);

    // An unparseable file changes nothing; the admin reload reports 400.
    std::fs::write(&path, "{ not json").unwrap();
    let (s, v) = reload(&c, Some(&format!("Bearer {RELOAD_TOKEN}")), None).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["status"], "error");
    assert_eq!(c.post("good", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("fresh", "{}").await.unwrap().0, 200);

    // Fix the file: the admin reload applies it at once and says what changed.
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({"good": log_hook(), "flaky": log_hook(), "late": log_hook()}))
            .unwrap(),
    )
    .unwrap();
    let (s, v) = reload(&c, Some(RELOAD_TOKEN), Some(json!({"validate_only": true}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "valid", "{v}");
    let (s, v) = reload(&c, Some(&format!("Bearer {RELOAD_TOKEN}")), Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(
        v["reloaded"],
        json!({"webhooks": true, "connections": true})
    );
    assert_eq!(v["details"]["total_webhooks"], 3, "{v}");
    assert_eq!(c.post("late", "{}").await.unwrap().0, 200);
    assert_eq!(c.post("broken", "{}").await.unwrap().0, 404);
    let (_, h) = health(&c).await;
    assert_eq!(h["status"], "healthy", "{h}");
}

#[tokio::test]
async fn reload_endpoints_check_the_token_and_the_flags() {
    let c = Cloud::start_with(
        json!({"a": log_hook()}),
        &[("CONFIG_RELOAD_ADMIN_TOKEN", RELOAD_TOKEN)],
    )
    .await
    .unwrap();
    let (s, v) = reload(&c, None, None).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (401, Some("Authentication required"))
    );
    let (s, v) = reload(&c, Some("Bearer wrong"), None).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (401, Some("Invalid authentication token"))
    );
    let (s, v) = reload(
        &c,
        Some(RELOAD_TOKEN),
        Some(json!({"reload_webhooks": false, "reload_connections": false})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "No reload operation specified");
    let (s, _) = reload(
        &c,
        Some(RELOAD_TOKEN),
        Some(json!({"validate_only": "yes"})),
    )
    .await;
    assert_eq!(s, 422);
    let st = config_status(&c).await;
    for k in [
        "last_reload",
        "reload_in_progress",
        "webhooks_count",
        "connections_count",
        "connection_pools",
        "pool_details",
        "provider",
        "file_watching_enabled",
        "webhooks_disabled",
        "errors",
        "warnings",
        "vault",
    ] {
        assert!(st.get(k).is_some(), "config-status lacks {k}: {st}");
    }
    assert_eq!(st["vault"]["status"], "not_configured");
    assert_eq!(st["file_watching_enabled"], false);

    let other = Cloud::start(json!({"a": log_hook()})).await.unwrap();
    let (s, _) = reload(&other, Some(RELOAD_TOKEN), None).await;
    assert_eq!(s, 403, "token unset → reload API disabled");
}

/// A Kubernetes ConfigMap volume: `<file> -> ..data/<file>`, `..data -> ..<version>`; an update
/// writes a new version directory, renames a new `..data` link over the old one and deletes the
/// old directory.
struct ConfigMapDir {
    root: std::path::PathBuf,
    version: u32,
}

impl ConfigMapDir {
    fn create(root: &Path, files: &[(&str, &Value)]) -> Self {
        let mut d = ConfigMapDir {
            root: root.to_path_buf(),
            version: 0,
        };
        d.write_version(files);
        std::os::unix::fs::symlink(d.version_name(), root.join("..data")).unwrap();
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).unwrap();
        }
        d
    }

    fn version_name(&self) -> String {
        format!(
            "..2026_11_24_00_00_{:02}.{}",
            self.version,
            1000 + self.version
        )
    }

    fn write_version(&mut self, files: &[(&str, &Value)]) {
        let dir = self.root.join(self.version_name());
        std::fs::create_dir(&dir).unwrap();
        for (name, doc) in files {
            std::fs::write(dir.join(name), serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        }
    }

    fn update(&mut self, files: &[(&str, &Value)]) {
        let old = self.root.join(self.version_name());
        self.version += 1;
        self.write_version(files);
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(self.version_name(), &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        std::fs::remove_dir_all(old).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_renames_and_configmap_swaps_reload_without_the_safety_poll() {
    // The safety poll is off: only file-system events can trigger these reloads.
    let watch_env = |hooks: &Path, conns: &Path| -> Vec<(String, String)> {
        vec![
            ("WEBHOOKS_CONFIG_FILE".into(), hooks.display().to_string()),
            (
                "CONNECTIONS_CONFIG_FILE".into(),
                conns.display().to_string(),
            ),
            ("CONFIG_FILE_WATCHING_ENABLED".into(), "true".into()),
            ("CONFIG_RELOAD_DEBOUNCE_SECONDS".into(), "0.2".into()),
            ("WEBHOOK_CONNECT_CONFIG_POLL_SECONDS".into(), "0".into()),
            ("CONFIG_RELOAD_ADMIN_TOKEN".into(), RELOAD_TOKEN.into()),
        ]
    };
    let start = |env: Vec<(String, String)>| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Cloud::start_with(json!({}), &env).await.unwrap()
    };
    let conn = |n: u32| json!({"type": "redis-rq", "host": "h", "port": n});

    // 1. Plain files replaced by rename (write a temp file, `mv` it over the configured path).
    let dir = tempfile::tempdir().unwrap();
    let (hooks, conns) = (
        dir.path().join("webhooks.json"),
        dir.path().join("connections.json"),
    );
    std::fs::write(&hooks, json!({"first": log_hook()}).to_string()).unwrap();
    std::fs::write(&conns, "{}").unwrap();
    let c = start(watch_env(&hooks, &conns)).await;
    wait_status(&c, "first", 200).await;
    for i in 0..3 {
        let id = format!("renamed-{i}");
        replace_atomically(&hooks, &json!({ id.clone(): log_hook() }));
        wait_status(&c, &id, 200).await;
        let gone = if i == 0 {
            "first".to_string()
        } else {
            format!("renamed-{}", i - 1)
        };
        assert_eq!(c.post(&gone, "{}").await.unwrap().0, 404, "{gone} removed");
    }
    replace_atomically(&conns, &json!({"cache": conn(1), "queue": conn(2)}));
    wait_until(Duration::from_secs(15), "connections reloaded", || async {
        config_status(&c).await["connections_count"] == 2
    })
    .await
    .unwrap();
    drop(c);

    // 2. A ConfigMap volume: both files are symlinks through `..data`; old versions vanish.
    let dir = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::create(
        dir.path(),
        &[
            ("webhooks.json", &json!({"v0": log_hook()})),
            ("connections.json", &json!({})),
        ],
    );
    let (hooks, conns) = (
        dir.path().join("webhooks.json"),
        dir.path().join("connections.json"),
    );
    let c = start(watch_env(&hooks, &conns)).await;
    wait_status(&c, "v0", 200).await;
    for v in 1..=3u32 {
        let id = format!("v{v}");
        let connections: Value = (0..v).map(|n| (format!("c{n}"), conn(n))).collect();
        cm.update(&[
            ("webhooks.json", &json!({ id.clone(): log_hook() })),
            ("connections.json", &connections),
        ]);
        wait_status(&c, &id, 200).await;
        assert_eq!(c.post(&format!("v{}", v - 1), "{}").await.unwrap().0, 404);
        wait_until(
            Duration::from_secs(15),
            "connections swapped too",
            || async { config_status(&c).await["connections_count"] == v },
        )
        .await
        .unwrap();
    }
    let st = config_status(&c).await;
    assert_eq!(st["webhooks_count"], 1, "{st}");
    assert_eq!(st["errors"], json!([]), "{st}");
    let (code, h) = health(&c).await;
    assert_eq!((code, &h["status"]), (200, &json!("healthy")), "{h}");
}
