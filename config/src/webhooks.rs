//! A validated set of webhook entries for one source (the file backend's single map, or the
//! namespaces of etcd), with the lookup rules of §2.1 and the channels derived from it (§2.9).

use connect_protocol::admin::ConfigError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{ConnectSettings, Webhook, entry_key};
use crate::placeholders::{EnvSource, SecretSource};

/// One configured id: enabled, or disabled by an entry error.
#[derive(Debug, Clone)]
pub enum Entry {
    Enabled(Arc<Webhook>),
    Disabled(String),
}

/// Result of [`WebhookSet::lookup`].
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a Arc<Webhook>),
    /// The entry exists but is disabled by a configuration error (503; never falls back).
    Disabled(&'a str),
    NotFound,
}

/// A channel named by enabled `webhook_connect` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Key of the entry that sorts first by (namespace, id).
    pub owner: String,
    /// The owner's settings (channel scope).
    pub settings: ConnectSettings,
    /// Keys of every enabled entry naming the channel, sorted.
    pub webhook_keys: Vec<String>,
}

/// Namespace (None = file backend) → id → entry.
#[derive(Debug, Default, Clone)]
pub struct WebhookSet {
    entries: BTreeMap<Option<String>, BTreeMap<String, Entry>>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl WebhookSet {
    /// Parses a `webhooks.json` object for one namespace (`None` = file backend). A non-object
    /// is fatal (`Err`); each bad entry is disabled with a [`ConfigError`], the others load.
    pub fn from_json(
        doc: &Value,
        namespace: Option<&str>,
        env: &dyn EnvSource,
        secrets: Option<&dyn SecretSource>,
    ) -> Result<WebhookSet, String> {
        let map = doc.as_object().ok_or_else(|| {
            "webhooks configuration must be a JSON object mapping webhook ids to definitions"
                .to_string()
        })?;
        Ok(Self::from_entries(
            map.iter()
                .map(|(id, v)| (namespace.map(str::to_string), id.clone(), v.clone())),
            env,
            secrets,
        ))
    }

    /// Builds a set from `(namespace, id, raw definition)` triples of any number of namespaces
    /// (the etcd backend). Channel token conflicts are checked across all of them.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Option<String>, String, Value)>,
        env: &dyn EnvSource,
        secrets: Option<&dyn SecretSource>,
    ) -> WebhookSet {
        let mut set = WebhookSet::default();
        for (ns, id, raw) in entries {
            let entry = match Webhook::parse(&id, ns.as_deref(), &raw, env, secrets) {
                Ok(w) => Entry::Enabled(Arc::new(w)),
                Err(e) => Entry::Disabled(e),
            };
            set.entries.entry(ns).or_default().insert(id, entry);
        }
        set.finish();
        set
    }

    /// Builds a set from already parsed entries (a reload that keeps previous definitions of
    /// entries that became invalid assembles its result this way).
    pub fn from_parsed(entries: impl IntoIterator<Item = (Option<String>, String, Entry)>) -> Self {
        let mut set = WebhookSet::default();
        for (ns, id, e) in entries {
            set.entries.entry(ns).or_default().insert(id, e);
        }
        set.finish();
        set
    }

    /// Applies the cross-entry rules (channel token conflicts, channel setting differences) and
    /// collects errors and warnings.
    fn finish(&mut self) {
        let mut owners: BTreeMap<String, Arc<Webhook>> = BTreeMap::new();
        let mut conflicts = Vec::new();
        // BTreeMap order is (namespace, id) with None first: the first entry seen owns.
        for (ns, ids) in &self.entries {
            for (id, e) in ids {
                let Entry::Enabled(w) = e else { continue };
                let Some(s) = w.connect_settings() else {
                    continue;
                };
                match owners.get(&s.channel) {
                    None => {
                        owners.insert(s.channel.clone(), w.clone());
                    }
                    Some(owner) => {
                        let Some(os) = owner.connect_settings() else {
                            continue;
                        };
                        if os.channel_token != s.channel_token {
                            conflicts.push((
                                ns.clone(),
                                id.clone(),
                                format!(
                                    "module-config.channel_token: differs from the token of channel '{}' set by its owner '{}'",
                                    s.channel, owner.key
                                ),
                            ));
                        } else {
                            for k in s.channel_differences(os) {
                                self.warnings.push(format!(
                                    "{}: module-config.{k} differs from channel '{}' owner '{}'; the owner's value applies",
                                    w.key, s.channel, owner.key
                                ));
                            }
                        }
                    }
                }
            }
        }
        for (ns, id, err) in conflicts {
            if let Some(slot) = self.entries.get_mut(&ns).and_then(|m| m.get_mut(&id)) {
                *slot = Entry::Disabled(err);
            }
        }
        self.errors.clear();
        let mut entry_warnings = Vec::new();
        for (ns, ids) in &self.entries {
            for (id, e) in ids {
                match e {
                    Entry::Disabled(err) => self.errors.push(ConfigError {
                        webhook: entry_key(ns.as_deref(), id),
                        error: err.clone(),
                    }),
                    Entry::Enabled(w) => entry_warnings.extend(w.warnings.iter().cloned()),
                }
            }
        }
        entry_warnings.append(&mut self.warnings);
        self.warnings = entry_warnings;
    }

