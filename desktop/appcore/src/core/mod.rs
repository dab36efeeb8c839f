//! The app's behaviour without Tauri: settings file + keyring + engine. Every IPC command and
//! tray action ends up here, so it is unit-tested with the in-memory keyring.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connect_engine::api::{
    ChannelStatus, EventDetail, EventSummary, LinkState, ReplayRequest, TargetSettings,
};
use connect_engine::config::{ChannelConfig, ConnectorConfig, TransportChoice};
use connect_engine::{Carried, Engine, EngineHandle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{CoreError, CoreResult};
use crate::launch::NoTray;
use crate::secrets::{self, SecretStore};
use crate::settings::{self, ChannelEntry, NotificationLevel, SettingsFile, TargetEntry};

/// Grace for running deliveries when a channel is removed or the app quits.
pub const GRACE: Duration = Duration::from_secs(5);

/// What the UI shows on every tick (also the `snapshot` event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct AppSnapshot {
    pub paused: bool,
    pub channels: Vec<ChannelStatus>,
    /// Things the user must be told once (secrets moved out of settings.toml, no keyring...).
    #[serde(default)]
    pub notices: Vec<String>,
}

/// A saved channel as the UI shows and edits it. Tokens are never sent: only whether they are
/// stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct SavedChannel {
    pub key: String,
    pub cloud_url: String,
    pub channel: String,
    #[ts(type = "Protocol")]
    pub protocol: String,
    pub default_target: Option<String>,
    #[ts(type = "Record<string, TargetSettings>")]
    pub targets: BTreeMap<String, TargetSettings>,
    pub enabled: bool,
    pub has_token: bool,
    pub has_admin_token: bool,
    pub webhook_url: String,
    /// Created through `/api/v1`: the connector authenticates with the account's API key
    /// (`has_token` says whether that key is in the keyring), dead letters need no admin token,
    /// and removing it can delete it at the cloud too.
    pub self_service: bool,
}

/// `save_channel` input. `token: None` keeps the stored token; `admin_token: Some("")` removes
/// the stored admin token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelInput {
    #[serde(default)]
    pub key: Option<String>,
    pub cloud_url: String,
    pub channel: String,
    #[serde(default = "auto")]
    #[ts(type = "Protocol")]
    pub protocol: String,
    #[serde(default)]
    pub default_target: Option<String>,
    #[serde(default)]
    #[ts(type = "Record<string, TargetSettings>")]
    pub targets: BTreeMap<String, TargetSettings>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub admin_token: Option<String>,
}

fn auto() -> String {
    "auto".into()
}

impl std::fmt::Debug for ChannelInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelInput")
            .field("key", &self.key)
            .field("cloud_url", &self.cloud_url)
            .field("channel", &self.channel)
            .field("protocol", &self.protocol)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// The `[app]` settings the UI edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct AppSettings {
    pub autostart: bool,
    pub start_minimized: bool,
    pub notifications: NotificationLevel,
    pub history_size: usize,
    /// Closing the window destroys the webview instead of hiding it (default true).
    #[serde(default = "yes")]
    pub light_mode: bool,
    /// What closing the window does when the desktop has no tray (default: keep the window).
    #[serde(default)]
    pub no_tray: NoTray,
}

fn yes() -> bool {
    true
}

/// `<cloud_url>/webhook/<id>` (PROTOCOL.md §2.1). The ingress path names a webhook id, not the
/// channel: the first configured target id is the best guess (targets are keyed by webhook id),
/// then the channel name (the usual one-webhook-per-channel setup).
pub fn webhook_url(cloud_url: &str, channel: &str, target_ids: &[&str]) -> String {
    let id = target_ids.first().copied().unwrap_or(channel);
    format!("{}/webhook/{}", cloud_url.trim().trim_end_matches('/'), id)
}

/// Same rule as the connector's `channel` (§7.2).
fn valid_channel_name(c: &str) -> bool {
    let mut chars = c.chars();
    chars.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        && !c.contains("..")
}

/// The app core, shared by the IPC commands, the tray and the ticker.
pub struct Core {
    pub(crate) engine: EngineHandle,
    pub(crate) secrets: Arc<dyn SecretStore>,
    path: PathBuf,
    // Never held across an await.
    pub(crate) file: Mutex<SettingsFile>,
    notices: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Loads `settings.toml` (moving secrets to the keyring) and starts the engine with every
    /// channel. Must run inside a tokio runtime.
    pub fn start(path: PathBuf, store: Arc<dyn SecretStore>) -> CoreResult<Self> {
        Self::start_with(path, store, None)
    }

