//! What every source produces and how it is built: [`RawConfig`] (unresolved definitions keyed
//! by namespace and id), the per-entry [`build`] that keeps the previous valid definition of an
//! entry that became invalid, and the [`ReloadDetails`] diff a reload reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connect_config::{EnvSource, SecretSource, Webhook, WebhookSet, entry_key};
use connect_protocol::admin::ConfigError;
use parking_lot::Mutex;
use serde_json::Value;
use serde_json::value::RawValue;

/// Why a configuration file cannot be used as a document (the text names the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{} is not valid JSON: {reason}", path.display())]
    NotJson { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    NotAnObject { path: PathBuf, source: NotAnObject },
}

/// A webhooks document whose top level is not a JSON object: nothing of it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhooks configuration must be a JSON object mapping webhook ids to definitions")]
pub struct NotAnObject;

/// `(namespace, id)`: `None` for the file backend.
pub type EntryKey = (Option<String>, String);

/// One unresolved webhook definition, kept as its compact JSON text: the manager holds every
/// entry for as long as it is in force (to re-resolve placeholders after a Vault refresh and to
/// apply etcd key events), and a parsed `Value` costs several times its text (~0.8 KB for a
/// small entry against ~0.15 KB; issue #14, memory per idle channel). Parsed again per build.
#[derive(Clone, Debug)]
pub struct RawDef(Box<RawValue>);

impl RawDef {
    /// The definition `v` as compact text.
    pub fn from_value(v: &Value) -> Self {
        RawDef(serde_json::value::to_raw_value(v).expect("a JSON value always serializes"))
    }

    /// The definition as a `Value` (the text was made from one, so it parses).
    pub fn value(&self) -> Result<Value, String> {
        serde_json::from_str(self.0.get()).map_err(|e| e.to_string())
    }
}

impl PartialEq for RawDef {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Unresolved definitions as read from a source. An `Err` value is a definition that could not
/// even be read as a JSON object (an etcd value that is not JSON): treated like an invalid entry.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    pub webhooks: BTreeMap<EntryKey, Result<RawDef, String>>,
    pub connections: BTreeMap<String, Result<Value, String>>,
    /// Source-level warnings (etcd keys outside the layout).
    pub warnings: Vec<String>,
}

impl RawConfig {
    /// A `webhooks.json` document (file backend). Not an object → `Err` (nothing applies).
    pub fn webhooks_from_doc(
        doc: &Value,
    ) -> Result<BTreeMap<EntryKey, Result<RawDef, String>>, NotAnObject> {
        let map = doc.as_object().ok_or(NotAnObject)?;
        Ok(map
            .iter()
            .map(|(id, v)| ((None, id.clone()), Ok(RawDef::from_value(v))))
            .collect())
    }
}

/// Result of one build: the set to put in force and what to report.
pub struct Built {
    pub set: WebhookSet,
    /// Entries whose new definition is invalid and that keep their previous one.
    pub stale: Vec<ConfigError>,
    pub warnings: Vec<String>,
    pub connections_count: usize,
    pub(crate) refs: BTreeSet<(String, String)>,
}

/// What a reload changed (the `details` of §6.3).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReloadDetails {
    pub webhooks_added: usize,
    pub webhooks_removed: usize,
    pub webhooks_modified: usize,
    pub total_webhooks: usize,
    pub webhooks_disabled: usize,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

/// A [`SecretSource`] that only records references (to learn what a build will need).
#[derive(Default)]
pub(crate) struct Discovery(pub(crate) Mutex<BTreeSet<(String, String)>>);

impl SecretSource for Discovery {
    fn get(&self, path: &str, field: &str) -> connect_config::SecretLookup {
        self.0.lock().insert((path.to_string(), field.to_string()));
        connect_config::SecretLookup::Value(String::new())
    }
}

/// Per-entry build: a valid definition replaces the previous one; an invalid one keeps the
/// previous valid definition (reported as stale) or, for a new entry, is disabled.
pub fn build(
    raw: &RawConfig,
    prev: Option<&WebhookSet>,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
) -> Built {
    let mut stale = Vec::new();
    let mut parsed = Vec::with_capacity(raw.webhooks.len());
    for ((ns, id), def) in &raw.webhooks {
        let r = def
            .as_ref()
            .map_err(Clone::clone)
            .and_then(RawDef::value)
            .and_then(|v| Webhook::parse(id, ns.as_deref(), &v, env, secrets));
        let entry = match r {
            Ok(w) => connect_config::Entry::Enabled(Arc::new(w)),
            Err(e) => match prev.and_then(|p| p.entry(ns.as_deref(), id)) {
                Some(connect_config::Entry::Enabled(old)) => {
                    stale.push(ConfigError {
                        webhook: entry_key(ns.as_deref(), id),
                        error: format!("{e} (previous definition kept)"),
                    });
                    connect_config::Entry::Enabled(old.clone())
                }
                _ => connect_config::Entry::Disabled(e),
            },
        };
        parsed.push((ns.clone(), id.clone(), entry));
    }
    let set = WebhookSet::from_parsed(parsed);
    let mut warnings = raw.warnings.clone();
    let mut connections_count = 0;
    for (name, def) in &raw.connections {
        match def {
            Err(e) => warnings.push(format!("connection {name}: {e}")),
            Ok(v) => match connect_config::resolve(v, env, secrets) {
                Err(e) => warnings.push(format!("connection {name}: {e}")),
                Ok(v) if v.get("type").and_then(Value::as_str).is_none() => {
                    warnings.push(format!("connection {name}: missing string key 'type'"));
                }
                Ok(_) => connections_count += 1,
            },
        }
    }
    Built {
        set,
        stale,
        warnings,
        connections_count,
        refs: BTreeSet::new(),
    }
}

