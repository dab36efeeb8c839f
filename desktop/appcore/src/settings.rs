//! `settings.toml` (CONFIG.md §8.1): the connector keys of §7 plus an `[app]` table, never a
//! secret. Tokens found in the file are moved to the keyring on load; writes are atomic and 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::launch::NoTray;
use crate::secrets::{self, SecretStore};

/// File name inside the app's config directory.
pub const FILE_NAME: &str = "settings.toml";

/// Keys holding secrets: never kept in the file.
const SECRET_KEYS: &[&str] = &["token", "admin_token", "api_key"];

/// A settings-file failure.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Secret(#[from] secrets::SecretError),
}

/// `notifications` of the `[app]` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum NotificationLevel {
    All,
    #[default]
    Errors,
    None,
}

/// The `[app]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppTable {
    pub autostart: bool,
    /// The start at login (autostart's `--minimized`) shows the tray only; a start by hand
    /// always opens the window (see [`crate::launch`]).
    pub start_minimized: bool,
    pub notifications: NotificationLevel,
    pub theme: String,
    pub history_size: usize,
    pub log_level: String,
    /// Closing the window destroys the webview (the tray keeps forwarding) instead of hiding it.
    pub light_mode: bool,
    /// Seconds a channel may stay disconnected before a notification.
    pub disconnect_notify_after_seconds: u64,
    /// What closing the window does when the desktop has no tray (see [`crate::launch`]).
    pub no_tray: NoTray,
}

impl Default for AppTable {
    fn default() -> Self {
        Self {
            autostart: false,
            start_minimized: true,
            notifications: NotificationLevel::Errors,
            theme: "system".into(),
            history_size: 1000,
            log_level: "info".into(),
            light_mode: true,
            disconnect_notify_after_seconds: 60,
            no_tray: NoTray::KeepWindow,
        }
    }
}

/// `[channels.targets.<id>]` and `[channels.default_target]`. Keys the app does not edit
/// (`method`, `headers`, `ordered`...) are kept as they were.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetEntry {
    pub url: String,
    #[serde(flatten)]
    pub extra: toml::Table,
}

impl TargetEntry {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            extra: toml::Table::new(),
        }
    }
}

fn default_token_ref() -> String {
    "keyring".into()
}

fn default_true() -> bool {
    true
}

fn default_protocol() -> String {
    "auto".into()
}

/// One `[[channels]]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelEntry {
    /// The app's stable key for the channel (added; unique in the file).
    #[serde(default)]
    pub key: String,
    pub channel: String,
    pub cloud_url: String,
    #[serde(default = "default_token_ref")]
    pub token_ref: String,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target: Option<TargetEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, TargetEntry>,
    /// The URL the cloud returned for a self-service channel (its webhook id is unguessable, so
    /// it cannot be derived from the channel name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Other connector keys (reconnect settings...), kept verbatim.
    #[serde(flatten)]
    pub extra: toml::Table,
}

impl ChannelEntry {
    /// The keyring account holding the token the connector sends: `token_ref =
    /// "keyring:<account>"` names it (a self-service channel names its account's API key),
    /// anything else is the channel's own `channel:<origin>/<channel>`.
    pub fn token_account(&self) -> Result<String, secrets::SecretError> {
        match self.token_ref.strip_prefix("keyring:") {
            Some(account) if !account.is_empty() => Ok(account.to_owned()),
            _ => secrets::channel_account(&self.cloud_url, &self.channel),
        }
    }

    /// A self-service channel: the connector authenticates with its account's API key.
    pub fn is_self_service(&self) -> bool {
        self.token_ref
            .strip_prefix("keyring:")
            .is_some_and(|a| a.starts_with(secrets::API_KEY_PREFIX))
    }
}

/// One `[[accounts]]` table: a self-service account this app is signed in to (HOSTED.md §5).
/// Its API key is in the keyring only (`api-key:<origin>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEntry {
    pub cloud_url: String,
    pub account_id: String,
    pub name: String,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsFile {
    #[serde(default)]
    pub app: AppTable,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelEntry>,
    /// Top-level connector keys (defaults for every channel), kept verbatim.
    #[serde(flatten)]
    pub extra: toml::Table,
}

/// A secret found in the file, with the keyring account it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct FoundSecret {
    pub account: String,
    pub value: String,
}