    /// [`Self::start`], taking over the histories, counters and pause switch a previous process
    /// carried out ([`Self::carry_out`]).
    pub fn start_with(
        path: PathBuf,
        store: Arc<dyn SecretStore>,
        carried: Option<Carried>,
    ) -> CoreResult<Self> {
        let loaded = settings::load(&path, store.as_ref())?;
        let mut notices = Vec::new();
        if loaded.moved > 0 {
            notices.push(format!(
                "{} secret{} found in settings.toml {} moved to the OS keyring and removed from the file.",
                loaded.moved,
                if loaded.moved == 1 { "" } else { "s" },
                if loaded.moved == 1 { "was" } else { "were" },
            ));
        }
        let mut cfg = ConnectorConfig::new(Vec::new());
        cfg.history_size = loaded.file.app.history_size;
        let engine = Engine::start(cfg)?;
        if let Some(c) = carried {
            let events: usize = c.channels.iter().map(|ch| ch.entries.len()).sum();
            tracing::info!(
                channels = c.channels.len(),
                events,
                paused = c.paused,
                "took over the previous image's history"
            );
            engine.carry_in(c);
        }
        let core = Self {
            engine,
            secrets: store,
            path,
            file: Mutex::new(loaded.file),
            notices: Mutex::new(notices),
        };
        let entries = core.file.lock().channels.clone();
        for e in &entries {
            if let Err(err) = core.start_channel(e) {
                tracing::warn!(channel = %e.channel, error = %err, "channel not started");
            }
        }
        Ok(core)
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn add_notice(&self, n: String) {
        let mut v = self.notices.lock();
        if !v.contains(&n) {
            v.push(n);
        }
    }

    /// Builds the engine's channel (None when no token is stored).
    fn channel_config(&self, e: &ChannelEntry) -> CoreResult<Option<ChannelConfig>> {
        let account = e.token_account()?;
        let Some(token) = self.secrets.get(&account)? else {
            return Ok(None);
        };
        let protocol = TransportChoice::parse(&e.protocol)?;
        let targets: BTreeMap<String, String> = e
            .targets
            .iter()
            .map(|(id, t)| (id.clone(), t.url.clone()))
            .collect();
        let mut cfg = ChannelConfig::basic(
            &e.key,
            &e.cloud_url,
            &e.channel,
            &token,
            protocol,
            e.default_target.as_ref().map(|t| t.url.as_str()),
            &targets,
        )?;
        cfg.enabled = e.enabled;
        cfg.token_ref = Some(e.token_ref.clone());
        Ok(Some(cfg))
    }

    /// (Re)starts a channel in the engine; a channel without a token is removed from it.
    pub(crate) fn start_channel(&self, e: &ChannelEntry) -> CoreResult<()> {
        match self.channel_config(e)? {
            Some(cfg) => Ok(self.engine.add_channel(cfg)?),
            None => Err(CoreError::NoToken(e.channel.clone())),
        }
    }

    fn in_engine(&self, key: &str) -> bool {
        self.engine.status().iter().any(|c| c.key == key)
    }

    pub fn paused(&self) -> bool {
        self.engine.is_paused()
    }

    /// Every configured channel, in settings order; channels the engine does not run (no token)
    /// appear disconnected with the reason.
    pub fn snapshot(&self) -> AppSnapshot {
        let mut live: BTreeMap<String, ChannelStatus> = self
            .engine
            .status()
            .into_iter()
            .map(|c| (c.key.clone(), c))
            .collect();
        let entries = self.file.lock().channels.clone();
        let channels = entries
            .iter()
            .map(|e| {
                live.remove(&e.key).unwrap_or_else(|| ChannelStatus {
                    last_error: Some(if e.is_self_service() {
                        "Not signed in to this cloud: sign in under Settings → Accounts.".into()
                    } else {
                        "No token in the OS keyring: edit the channel.".into()
                    }),
                    ..ChannelStatus::idle(&e.key, &e.channel, LinkState::Disconnected)
                })
            })
            .collect();
        AppSnapshot {
            paused: self.paused(),
            channels,
            notices: self.notices.lock().clone(),
        }
    }

    fn to_settings(&self, e: &ChannelEntry) -> SavedChannel {
        let has = |account: Result<String, secrets::SecretError>| {
            account
                .ok()
                .and_then(|a| self.secrets.get(&a).ok().flatten())
                .is_some()
        };
        let ids: Vec<&str> = e.targets.keys().map(String::as_str).collect();
        SavedChannel {
            key: e.key.clone(),
            cloud_url: e.cloud_url.clone(),
            channel: e.channel.clone(),
            protocol: e.protocol.clone(),
            default_target: e.default_target.as_ref().map(|t| t.url.clone()),
            targets: e
                .targets
                .iter()
                .map(|(k, t)| (k.clone(), TargetSettings { url: t.url.clone() }))
                .collect(),
            enabled: e.enabled,
            has_token: has(e.token_account()),
            has_admin_token: has(secrets::admin_account(&e.cloud_url)),
            webhook_url: e
                .webhook_url
                .clone()
                .unwrap_or_else(|| webhook_url(&e.cloud_url, &e.channel, &ids)),
            self_service: e.is_self_service(),
        }
    }

    pub fn list_channels(&self) -> Vec<SavedChannel> {
        let entries = self.file.lock().channels.clone();
        entries.iter().map(|e| self.to_settings(e)).collect()
    }

    pub(crate) fn entry(&self, key: &str) -> CoreResult<ChannelEntry> {
        self.file
            .lock()
            .channels
            .iter()
            .find(|c| c.key == key)
            .cloned()
            .ok_or_else(|| CoreError::UnknownChannel(key.to_owned()))
    }

    pub fn webhook_url_of(&self, key: &str) -> CoreResult<String> {
        Ok(self.to_settings(&self.entry(key)?).webhook_url)
    }

    /// Writes the file; on failure nothing in memory changes.
    pub(crate) fn persist(&self, f: impl FnOnce(&mut SettingsFile)) -> CoreResult<()> {
        let mut file = self.file.lock();
        let mut next = file.clone();
        f(&mut next);
        settings::save(&self.path, &next)?;
        *file = next;
        Ok(())
    }

    /// Adds or edits a channel: tokens go to the keyring, the rest to settings.toml, and the
    /// engine restarts the channel.
    pub fn save_channel(&self, input: ChannelInput) -> CoreResult<SavedChannel> {
        let previous = match input.key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(self.entry(k)?),
            None => None,
        };
        match previous.filter(ChannelEntry::is_self_service) {
            // A self-service channel keeps its cloud, name, credential and URL: only its
            // targets and protocol are edited here.
            Some(p) => {
                let same = input.cloud_url.trim().trim_end_matches('/') == p.cloud_url
                    && input.channel.trim() == p.channel;
                if !same {
                    return Err(CoreError::Invalid(format!(
                        "{} is a self-service channel: its cloud and name cannot change",
                        p.channel
                    )));
                }
                let url = p.webhook_url.clone().unwrap_or_default();
                self.save_with(input, Some((&p.token_ref, &url)))
            }
            None => self.save_with(input, None),
        }
    }

