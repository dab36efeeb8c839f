//! Channel and admin tokens in the OS keyring (CONFIG.md §8.2), behind [`SecretStore`] so unit
//! tests use [`MemoryStore`] instead of the real Secret Service.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Keyring service name shared by the desktop app and the CLI.
pub const SERVICE: &str = "webhook-connect";

/// A keyring failure. The message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keyring: {0}")]
pub struct SecretError(pub String);

/// Where tokens live. Implementations must never log values.
pub trait SecretStore: Send + Sync {
    fn get(&self, account: &str) -> Result<Option<String>, SecretError>;
    fn set(&self, account: &str, secret: &str) -> Result<(), SecretError>;
    /// Deleting a missing entry is not an error.
    fn delete(&self, account: &str) -> Result<(), SecretError>;
}

/// `<origin>` of CONFIG.md §8.2: `scheme://host[:port]`, lower-cased, default ports omitted,
/// no path or trailing `/`.
pub fn origin(cloud_url: &str) -> Result<String, SecretError> {
    let url = reqwest::Url::parse(cloud_url.trim())
        .map_err(|e| SecretError(format!("invalid cloud URL: {e}")))?;
    let scheme = url.scheme().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(SecretError(format!(
            "cloud URL must be http(s), got {scheme}"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| SecretError("cloud URL has no host".into()))?
        .to_ascii_lowercase();
    // `Url::port` is already `None` for the scheme's default port (80 for http, 443 for https),
    // the same rule as `connect_engine::keyring::origin` so the CLI finds the app's tokens.
    Ok(match url.port() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// `channel:<origin>/<channel>`.
pub fn channel_account(cloud_url: &str, channel: &str) -> Result<String, SecretError> {
    Ok(format!("channel:{}/{}", origin(cloud_url)?, channel))
}

/// `admin:<origin>`.
pub fn admin_account(cloud_url: &str) -> Result<String, SecretError> {
    Ok(format!("admin:{}", origin(cloud_url)?))
}

/// `api-key:<cloud url>`: an account's API key (HOSTED.md §4), the very entry the CLI's
/// `login` writes (the engine names it: the URL normalized, its base path kept).
pub fn api_key_account(cloud_url: &str) -> Result<String, SecretError> {
    connect_engine::keyring::api_key_account(cloud_url).map_err(|e| SecretError(e.to_string()))
}

/// The prefix of [`api_key_account`]'s names.
pub const API_KEY_PREFIX: &str = "api-key:";

/// In-memory store: the unit-test fake, and the fallback when no keyring is reachable
/// (tokens then last until the app exits, §8.2).
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<String, String>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Account names held (tests).
    pub fn accounts(&self) -> Vec<String> {
        self.entries.lock().keys().cloned().collect()
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, account: &str) -> Result<Option<String>, SecretError> {
        Ok(self.entries.lock().get(account).cloned())
    }

    fn set(&self, account: &str, secret: &str) -> Result<(), SecretError> {
        self.entries
            .lock()
            .insert(account.to_owned(), secret.to_owned());
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<(), SecretError> {
        self.entries.lock().remove(account);
        Ok(())
    }
}

/// The OS keyring through the `keyring` crate, falling back to memory when the platform store
/// is unavailable (no Secret Service on the session bus, locked collection...).
#[derive(Default)]
pub struct KeyringStore {
    fallback: MemoryStore,
    unavailable: Mutex<Option<String>>,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStore")
            .field("unavailable", &*self.unavailable.lock())
            .finish_non_exhaustive()
    }
}

impl KeyringStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Why the keyring could not be used, once a call failed for a platform reason.
    pub fn unavailable(&self) -> Option<String> {
        self.unavailable.lock().clone()
    }

    /// Runs a keyring call on a fresh OS thread: the Secret Service client blocks on its own
    /// executor, which must not happen on a tokio worker.
    fn call<T: Send>(
        &self,
        account: &str,
        f: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send,
    ) -> Result<T, keyring::Error> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let entry = keyring::Entry::new(SERVICE, account)?;
                f(&entry)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(keyring::Error::PlatformFailure(
                    "keyring thread panicked".into(),
                ))
            })
        })
    }

    fn platform_down(&self, e: &keyring::Error) -> bool {
        let down = matches!(
            e,
            keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_)
        );
        if down {
            let mut u = self.unavailable.lock();
            if u.is_none() {
                tracing::warn!(error = %e, "OS keyring unavailable; tokens are kept in memory until exit");
                *u = Some(e.to_string());
            }
        }
        down
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, account: &str) -> Result<Option<String>, SecretError> {
        if let Some(v) = self.fallback.get(account)? {
            return Ok(Some(v));
        }
        match self.call(account, |e| e.get_password()) {
            Ok(v) => Ok(Some(v)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) if self.platform_down(&e) => Ok(None),
            Err(e) => Err(SecretError(e.to_string())),
        }
    }

    fn set(&self, account: &str, secret: &str) -> Result<(), SecretError> {
        match self.call(account, |e| e.set_password(secret)) {
            Ok(()) => {
                self.fallback.delete(account)?;
                Ok(())
            }
            Err(e) if self.platform_down(&e) => self.fallback.set(account, secret),
            Err(e) => Err(SecretError(e.to_string())),
        }
    }

    fn delete(&self, account: &str) -> Result<(), SecretError> {
        self.fallback.delete(account)?;
        match self.call(account, |e| e.delete_credential()) {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) if self.platform_down(&e) => Ok(()),
            Err(e) => Err(SecretError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_lowercases_and_drops_default_ports_and_paths() {
        assert_eq!(
            origin("https://Relay.Example.com/").unwrap(),
            "https://relay.example.com"
        );
        assert_eq!(
            origin("https://relay.example.com:443/base/path").unwrap(),
            "https://relay.example.com"
        );
        assert_eq!(
            origin("HTTP://relay.example.com:80").unwrap(),
            "http://relay.example.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:8000/x/").unwrap(),
            "http://127.0.0.1:8000"
        );
        // Only the scheme's own default port is omitted.
        assert_eq!(
            origin("http://relay.example.com:443").unwrap(),
            "http://relay.example.com:443"
        );
        assert!(origin("not a url").is_err());
        assert!(origin("ftp://relay.example.com").is_err());
    }

    #[test]
    fn account_names_follow_config_8_2() {
        assert_eq!(
            channel_account("https://relay.example.com/", "team-alpha").unwrap(),
            "channel:https://relay.example.com/team-alpha"
        );
        assert_eq!(
            admin_account("https://Relay.Example.com:443/base").unwrap(),
            "admin:https://relay.example.com"
        );
        assert_eq!(
            channel_account("http://localhost:8080", "a.b").unwrap(),
            "channel:http://localhost:8080/a.b"
        );
        assert_eq!(
            api_key_account("https://Hooks.Example.com:443/").unwrap(),
            "api-key:https://hooks.example.com"
        );
        assert!(
            api_key_account("http://h:8000/base/")
                .unwrap()
                .starts_with(API_KEY_PREFIX)
        );
    }

    #[test]
    fn memory_store_sets_gets_and_deletes() {
        let s = MemoryStore::new();
        assert_eq!(s.get("a").unwrap(), None);
        s.set("a", "x").unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some("x"));
        s.delete("a").unwrap();
        s.delete("a").unwrap();
        assert_eq!(s.get("a").unwrap(), None);
    }
}