impl std::fmt::Debug for FoundSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundSecret")
            .field("account", &self.account)
            .field("value", &"***")
            .finish()
    }
}

fn str_of<'a>(t: &'a toml::Table, k: &str) -> Option<&'a str> {
    t.get(k).and_then(|v| v.as_str())
}

/// Removes `token` / `admin_token` from the top level and from every `[[channels]]` table and
/// returns them with their keyring accounts. A channel without its own `cloud_url` inherits the
/// top-level one (§7.4); a top-level token applies to channels without their own.
pub fn extract_secrets(doc: &mut toml::Table) -> Result<Vec<FoundSecret>, SettingsError> {
    let mut found = Vec::new();
    let top_url = str_of(doc, "cloud_url").map(str::to_owned);
    let top_token = doc
        .remove("token")
        .and_then(|v| v.as_str().map(str::to_owned));
    let top_admin = doc
        .remove("admin_token")
        .and_then(|v| v.as_str().map(str::to_owned));
    if let (Some(url), Some(admin)) = (&top_url, &top_admin) {
        found.push(FoundSecret {
            account: secrets::admin_account(url)?,
            value: admin.clone(),
        });
    }
    if let (Some(url), Some(token), Some(channel)) = (&top_url, &top_token, str_of(doc, "channel"))
    {
        found.push(FoundSecret {
            account: secrets::channel_account(url, channel)?,
            value: token.clone(),
        });
    }
    if let Some(channels) = doc.get_mut("channels").and_then(|v| v.as_array_mut()) {
        for ch in channels.iter_mut().filter_map(|v| v.as_table_mut()) {
            let url = str_of(ch, "cloud_url")
                .map(str::to_owned)
                .or_else(|| top_url.clone());
            let name = str_of(ch, "channel").map(str::to_owned);
            let token = ch
                .remove("token")
                .and_then(|v| v.as_str().map(str::to_owned))
                .or_else(|| top_token.clone());
            let admin = ch
                .remove("admin_token")
                .and_then(|v| v.as_str().map(str::to_owned));
            if let Some(url) = &url {
                if let (Some(t), Some(name)) = (token, &name) {
                    found.push(FoundSecret {
                        account: secrets::channel_account(url, name)?,
                        value: t,
                    });
                    if !ch.contains_key("token_ref") {
                        ch.insert("token_ref".into(), "keyring".into());
                    }
                }
                if let Some(a) = admin {
                    found.push(FoundSecret {
                        account: secrets::admin_account(url)?,
                        value: a,
                    });
                }
            }
        }
    }
    // Anything left under a secret key (e.g. without a usable cloud_url) is dropped, not kept.
    for k in SECRET_KEYS {
        doc.remove(*k);
    }
    Ok(found)
}

/// Result of [`load`].
#[derive(Debug)]
pub struct Loaded {
    pub file: SettingsFile,
    /// Secrets moved from the file to the keyring (the user is told).
    pub moved: usize,
}

/// Only the `[app]` table, read without touching the file or the keyring (the app's `main`
/// decides with it which image to start). Defaults when the file or the table is missing or
/// does not parse: the full load reports those.
pub fn read_app_table(path: &Path) -> AppTable {
    #[derive(Deserialize, Default)]
    struct OnlyApp {
        #[serde(default)]
        app: AppTable,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<OnlyApp>(&t).ok())
        .unwrap_or_default()
        .app
}

/// Reads the file (missing → defaults), moves secrets to the keyring and rewrites the file
/// without them, and gives every channel a key.
pub fn load(path: &Path, store: &dyn SecretStore) -> Result<Loaded, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(SettingsError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let found = extract_secrets(&mut doc)?;
    inherit_cloud_url(&mut doc);
    let mut file: SettingsFile =
        SettingsFile::deserialize(doc).map_err(|e| SettingsError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
    let keyed = assign_keys(&mut file);
    for s in &found {
        store.set(&s.account, &s.value)?;
    }
    // Only after every secret is safely stored is it removed from the disk.
    if !found.is_empty() || keyed {
        save(path, &file)?;
    }
    Ok(Loaded {
        file,
        moved: found.len(),
    })
}

/// A channel without its own `cloud_url` uses the top-level one (§7.4); the app writes it into
/// the channel so every entry is complete.
fn inherit_cloud_url(doc: &mut toml::Table) {
    let Some(top) = doc.get("cloud_url").cloned() else {
        return;
    };
    if let Some(channels) = doc.get_mut("channels").and_then(|v| v.as_array_mut()) {
        for ch in channels.iter_mut().filter_map(|v| v.as_table_mut()) {
            ch.entry("cloud_url").or_insert_with(|| top.clone());
        }
    }
}

/// Gives keyless (hand-written) channels a key; true when something changed.
fn assign_keys(file: &mut SettingsFile) -> bool {
    let mut changed = false;
    let mut seen = std::collections::BTreeSet::new();
    for ch in &mut file.channels {
        if ch.key.is_empty() || !seen.insert(ch.key.clone()) {
            ch.key = new_key();
            seen.insert(ch.key.clone());
            changed = true;
        }
    }
    changed
}

/// A fresh channel key.
pub fn new_key() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("ch-{}", &id[..12])
}