    /// A self-service channel (`token_ref = keyring:api-key:<origin>`): the token is the API
    /// key already in the keyring, the webhook URL the one the cloud returned.
    pub(crate) fn save_self_service(
        &self,
        input: ChannelInput,
        token_ref: &str,
        webhook_url: &str,
    ) -> CoreResult<SavedChannel> {
        self.save_with(input, Some((token_ref, webhook_url)))
    }

    fn save_with(
        &self,
        input: ChannelInput,
        self_service: Option<(&str, &str)>,
    ) -> CoreResult<SavedChannel> {
        let cloud_url = input.cloud_url.trim().trim_end_matches('/').to_owned();
        // Checked before the keyring account is named from it (whose error would read as a
        // keyring failure); the engine's rule and wording.
        if !reqwest::Url::parse(&cloud_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        }) {
            return Err(CoreError::Invalid(format!(
                "cloud_url {cloud_url:?} must be http(s)://host[:port][/base]"
            )));
        }
        let channel = input.channel.trim().to_owned();
        if !valid_channel_name(&channel) {
            return Err(CoreError::Invalid(format!(
                "invalid channel name {channel:?}: letters, digits, '.', '_' and '-', starting with a letter or digit"
            )));
        }
        let protocol = TransportChoice::parse(&input.protocol)?;
        let token_ref = self_service.map_or("keyring", |(r, _)| r).to_owned();
        let account = match self_service {
            Some((r, _)) => r.strip_prefix("keyring:").unwrap_or(r).to_owned(),
            None => secrets::channel_account(&cloud_url, &channel)?,
        };
        let admin_account = secrets::admin_account(&cloud_url)?;
        let previous = match input.key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(self.entry(k)?),
            None => None,
        };
        let key = previous
            .as_ref()
            .map(|p| p.key.clone())
            .unwrap_or_else(settings::new_key);
        let new_token = input
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        // The token the channel will use: typed in, else the stored one (moved along when the
        // URL or channel name changed).
        let old_account = previous
            .as_ref()
            .and_then(|p| secrets::channel_account(&p.cloud_url, &p.channel).ok());
        let token = match new_token {
            _ if self_service.is_some() => self
                .secrets
                .get(&account)?
                .ok_or_else(|| CoreError::NotSignedIn(cloud_url.clone()))?,
            Some(t) => t.to_owned(),
            None => {
                let stored = self.secrets.get(&account)?;
                let moved = match (&stored, &old_account) {
                    (None, Some(old)) if old != &account => self.secrets.get(old)?,
                    _ => None,
                };
                stored.or(moved).ok_or(CoreError::TokenRequired)?
            }
        };
        let default_target = input
            .default_target
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let targets: BTreeMap<String, String> = input
            .targets
            .iter()
            .filter(|(id, t)| !id.trim().is_empty() && !t.url.trim().is_empty())
            .map(|(id, t)| (id.trim().to_owned(), t.url.trim().to_owned()))
            .collect();
        // Validate everything with the engine's own rules before touching any store.
        let mut cfg = ChannelConfig::basic(
            &key,
            &cloud_url,
            &channel,
            &token,
            protocol,
            default_target.as_deref(),
            &targets,
        )?;
        cfg.token_ref = Some(token_ref.clone());
        let mut entry = previous.clone().unwrap_or_else(|| ChannelEntry {
            key: key.clone(),
            channel: channel.clone(),
            cloud_url: cloud_url.clone(),
            token_ref: token_ref.clone(),
            protocol: protocol.as_str().into(),
            enabled: true,
            default_target: None,
            targets: BTreeMap::new(),
            webhook_url: None,
            extra: toml::Table::new(),
        });
        entry.channel = channel;
        entry.cloud_url = cloud_url;
        entry.protocol = protocol.as_str().into();
        entry.token_ref = token_ref;
        if let Some((_, url)) = self_service {
            entry.webhook_url = Some(url.to_owned()).filter(|u| !u.is_empty());
        }
        entry.default_target = default_target.map(|url| {
            let mut t = previous
                .as_ref()
                .and_then(|p| p.default_target.clone())
                .unwrap_or_else(|| TargetEntry::new(""));
            t.url = url;
            t
        });
        entry.targets = targets
            .into_iter()
            .map(|(id, url)| {
                let mut t = previous
                    .as_ref()
                    .and_then(|p| p.targets.get(&id).cloned())
                    .unwrap_or_else(|| TargetEntry::new(""));
                t.url = url;
                (id, t)
            })
            .collect();
        cfg.enabled = entry.enabled;
        if self_service.is_none() {
            self.secrets.set(&account, &token)?;
        }
        match input.admin_token.as_deref().map(str::trim) {
            Some("") => self.secrets.delete(&admin_account)?,
            Some(a) => self.secrets.set(&admin_account, a)?,
            None => {}
        }
        let saved = entry.clone();
        self.persist(|f| match f.channels.iter_mut().find(|c| c.key == key) {
            Some(c) => *c = saved,
            None => f.channels.push(saved),
        })?;
        if let Some(old) = old_account.filter(|o| o != &account && self_service.is_none()) {
            self.forget_token_if_unused(&old);
        }
        self.engine.add_channel(cfg)?;
        Ok(self.to_settings(&entry))
    }

    fn forget_token_if_unused(&self, account: &str) {
        let used = self.file.lock().channels.iter().any(|c| {
            secrets::channel_account(&c.cloud_url, &c.channel)
                .ok()
                .as_deref()
                == Some(account)
        });
        if !used && let Err(e) = self.secrets.delete(account) {
            tracing::warn!(error = %e, "could not delete an unused token");
        }
    }

    /// Stops the channel, drops it from settings.toml and deletes its tokens unless another
    /// channel uses them (an account's API key stays: it is the account's, not the channel's).
    /// With `delete_at_cloud`, a self-service channel is deleted at its cloud first (its URL
    /// stops taking webhooks and what is queued is discarded); when that fails nothing is
    /// removed here.
    pub async fn remove_channel(&self, key: &str, delete_at_cloud: bool) -> CoreResult<()> {
        let entry = self.entry(key)?;
        if delete_at_cloud {
            self.delete_at_cloud(key).await?;
        }
        self.persist(|f| f.channels.retain(|c| c.key != key))?;
        self.engine.remove_channel(key, GRACE).await;
        if let Ok(a) = secrets::channel_account(&entry.cloud_url, &entry.channel) {
            self.forget_token_if_unused(&a);
        }
        if let Ok(admin) = secrets::admin_account(&entry.cloud_url) {
            let origin = secrets::origin(&entry.cloud_url).ok();
            let used = self
                .file
                .lock()
                .channels
                .iter()
                .any(|c| secrets::origin(&c.cloud_url).ok() == origin);
            if !used && let Err(e) = self.secrets.delete(&admin) {
                tracing::warn!(error = %e, "could not delete an unused admin token");
            }
        }
        Ok(())
    }

    /// Connect / disconnect one channel (kept in settings.toml).
    pub fn set_channel_enabled(&self, key: &str, enabled: bool) -> CoreResult<()> {
        let mut entry = self.entry(key)?;
        entry.enabled = enabled;
        let saved = entry.clone();
        self.persist(|f| {
            if let Some(c) = f.channels.iter_mut().find(|c| c.key == key) {
                *c = saved;
            }
        })?;
        if self.in_engine(key) {
            self.engine
                .set_channel_enabled(key, enabled)
                .map_err(CoreError::from)
        } else if enabled {
            self.start_channel(&entry)
        } else {
            Ok(())
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.engine.set_paused(paused);
    }

    pub fn list_events(&self, key: &str) -> CoreResult<Vec<EventSummary>> {
        if !self.in_engine(key) {
            self.entry(key)?;
            return Ok(Vec::new());
        }
        self.engine.events(key).map_err(CoreError::from)
    }

    pub fn get_event(&self, key: &str, message_id: &str) -> CoreResult<EventDetail> {
        self.engine.event(key, message_id).map_err(CoreError::from)
    }

    pub async fn replay_event(&self, request: ReplayRequest) -> CoreResult<EventDetail> {
        self.engine.replay(request).await.map_err(CoreError::from)
    }

    /// Replays the newest event of a channel (tray action).
    pub async fn replay_last(&self, key: &str) -> CoreResult<EventDetail> {
        let last = self
            .list_events(key)?
            .into_iter()
            .find(|e| e.replay_of.is_none())
            .ok_or(CoreError::NothingToReplay)?;
        self.replay_event(ReplayRequest {
            key: key.to_owned(),
            message_id: last.message_id,
            ..ReplayRequest::default()
        })
        .await
    }

    pub fn settings(&self) -> AppSettings {
        let a = self.file.lock().app.clone();
        AppSettings {
            autostart: a.autostart,
            start_minimized: a.start_minimized,
            notifications: a.notifications,
            history_size: a.history_size,
            light_mode: a.light_mode,
            no_tray: a.no_tray,
        }
    }

    pub fn app_table(&self) -> settings::AppTable {
        self.file.lock().app.clone()
    }

    /// Stores the `[app]` settings (other `[app]` keys are kept) and applies the history size.
    pub fn save_settings(&self, new: AppSettings) -> CoreResult<AppSettings> {
        if new.history_size == 0 || new.history_size > 100_000 {
            return Err(CoreError::Invalid(
                "history_size must be between 1 and 100000".into(),
            ));
        }
        self.persist(|f| {
            f.app.autostart = new.autostart;
            f.app.start_minimized = new.start_minimized;
            f.app.notifications = new.notifications;
            f.app.history_size = new.history_size;
            f.app.light_mode = new.light_mode;
            f.app.no_tray = new.no_tray;
        })?;
        self.engine.set_history_size(new.history_size);
        Ok(self.settings())
    }

    pub async fn shutdown(&self) {
        self.engine.shutdown(GRACE).await;
    }

    /// After [`Self::shutdown`]: what the next process takes over ([`Self::start_with`]).
    pub fn carry_out(&self) -> Carried {
        self.engine.carry_out()
    }
}

#[cfg(test)]
mod tests;