    /// Disables every enabled `webhook_connect` entry whose channel `taken` refuses (returns
    /// the error text for), e.g. a name owned by a self-service channel, so the configuration
    /// cannot take that channel over. Returns how many entries were disabled.
    pub fn disable_channels(&mut self, taken: impl Fn(&str) -> Option<String>) -> usize {
        let mut n = 0;
        for ids in self.entries.values_mut() {
            for e in ids.values_mut() {
                let Entry::Enabled(w) = e else { continue };
                if let Some(err) = w.connect_settings().and_then(|s| taken(&s.channel)) {
                    *e = Entry::Disabled(err);
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.errors = self
                .entries()
                .filter_map(|(ns, id, e)| match e {
                    Entry::Disabled(err) => Some(ConfigError {
                        webhook: entry_key(ns, id),
                        error: err.clone(),
                    }),
                    Entry::Enabled(_) => None,
                })
                .collect();
        }
        n
    }

    /// §2.1: the exact id, else the `default` entry of the same namespace. A disabled exact id
    /// never falls back.
    pub fn lookup(&self, namespace: Option<&str>, id: &str) -> Lookup<'_> {
        let Some(ids) = self.entries.get(&namespace.map(str::to_string)) else {
            return Lookup::NotFound;
        };
        match ids.get(id).or_else(|| ids.get("default")) {
            Some(Entry::Enabled(w)) => Lookup::Found(w),
            Some(Entry::Disabled(reason)) => Lookup::Disabled(reason),
            None => Lookup::NotFound,
        }
    }

    /// The entry configured under exactly `(namespace, id)`, enabled or not.
    pub fn entry(&self, namespace: Option<&str>, id: &str) -> Option<&Entry> {
        self.entries
            .get(&namespace.map(str::to_string))
            .and_then(|m| m.get(id))
    }

    /// Every configured `(namespace, id, entry)`, sorted by (namespace, id).
    pub fn entries(&self) -> impl Iterator<Item = (Option<&str>, &str, &Entry)> {
        self.entries.iter().flat_map(|(ns, ids)| {
            ids.iter()
                .map(move |(id, e)| (ns.as_deref(), id.as_str(), e))
        })
    }

    /// Whether the namespace has any entry (etcd: an unknown namespace answers 404).
    pub fn has_namespace(&self, namespace: Option<&str>) -> bool {
        self.entries.contains_key(&namespace.map(str::to_string))
    }

    /// Enabled webhooks, sorted by (namespace, id).
    pub fn webhooks(&self) -> impl Iterator<Item = &Arc<Webhook>> {
        self.entries.values().flat_map(|ids| {
            ids.values().filter_map(|e| match e {
                Entry::Enabled(w) => Some(w),
                Entry::Disabled(_) => None,
            })
        })
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Total configured entries (enabled and disabled).
    pub fn len(&self) -> usize {
        self.entries.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many channels [`Self::channels`] has, without building it (it copies every
    /// channel's settings: tens of MB for 100,000 channels, per `/metrics` scrape).
    pub fn channel_count(&self) -> usize {
        self.webhooks()
            .filter_map(|w| w.connect_settings().map(|s| s.channel.as_str()))
            .collect::<std::collections::BTreeSet<&str>>()
            .len()
    }

    /// Channels of the enabled `webhook_connect` entries; the owner is the entry that sorts
    /// first by (namespace, id). Entries with a conflicting token were disabled at load.
    pub fn channels(&self) -> BTreeMap<String, ChannelSpec> {
        self.channel_refs()
            .into_iter()
            .map(|(name, c)| (name.to_owned(), c.to_owned()))
            .collect()
    }

    /// [`Self::channels`] borrowing from the set: what registering 100,000 channels walks
    /// without a copy of every channel's settings (start-up's transients stay resident).
    pub fn channel_refs(&self) -> BTreeMap<&str, ChannelSpecRef<'_>> {
        let mut out: BTreeMap<&str, ChannelSpecRef<'_>> = BTreeMap::new();
        for w in self.webhooks() {
            let Some(s) = w.connect_settings() else {
                continue;
            };
            out.entry(s.channel.as_str())
                .and_modify(|c| c.webhook_keys.push(w.key.as_str()))
                .or_insert_with(|| ChannelSpecRef {
                    owner: w.key.as_str(),
                    settings: s,
                    webhook_keys: vec![w.key.as_str()],
                });
        }
        for c in out.values_mut() {
            c.webhook_keys.sort_unstable();
        }
        out
    }
}

/// A [`ChannelSpec`] borrowed from its [`WebhookSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpecRef<'a> {
    /// Key of the entry that sorts first by (namespace, id).
    pub owner: &'a str,
    /// The owner's settings (channel scope).
    pub settings: &'a ConnectSettings,
    /// Keys of every enabled entry naming the channel, sorted.
    pub webhook_keys: Vec<&'a str>,
}

impl ChannelSpecRef<'_> {
    pub fn to_owned(&self) -> ChannelSpec {
        ChannelSpec {
            owner: self.owner.to_owned(),
            settings: self.settings.clone(),
            webhook_keys: self.webhook_keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
