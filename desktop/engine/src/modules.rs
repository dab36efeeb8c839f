//! Module mode (CONFIG.md §7.6): instead of forwarding to a URL, run the `log` or
//! `save_to_disk` module a local `webhooks.json` (the cloud's schema) names for the message's
//! webhook id, then `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connect_config::{Cleanup, Lookup, MapEnv, Module, Webhook, WebhookSet};
use connect_protocol::message::WireMessage;
use serde_json::{Map, Value};

use crate::forward;

/// Why a module did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleError {
    /// NACK without retry: no definition, unsupported module, unsafe path.
    Permanent(String),
    /// NACK with retry: the module failed (disk full, I/O error).
    Transient(String),
}

/// Where module mode reads its definitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleMode {
    pub webhooks_config: PathBuf,
    pub connections_config: Option<PathBuf>,
}

/// The loaded definitions of one channel.
#[derive(Debug)]
pub struct Modules {
    set: WebhookSet,
}

impl Modules {
    /// Loads `webhooks_config` with placeholders resolved from `env`. Bad entries are disabled
    /// (their messages are NACKed without retry) and returned as warnings.
    pub fn load(
        mode: &ModuleMode,
        env: &BTreeMap<String, String>,
    ) -> Result<(Self, Vec<String>), String> {
        let text = std::fs::read_to_string(&mode.webhooks_config)
            .map_err(|e| format!("webhooks_config {}: {e}", mode.webhooks_config.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("webhooks_config {}: {e}", mode.webhooks_config.display()))?;
        let env = MapEnv::new(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let set = WebhookSet::from_json(&doc, None, &env, None)
            .map_err(|e| format!("webhooks_config {}: {e}", mode.webhooks_config.display()))?;
        let mut warnings: Vec<String> = set
            .errors()
            .iter()
            .map(|e| {
                format!(
                    "webhooks_config: entry {:?} disabled: {}",
                    e.webhook, e.error
                )
            })
            .collect();
        warnings.extend(
            set.warnings()
                .iter()
                .map(|w| format!("webhooks_config: {w}")),
        );
        if let Some(c) = &mode.connections_config {
            warnings.push(format!(
                "connections_config {}: only log and save_to_disk run in module mode; connections are not used",
                c.display()
            ));
        }
        Ok((Self { set }, warnings))
    }

    fn find(&self, msg: &WireMessage) -> Result<&Arc<Webhook>, ModuleError> {
        let ns = msg.namespace.as_deref();
        let found = match self.set.lookup(ns, &msg.webhook_id) {
            Lookup::NotFound => self.set.lookup(ns, "default"),
            other => other,
        };
        match found {
            Lookup::Found(w) => Ok(w),
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
        let w = self.find(msg)?.clone();
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
