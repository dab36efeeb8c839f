//! etcd module mode (CONFIG.md §7.6 with the layout of §4.2): read
//! `{prefix}{namespace}/webhooks/` at one revision, then watch it from the next one. After a
//! disconnect the watch resumes from the last applied revision + 1, so no change is missed; a
//! compacted revision forces a full re-read. A put that does not validate keeps the previous
//! definition (a new key is disabled); the last good definitions keep serving while etcd is
//! away. Until the first read succeeds, messages are NACKed with retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use connect_config::{MapEnv, WebhookSet};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::modules::{EtcdModules, Modules, describe_problems};

/// Timeout of one request (connect, range read, watch creation).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Starts the reader/watcher of `src` feeding `modules`; it stops with `stop`.
pub(crate) fn spawn(
    modules: Arc<Modules>,
    src: EtcdModules,
    env: BTreeMap<String, String>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = run(&modules, &src, &env) => {}
        }
    });
}

/// The definitions as etcd holds them, by webhook id, plus the revision they reflect.
struct Mirror {
    raw: BTreeMap<String, Value>,
    revision: i64,
    env: MapEnv,
    namespace: String,
}

impl Mirror {
    fn build(&self) -> WebhookSet {
        let ns = Some(self.namespace.clone());
        WebhookSet::from_entries(
            self.raw
                .iter()
                .map(|(id, v)| (ns.clone(), id.clone(), v.clone())),
            &self.env,
            None,
        )
    }

    /// A put: a value that does not parse or validate keeps the previous definition; for a new
    /// key it is stored anyway, so the id is disabled instead of falling back to `default`.
    fn put(&mut self, id: &str, value: &[u8]) {
        let parsed: Result<Value, String> = serde_json::from_slice(value)
            .map_err(|e| format!("not valid JSON: {e}"))
            .and_then(|v: Value| {
                if v.is_object() {
                    Ok(v)
                } else {
                    Err("not a JSON object".into())
                }
            });
        let problem = match &parsed {
            Err(e) => Some(e.clone()),
            Ok(v) => {
                let one = WebhookSet::from_entries(
                    [(Some(self.namespace.clone()), id.to_owned(), v.clone())],
                    &self.env,
                    None,
                );
                one.errors().first().map(|e| e.error.to_string())
            }
        };
        match (problem, self.raw.contains_key(id)) {
            (None, _) => {
                self.raw
                    .insert(id.to_owned(), parsed.unwrap_or(Value::Null));
            }
            (Some(e), true) => {
                tracing::warn!(webhook = id, error = %e, "etcd: invalid definition; keeping the previous one");
            }
            (Some(e), false) => {
                tracing::warn!(webhook = id, error = %e, "etcd: invalid definition; the webhook is disabled");
                self.raw
                    .insert(id.to_owned(), parsed.unwrap_or(Value::Null));
            }
        }
    }
}

/// The webhook id of `key` under `dir`, if it names one.
fn id_of<'a>(dir: &str, key: &'a [u8]) -> Option<&'a str> {
    let id = std::str::from_utf8(key).ok()?.strip_prefix(dir)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn endpoints(src: &EtcdModules) -> Vec<String> {
    src.endpoints
        .iter()
        .map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            }
        })
        .collect()
}

async fn run(modules: &Modules, src: &EtcdModules, env: &BTreeMap<String, String>) {
    let dir = format!("{}{}/webhooks/", src.prefix, src.namespace);
    let endpoints = endpoints(src);
    let opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    let mut mirror = Mirror {
        raw: BTreeMap::new(),
        revision: 0,
        env: MapEnv::new(env.iter().map(|(k, v)| (k.clone(), v.clone()))),
        namespace: src.namespace.clone(),
    };
    let mut need_full = true;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let mut client = tokio::time::timeout(
                REQUEST_TIMEOUT,
                Client::connect(&endpoints, Some(opts.clone())),
            )
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
            if need_full {
                let resp = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    client.get(dir.as_str(), Some(GetOptions::new().with_prefix())),
                )
                .await
                .map_err(|_| "range read timed out".to_owned())?
                .map_err(|e| format!("range read: {e}"))?;
                let mut fresh = Mirror {
                    raw: BTreeMap::new(),
                    revision: resp.header().map(|h| h.revision()).unwrap_or(0),
                    env: mirror.env.clone(),
                    namespace: mirror.namespace.clone(),
                };
                for kv in resp.kvs() {
                    if let Some(id) = id_of(&dir, kv.key()) {
                        fresh.put(id, kv.value());
                    }
                }
                mirror = fresh;
                let set = mirror.build();
                for w in describe_problems(&set, "etcd") {
                    tracing::warn!("{w}");
                }
                tracing::info!(
                    prefix = %dir,
                    revision = mirror.revision,
                    webhooks = set.len(),
                    "module definitions loaded from etcd"
                );
                modules.install(set);
                need_full = false;
            }
            let mut stream = tokio::time::timeout(
                REQUEST_TIMEOUT,
                client.watch(
                    dir.as_str(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(mirror.revision + 1),
                    ),
                ),
            )
            .await
            .map_err(|_| "watch timed out".to_owned())?
            .map_err(|e| format!("watch: {e}"))?;
            while let Some(resp) = stream
                .message()
                .await
                .map_err(|e| format!("watch stream: {e}"))?
            {
                if resp.compact_revision() > 0 {
                    need_full = true;
                    return Err(format!(
                        "revision {} compacted; re-reading the prefix",
                        resp.compact_revision()
                    ));
                }
                if resp.canceled() {
                    return Err(format!("watch canceled: {}", resp.cancel_reason()));
                }
                if resp.created() {
                    backoff = Duration::from_secs(1);
                }
                let mut changed = false;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if kv.mod_revision() <= mirror.revision {
                        continue;
                    }
                    if let Some(id) = id_of(&dir, kv.key()) {
                        match ev.event_type() {
                            EventType::Put => mirror.put(id, kv.value()),
                            EventType::Delete => {
                                mirror.raw.remove(id);
                            }
                        }
                        changed = true;
                    }
                    mirror.revision = kv.mod_revision();
                }
                if changed {
                    let set = mirror.build();
                    tracing::info!(
                        revision = mirror.revision,
                        webhooks = set.len(),
                        "module definitions updated from etcd"
                    );
                    modules.install(set);
                }
            }
            Err::<(), String>("watch stream ended".to_owned())
        };
        if let Err(e) = attempt.await {
            tracing::warn!(error = %e, retry_in = ?backoff, "etcd module definitions");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_segments_under_the_directory() {
        let dir = "/cwm/default/webhooks/";
        assert_eq!(id_of(dir, b"/cwm/default/webhooks/hook"), Some("hook"));
        assert_eq!(id_of(dir, b"/cwm/default/webhooks/"), None);
        assert_eq!(id_of(dir, b"/cwm/default/webhooks/a/b"), None);
        assert_eq!(id_of(dir, b"/cwm/other/webhooks/hook"), None);
    }

    #[test]
    fn an_invalid_put_keeps_the_previous_definition_and_disables_a_new_one() {
        let mut m = Mirror {
            raw: BTreeMap::new(),
            revision: 0,
            env: MapEnv::new(Vec::<(String, String)>::new()),
            namespace: "default".into(),
        };
        m.put("a", br#"{"module":"log"}"#);
        m.put("a", br#"{"module":"nope"}"#);
        m.put("b", b"not json");
        let set = m.build();
        assert!(matches!(
            set.lookup(Some("default"), "a"),
            connect_config::Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("default"), "b"),
            connect_config::Lookup::Disabled(_)
        ));
    }
}