/// Serialises without any secret.
pub fn to_toml(file: &SettingsFile) -> Result<String, SettingsError> {
    let mut doc = toml::Table::try_from(file).map_err(|e| SettingsError::Parse {
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    // Defence in depth: `extra` tables could carry a secret key put there by a caller.
    let _ = extract_secrets(&mut doc)?;
    toml::to_string_pretty(&doc).map_err(|e| SettingsError::Parse {
        path: PathBuf::new(),
        message: e.to_string(),
    })
}

/// Atomic write: a 0600 temporary file in the same directory, fsync, rename, fsync the directory.
pub fn save(path: &Path, file: &SettingsFile) -> Result<(), SettingsError> {
    let text = to_toml(file)?;
    write_atomic(path, text.as_bytes()).map_err(|source| SettingsError::Io {
        path: path.into(),
        source,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(FILE_NAME);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    // The mode above is filtered by the umask and ignored for an existing file.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(not(unix))]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(p)
}

#[cfg(unix)]
fn create_private_dir(d: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if d.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
}

#[cfg(not(unix))]
fn create_private_dir(d: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemoryStore;

    fn sample() -> SettingsFile {
        let mut targets = BTreeMap::new();
        let mut t = TargetEntry::new("http://localhost:3000/hooks/github");
        t.extra.insert("ordered".into(), true.into());
        targets.insert("github-main".into(), t);
        let mut extra = toml::Table::new();
        extra.insert("reconnect_delay".into(), 2.5.into());
        SettingsFile {
            app: AppTable {
                autostart: true,
                notifications: NotificationLevel::All,
                ..AppTable::default()
            },
            channels: vec![ChannelEntry {
                key: "ch-1".into(),
                channel: "team-alpha".into(),
                cloud_url: "https://relay.example.com".into(),
                token_ref: "keyring".into(),
                protocol: "auto".into(),
                enabled: false,
                default_target: Some(TargetEntry::new("http://localhost:8080/fallback")),
                targets,
                webhook_url: None,
                extra,
            }],
            accounts: Vec::new(),
            extra: toml::Table::new(),
        }
    }

    #[test]
    fn the_app_table_alone_is_read_leniently() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(FILE_NAME);
        assert_eq!(read_app_table(&path), AppTable::default(), "no file");
        std::fs::write(
            &path,
            "[app]\nlight_mode = false\nstart_minimized = false\n\n[[channels]]\nchannel = \"c\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let t = read_app_table(&path);
        assert!(!t.light_mode && !t.start_minimized);
        assert_eq!(t.history_size, AppTable::default().history_size);
        // Read only: the token stays in the file until the full load moves it.
        assert!(std::fs::read_to_string(&path).unwrap().contains("token"));
        std::fs::write(&path, "[app\nbroken").unwrap();
        assert_eq!(read_app_table(&path), AppTable::default(), "broken file");
    }

    #[test]
    fn toml_round_trip_keeps_every_key() {
        let f = sample();
        let text = to_toml(&f).unwrap();
        assert!(text.contains("[[channels]]"), "{text}");
        assert!(text.contains("[channels.targets.github-main]"), "{text}");
        assert!(text.contains("reconnect_delay = 2.5"), "{text}");
        let back: SettingsFile = toml::from_str(&text).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn defaults_follow_config_8_1() {
        let f: SettingsFile = toml::from_str("").unwrap();
        assert!(!f.app.autostart);
        assert!(f.app.start_minimized);
        assert_eq!(f.app.notifications, NotificationLevel::Errors);
        assert_eq!(f.app.theme, "system");
        assert_eq!(f.app.history_size, 1000);
        assert_eq!(f.app.log_level, "info");
        let f: SettingsFile =
            toml::from_str("[[channels]]\nchannel = \"c\"\ncloud_url = \"http://x\"\n").unwrap();
        assert_eq!(f.channels[0].token_ref, "keyring");
        assert_eq!(f.channels[0].protocol, "auto");
        assert!(f.channels[0].enabled);
    }

    /// Against the real Secret Service of the test's own session.
    #[test]
    fn secrets_in_the_file_move_to_the_keyring_and_out_of_the_file() -> anyhow::Result<()> {
        connect_testkit::secret_service::isolated(|keyring| async move {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("cfg").join(FILE_NAME);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                &path,
                r#"
cloud_url = "https://Relay.Example.com/"
admin_token = "adm-secret"

[app]
notifications = "none"

[[channels]]
channel = "team-alpha"
token = "tok-alpha"

[[channels]]
channel = "ci"
cloud_url = "http://127.0.0.1:9000"
token = "tok-ci"
admin_token = "adm-ci"
"#,
            )
            .unwrap();
            let store = secrets::KeyringStore::new();
            let loaded = load(&path, store.as_ref()).unwrap();
            assert_eq!(loaded.moved, 4);
            assert_eq!(
                keyring
                    .lookup("channel:https://relay.example.com/team-alpha")?
                    .as_deref(),
                Some("tok-alpha")
            );
            assert_eq!(
                keyring
                    .lookup("admin:https://relay.example.com")?
                    .as_deref(),
                Some("adm-secret")
            );
            assert_eq!(
                keyring
                    .lookup("channel:http://127.0.0.1:9000/ci")?
                    .as_deref(),
                Some("tok-ci")
            );
            assert_eq!(
                keyring.lookup("admin:http://127.0.0.1:9000")?.as_deref(),
                Some("adm-ci")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            for secret in ["tok-alpha", "tok-ci", "adm-ci", "adm-secret", "token ="] {
                assert!(!text.contains(secret), "{secret} left in:\n{text}");
            }
            assert!(text.contains("token_ref = \"keyring\""), "{text}");
            assert_eq!(loaded.file.app.notifications, NotificationLevel::None);
            // Keys were assigned and persisted; a second load changes nothing.
            let again = load(&path, store.as_ref()).unwrap();
            assert_eq!(again.moved, 0);
            assert_eq!(again.file, loaded.file);
            assert!(
                loaded
                    .file
                    .channels
                    .iter()
                    .all(|c| c.key.starts_with("ch-"))
            );
            // Exactly those four, in gnome-keyring; nothing kept in memory only.
            assert_eq!(keyring.accounts()?.len(), 4);
            assert_eq!(store.unavailable(), None);
            Ok(())
        })
    }

    #[test]
    fn a_secret_is_not_removed_from_disk_when_the_keyring_refuses_it() {
        struct Refusing;
        impl SecretStore for Refusing {
            fn get(&self, _: &str) -> Result<Option<String>, secrets::SecretError> {
                Ok(None)
            }
            fn set(&self, _: &str, _: &str) -> Result<(), secrets::SecretError> {
                Err(secrets::SecretError("locked".into()))
            }
            fn delete(&self, _: &str) -> Result<(), secrets::SecretError> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let original = "[[channels]]\nchannel = \"c\"\ncloud_url = \"http://x\"\ntoken = \"t\"\n";
        std::fs::write(&path, original).unwrap();
        assert!(load(&path, &Refusing).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn serialising_never_writes_a_token_even_from_extra_keys() {
        let mut f = sample();
        f.channels[0].extra.insert("token".into(), "leaked".into());
        f.extra.insert("admin_token".into(), "leaked2".into());
        let text = to_toml(&f).unwrap();
        assert!(!text.contains("leaked"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn save_is_atomic_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new-dir").join(FILE_NAME);
        save(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An existing world-readable file becomes 0600 on rewrite; no temporary file is left.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = sample();
        f.app.history_size = 5;
        save(&path, &f).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![FILE_NAME.to_owned()]);
        let back = load(&path, &MemoryStore::new()).unwrap();
        assert_eq!(back.file.app.history_size, 5);
    }
}
