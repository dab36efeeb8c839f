//! Module mode (CONFIG.md §7.6): instead of forwarding to a URL, run the `log` or
//! `save_to_disk` module that a local `webhooks.json` (the cloud's schema) or etcd (§4.2 layout)
//! names for the message's webhook id, then `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connect_config::{Cleanup, Lookup, MapEnv, Module, Webhook, WebhookSet};
use connect_protocol::message::WireMessage;
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::forward;

/// Why a module did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleError {
    /// NACK without retry: no definition, unsupported module, unsafe path.
    Permanent(String),
    /// NACK with retry: the module failed (disk full, I/O error), or the definitions are not
    /// loaded yet (etcd unreachable since start).
    Transient(String),
}

/// Why [`Modules::load`] could not read the local `webhooks_config` file (the text names it).
#[derive(Debug, thiserror::Error)]
pub enum ModulesLoadError {
    #[error("webhooks_config {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("webhooks_config {}: {source}", path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Not a set of webhook definitions (`connect_config::WebhookSet::from_json` refused it).
    #[error("webhooks_config {}: {reason}", path.display())]
    NotDefinitions { path: PathBuf, reason: String },
}

/// Where module mode reads its definitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleMode {
    /// `webhooks_config` (and the accepted but unused `connections_config`).
    File {
        webhooks_config: PathBuf,
        connections_config: Option<PathBuf>,
    },
    /// `etcd_host`: definitions read from and watched in etcd.
    Etcd(EtcdModules),
}

/// etcd module mode: `{prefix}{namespace}/webhooks/{id}` keys (CONFIG.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdModules {
    /// `host:port` (or a URL) of each endpoint.
    pub endpoints: Vec<String>,
    /// Key prefix ending in `/` (default `/cwm/`).
    pub prefix: String,
    /// Namespace whose webhooks are looked up (default `default`).
    pub namespace: String,
}

struct Loaded {
    set: Arc<WebhookSet>,
    /// Why nothing is loaded yet (etcd mode before its first read).
    pending: Option<String>,
}

/// The loaded definitions of one channel; etcd mode swaps them live.
pub struct Modules {
    loaded: RwLock<Loaded>,
    /// Namespace the definitions live in (`None` for a file).
    namespace: Option<String>,
}

impl std::fmt::Debug for Modules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modules")
            .field("namespace", &self.namespace)
            .field("webhooks", &self.loaded.read().set.len())
            .finish()
    }
}

impl Modules {
    /// A file: loads `webhooks_config` with placeholders resolved from `env`. Bad entries are
    /// disabled (their messages are NACKed without retry) and returned as warnings. etcd: an
    /// empty set until `crate::etcd_modules::spawn` has read the prefix.
    pub fn load(
        mode: &ModuleMode,
        env: &BTreeMap<String, String>,
    ) -> Result<(Self, Vec<String>), ModulesLoadError> {
        let (webhooks_config, connections_config) = match mode {
            ModuleMode::File {
                webhooks_config,
                connections_config,
            } => (webhooks_config, connections_config),
            ModuleMode::Etcd(e) => {
                return Ok((
                    Self {
                        loaded: RwLock::new(Loaded {
                            set: Arc::new(WebhookSet::default()),
                            pending: Some(format!(
                                "webhook definitions not loaded from etcd ({}) yet",
                                e.endpoints.join(", ")
                            )),
                        }),
                        namespace: Some(e.namespace.clone()),
                    },
                    Vec::new(),
                ));
            }
        };
        let path = || webhooks_config.clone();
        let text = std::fs::read_to_string(webhooks_config).map_err(|source| {
            ModulesLoadError::Unreadable {
                path: path(),
                source,
            }
        })?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|source| ModulesLoadError::NotJson {
                path: path(),
                source,
            })?;
        let env = MapEnv::new(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let set = WebhookSet::from_json(&doc, None, &env, None).map_err(|reason| {
            ModulesLoadError::NotDefinitions {
                path: path(),
                reason,
            }
        })?;
        let mut warnings = describe_problems(&set, "webhooks_config");
        if let Some(c) = connections_config {
            warnings.push(format!(
                "connections_config {}: only log and save_to_disk run in module mode; connections are not used",
                c.display()
            ));
        }
        Ok((
            Self {
                loaded: RwLock::new(Loaded {
                    set: Arc::new(set),
                    pending: None,
                }),
                namespace: None,
            },
            warnings,
        ))
    }

    /// Swaps in a new set of definitions (etcd mode).
    pub(crate) fn install(&self, set: WebhookSet) {
        *self.loaded.write() = Loaded {
            set: Arc::new(set),
            pending: None,
        };
    }