pub(crate) fn diff(prev: Option<&WebhookSet>, built: &Built) -> ReloadDetails {
    let mut d = ReloadDetails {
        total_webhooks: built.set.len(),
        webhooks_disabled: built.set.errors().len(),
        errors: built
            .set
            .errors()
            .iter()
            .chain(built.stale.iter())
            .cloned()
            .collect(),
        warnings: built
            .set
            .warnings()
            .iter()
            .chain(built.warnings.iter())
            .cloned()
            .collect(),
        ..Default::default()
    };
    let resolved = |e: &connect_config::Entry| match e {
        connect_config::Entry::Enabled(w) => Ok(w.fingerprint),
        connect_config::Entry::Disabled(err) => Err(err.clone()),
    };
    for (ns, id, e) in built.set.entries() {
        match prev.and_then(|p| p.entry(ns, id)) {
            None => d.webhooks_added += 1,
            Some(old) if resolved(old) != resolved(e) => d.webhooks_modified += 1,
            Some(_) => {}
        }
    }
    if let Some(p) = prev {
        d.webhooks_removed = p
            .entries()
            .filter(|(ns, id, _)| built.set.entry(*ns, id).is_none())
            .count();
    }
    d
}

/// Reads a file as JSON (used by the file source and by start-up).
pub(crate) fn read_json(path: &Path) -> Result<(Value, [u8; 32]), FileError> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| FileError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let doc = serde_json::from_slice(&bytes).map_err(|e| FileError::NotJson {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((doc, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_config::MapEnv;
    use serde_json::json;

    fn raw(defs: Value) -> RawConfig {
        RawConfig {
            webhooks: RawConfig::webhooks_from_doc(&defs).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_that_becomes_invalid_keeps_its_previous_definition() {
        let env = MapEnv::default();
        let first = build(
            &raw(json!({"a": {"module": "log"}, "b": {"module": "log"}})),
            None,
            &env,
            None,
        );
        assert!(first.stale.is_empty());
        let second = build(
            &raw(json!({"a": {"module": "nope"}, "b": {"module": "log"}, "c": {"module": "nope"}})),
            Some(&first.set),
            &env,
            None,
        );
        assert_eq!(second.stale.len(), 1);
        assert_eq!(second.stale[0].webhook, "a");
        assert!(matches!(
            second.set.entry(None, "a"),
            Some(connect_config::Entry::Enabled(_))
        ));
        assert!(matches!(
            second.set.entry(None, "c"),
            Some(connect_config::Entry::Disabled(_))
        ));
        let d = diff(Some(&first.set), &second);
        assert_eq!(
            (d.webhooks_added, d.webhooks_removed, d.webhooks_modified),
            (1, 0, 0)
        );
        assert_eq!(d.errors.len(), 2);
    }

    /// The diff compares definitions by their fingerprint: a changed value is a modification,
    /// the same definition with its keys in another order is not.
    #[test]
    fn a_changed_definition_is_modified_and_reordered_keys_are_not() {
        let env = MapEnv::default();
        let hook = |ttl: u64| {
            json!({"module": "webhook_connect",
                   "module-config": {"channel": "c", "channel_token": "t0123456789abcdef", "ttl_seconds": ttl}})
        };
        let first = build(
            &raw(json!({"a": hook(60), "b": hook(60)})),
            None,
            &env,
            None,
        );
        let reordered = json!({"module-config": {"ttl_seconds": 60, "channel_token": "t0123456789abcdef", "channel": "c"},
                               "module": "webhook_connect"});
        let second = build(
            &raw(json!({"a": reordered, "b": hook(61)})),
            Some(&first.set),
            &env,
            None,
        );
        let d = diff(Some(&first.set), &second);
        assert_eq!(
            (d.webhooks_added, d.webhooks_removed, d.webhooks_modified),
            (0, 0, 1)
        );
    }
}
