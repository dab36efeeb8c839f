//! Where the self-service commands find their cloud and API key.
//!
//! - The cloud URL: `--cloud-url` (or `CONNECTOR_CLOUD_URL`), else the one of the last `login`,
//!   remembered in `$XDG_CONFIG_HOME/webhook-connect/cli.json` (or
//!   `~/.config/webhook-connect/cli.json`). That file holds no secret: the URL, the account
//!   name and, after `login --key-file`, the key file's path.
//! - The API key: `--key-file` (or `CONNECTOR_KEY_FILE`), else the key file `login` used for
//!   this cloud, else the OS keyring (service `webhook-connect`, account `api-key:<cloud url>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use connect_engine::hosted::{self, HostedClient, key_file};
use connect_engine::keyring::{self, KeyringError};
use serde::{Deserialize, Serialize};

use super::Common;
use super::error::CliError;

/// What `login` remembers (no secret).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub cloud_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The key file of `login --key-file`, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// `…/webhook-connect/cli.json` under `XDG_CONFIG_HOME`, else `HOME/.config`.
pub fn state_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .map(|b| b.join("webhook-connect").join("cli.json"))
}

/// The remembered state; none when the file is missing. A broken file is an error.
pub fn load_state(path: Option<&Path>) -> Result<Option<State>, CliError> {
    let Some(path) = path else { return Ok(None) };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::Usage(format!(
                "{}: {e} (delete it and log in again)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Usage(format!("{}: {e}", path.display()))),
    }
}

pub fn save_state(path: Option<&Path>, state: &State) -> Result<(), CliError> {
    let Some(path) = path else {
        return Err(CliError::Usage(
            "neither XDG_CONFIG_HOME nor HOME is set: nowhere to remember the login".into(),
        ));
    };
    let fail = |e: std::io::Error| CliError::Failed(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_vec_pretty(state).map_err(|e| CliError::Failed(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The resolved context of one command.
#[derive(Debug)]
pub struct Ctx {
    pub cloud_url: String,
    pub state_path: Option<PathBuf>,
    pub state: Option<State>,
    /// `--key-file`, or the one remembered for this cloud.
    pub key_file: Option<PathBuf>,
    pub http: hosted::CloudHttpOptions,
}

impl Ctx {
    /// The cloud URL and key-file choice of `common`, filled from the remembered state.
    pub fn resolve(common: &Common, env: &BTreeMap<String, String>) -> Result<Self, CliError> {
        let state_path = state_path(env);
        let state = load_state(state_path.as_deref())?;
        let cloud_url = match (&common.cloud_url, &state) {
            (Some(u), _) => u.clone(),
            (None, Some(s)) => s.cloud_url.clone(),
            (None, None) => {
                return Err(CliError::NotLoggedIn(
                    "not logged in: run `webhook-connect login --cloud-url URL` first (or pass --cloud-url)"
                        .into(),
                ));
            }
        };
        let cloud_url = hosted::normalize_cloud_url(&cloud_url)?;
        let remembered = state
            .as_ref()
            .filter(|s| s.cloud_url == cloud_url)
            .and_then(|s| s.key_file.clone());
        let key_file = common.key_file.clone().or(remembered);
        let http = hosted::CloudHttpOptions {
            ca_cert_path: common.ca_cert_path.clone(),
            verify_ssl: !common.no_verify_ssl,
            ..Default::default()
        };
        Ok(Self {
            cloud_url,
            state_path,
            state,
            key_file,
            http,
        })
    }

    /// A client without a key (sign-up).
    pub fn anonymous(&self) -> Result<HostedClient, CliError> {
        Ok(HostedClient::new(&self.cloud_url, None, &self.http)?)
    }

    /// A client with the stored key.
    pub fn client(&self) -> Result<HostedClient, CliError> {
        let key = self.read_key()?;
        Ok(HostedClient::new(&self.cloud_url, Some(&key), &self.http)?)
    }

    /// The stored API key: the key file if there is one, else the OS keyring.
    pub fn read_key(&self) -> Result<String, CliError> {
        if let Some(path) = &self.key_file {
            return key_file::read(path).map_err(|e| match e {
                key_file::KeyFileError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    CliError::NotLoggedIn(format!(
                        "not logged in: no key file {} (run `webhook-connect login --cloud-url {} --key-file {}`)",
                        path.display(),
                        self.cloud_url,
                        path.display()
                    ))
                }
                e => CliError::Usage(e.to_string()),
            });
        }
        let account = keyring::api_key_account(&self.cloud_url)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        keyring::read(&account).map_err(|e| match e {
            KeyringError::NoEntry => CliError::NotLoggedIn(format!(
                "not logged in to {}: run `webhook-connect login --cloud-url {}`",
                self.cloud_url, self.cloud_url
            )),
            e => no_keyring(&e),
        })
    }

    /// Whether the keyring can hold the key (a read that finds nothing counts as working).
    pub fn probe_keyring(&self) -> Result<(), CliError> {
        let account = keyring::api_key_account(&self.cloud_url)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        match keyring::read(&account) {
            Ok(_) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(no_keyring(&e)),
        }
    }

    /// Stores the key where later commands will look: the key file, else the keyring.
    pub fn store_key(&self, key: &str) -> Result<String, CliError> {
        if let Some(path) = &self.key_file {
            key_file::write(path, key).map_err(|e| CliError::Failed(e.to_string()))?;
            return Ok(format!("key file {} (mode 0600)", path.display()));
        }
        let account = keyring::api_key_account(&self.cloud_url)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        keyring::write(&account, key).map_err(|e| no_keyring(&e))?;
        Ok(format!(
            "the OS keyring (service {:?}, account {account:?})",
            keyring::SERVICE
        ))
    }

    /// Removes the stored key (key file and keyring entry) and forgets the login.
    pub fn forget(&self) -> Result<Vec<String>, CliError> {
        let mut done = Vec::new();
        if let Some(path) = self.key_file.as_ref().filter(|p| p.exists()) {
            key_file::remove(path).map_err(|e| CliError::Failed(e.to_string()))?;
            done.push(format!("deleted the key file {}", path.display()));
        }
        let account = keyring::api_key_account(&self.cloud_url)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        // Without a keyring (or without an entry) there is nothing in it to remove.
        if keyring::read(&account).is_ok() {
            keyring::delete(&account).map_err(|e| no_keyring(&e))?;
            done.push(format!("removed {account:?} from the OS keyring"));
        }
        let remembered = self
            .state
            .as_ref()
            .is_some_and(|s| s.cloud_url == self.cloud_url);
        if let (Some(path), true) = (&self.state_path, remembered) {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CliError::Failed(format!("{}: {e}", path.display()))),
            }
        }
        Ok(done)
    }
}

fn no_keyring(e: &KeyringError) -> CliError {
    CliError::Usage(format!(
        "no usable OS keyring ({e}): pass --key-file PATH to keep the API key in a file (mode 0600) instead"
    ))
}

/// An absolute form of `path` (relative to the working directory), for remembering it.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_state_lives_under_xdg_config_home_or_home() {
        assert_eq!(
            state_path(&env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/webhook-connect/cli.json"))
        );
        assert_eq!(
            state_path(&env(&[("XDG_CONFIG_HOME", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.config/webhook-connect/cli.json"))
        );
        assert_eq!(state_path(&env(&[])), None);
    }

    #[test]
    fn the_remembered_cloud_and_key_file_fill_in_missing_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = env(&[("XDG_CONFIG_HOME", dir.path().to_str().expect("utf-8"))]);
        let none = Ctx::resolve(&Common::default(), &e).expect_err("no cloud yet");
        assert_eq!(none.exit_code(), 77);
        let state = State {
            cloud_url: "https://hooks.example.com".into(),
            account: Some("alice".into()),
            key_file: Some(PathBuf::from("/k/key")),
        };
        save_state(state_path(&e).as_deref(), &state).expect("save");
        let ctx = Ctx::resolve(&Common::default(), &e).expect("resolved");
        assert_eq!(ctx.cloud_url, "https://hooks.example.com");
        assert_eq!(ctx.key_file, Some(PathBuf::from("/k/key")));
        // Another cloud does not borrow this cloud's key file.
        let other = Common {
            cloud_url: Some("https://other.example.com/".into()),
            ..Common::default()
        };
        let ctx = Ctx::resolve(&other, &e).expect("resolved");
        assert_eq!(ctx.cloud_url, "https://other.example.com");
        assert_eq!(ctx.key_file, None);
    }
}