    /// Number of definitions currently loaded, enabled or not.
    pub fn len(&self) -> usize {
        self.loaded.read().set.len()
    }

    /// True when no definition is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, msg: &WireMessage) -> Result<Arc<Webhook>, ModuleError> {
        let loaded = self.loaded.read();
        if let Some(why) = &loaded.pending {
            return Err(ModuleError::Transient(why.clone()));
        }
        // The file has no namespaces; etcd mode looks in its configured namespace. `lookup`
        // falls back to `default` within it.
        match loaded
            .set
            .lookup(self.namespace.as_deref(), &msg.webhook_id)
        {
            Lookup::Found(w) => Ok(w.clone()),
            Lookup::Disabled(e) => Err(ModuleError::Permanent(format!(
                "the definition of {:?} is disabled: {e}",
                msg.webhook_id
            ))),
            Lookup::NotFound => Err(ModuleError::Permanent(format!(
                "no definition for webhook {:?} (and no default)",
                msg.webhook_id
            ))),
        }
    }

    /// `log`, `save_to_disk` or `none` for the inspector.
    pub fn describe(&self, msg: &WireMessage) -> String {
        match self.find(msg) {
            Ok(w) => format!("{}/{}", w.module.name(), w.id),
            Err(_) => "none".to_owned(),
        }
    }

    /// Runs the message's module to completion.
    pub async fn handle(&self, msg: &WireMessage) -> Result<(), ModuleError> {
        let w = self.find(msg)?;
        // The cloud already decided what is relayed: clean only when the entry asks for it.
        let cleanup = if w.cleanup.explicit {
            w.cleanup.clone()
        } else {
            Cleanup {
                enabled: false,
                ..w.cleanup.clone()
            }
        };
        let (body, _) = forward::body_of(msg);
        // A JSON payload is kept as JSON; a blob (string payload next to the raw body) as text.
        let parsed = match &msg.payload {
            Value::Null => None,
            Value::String(_) if msg.body_b64.is_some() => None,
            v => Some(v.clone()),
        };
        match &w.module {
            Module::Log(cfg) => {
                let headers = header_map(msg);
                let payload = parsed.unwrap_or_else(|| {
                    connect_protocol::json::payload_of(&body, msg.content_type.as_deref())
                });
                let line = connect_config::modules::render_log(
                    cfg,
                    &cleanup,
                    &connect_config::modules::LogInput {
                        webhook_id: &w.id,
                        namespace: w.namespace.as_deref(),
                        received_at: &msg.timestamp,
                        headers: &headers,
                        payload: &payload,
                    },
                );
                println!("{line}");
                Ok(())
            }
            Module::SaveToDisk(cfg) => {
                let cfg = cfg.clone();
                let stem = msg.message_id.clone();
                let doc = connect_config::modules::disk_document(&body, parsed.as_ref());
                tokio::task::spawn_blocking(move || cfg.write(&cleanup, &doc, &stem))
                    .await
                    .map_err(|e| ModuleError::Transient(format!("save_to_disk: {e}")))?
                    .map(|_| ())
                    // §7.6: a module error is NACKed with retry (an unsafe path included: it
                    // may be fixed in the file before the retries run out).
                    .map_err(|e| ModuleError::Transient(format!("save_to_disk: {e}")))
            }
            Module::WebhookConnect(_) => Err(ModuleError::Permanent(
                "module webhook_connect cannot run in the connector's module mode".into(),
            )),
        }
    }
}

fn header_map(msg: &WireMessage) -> Map<String, Value> {
    match &msg.raw_headers {
        Some(raw) => {
            let mut m = Map::new();
            for (k, v) in raw {
                let k = k.to_ascii_lowercase();
                match m.get_mut(&k) {
                    Some(Value::String(e)) => {
                        e.push_str(", ");
                        e.push_str(v);
                    }
                    _ => {
                        m.insert(k, Value::String(v.clone()));
                    }
                }
            }
            m
        }
        None => msg.headers.clone().into_iter().collect(),
    }
}

/// Paths are resolved against the configuration file's directory when relative.
pub fn resolve_path(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// One line per disabled entry and per warning of `set`.
pub(crate) fn describe_problems(set: &WebhookSet, source: &str) -> Vec<String> {
    let mut out: Vec<String> = set
        .errors()
        .iter()
        .map(|e| format!("{source}: entry {:?} disabled: {}", e.webhook, e.error))
        .collect();
    out.extend(set.warnings().iter().map(|w| format!("{source}: {w}")));
    out
}
