//! Self-service hosting in the app (HOSTED.md §5): signing in to a cloud with an API key (or
//! creating an account on an `open` cloud), creating channels through `/api/v1`, using the
//! account's other channels here, deleting them at the cloud, and their dead letters with the
//! API key.
//!
//! The API key lives in the OS keyring only, as `api-key:<origin>` (the entry the CLI's `login`
//! writes); `settings.toml` keeps the account's name and id in `[[accounts]]`. A self-service
//! channel's connector credential is that key: its `token_ref` is
//! `keyring:api-key:<origin>`, so rotating the key (signing in again) switches every channel.

use std::collections::BTreeMap;

use connect_engine::api::TargetSettings;
use connect_engine::hosted::{CloudHttpOptions, HostedClient, normalize_cloud_url};
use connect_protocol::hosted::{
    CreateChannelRequest, HostedChannelStats, SignUpRequest, VerifySpec, is_valid_account_name,
    is_valid_channel_short_name,
};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::core::{ChannelInput, Core, SavedChannel};
use crate::error::{CoreError, CoreResult};
use crate::secrets;
use crate::settings::AccountEntry;

/// A self-service account this app is signed in to. Never carries the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct AccountView {
    pub cloud_url: String,
    pub account_id: String,
    pub name: String,
    /// The API key is in the keyring (false after it was removed there, e.g. by `logout`).
    pub has_key: bool,
}

/// `sign_in` input. The key goes to the keyring only.
#[derive(Clone, Serialize, Deserialize, TS)]
pub struct SignInInput {
    pub cloud_url: String,
    pub api_key: String,
}

impl std::fmt::Debug for SignInInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInInput")
            .field("cloud_url", &self.cloud_url)
            .field("api_key", &"***")
            .finish()
    }
}

/// `create_account` input (an `open` cloud): without a name the cloud picks one.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct CreateAccountInput {
    pub cloud_url: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `create_channel` input: the short name (the channel is `<account>.<name>`), where to
/// forward, and the optional provider check run by the cloud at ingress.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct NewChannelInput {
    pub cloud_url: String,
    pub name: String,
    pub target_url: String,
    #[serde(default)]
    #[ts(type = "VerifySpec | null")]
    pub verify: Option<VerifySpec>,
}

/// A channel of the signed-in account, as `GET /api/v1/channels` lists it, with the key of the
/// channel forwarding it on this machine (none: "Use here").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct RemoteChannel {
    pub channel: String,
    pub webhook_url: String,
    pub created_at: String,
    pub description: Option<String>,
    #[ts(type = "HostedChannelStats")]
    pub stats: HostedChannelStats,
    pub local_key: Option<String>,
}

/// A cloud URL as stored: normalized as the engine (and the CLI) write it.
fn cloud_url_of(raw: &str) -> CoreResult<String> {
    normalize_cloud_url(raw).map_err(|e| CoreError::Invalid(e.to_string()))
}

fn same_cloud(a: &str, b: &str) -> bool {
    match (normalize_cloud_url(a), normalize_cloud_url(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn client(cloud_url: &str, key: Option<&str>) -> CoreResult<HostedClient> {
    Ok(HostedClient::new(
        cloud_url,
        key,
        &CloudHttpOptions::default(),
    )?)
}

impl Core {
    /// The accounts this app is signed in to, in settings order.
    pub fn accounts(&self) -> Vec<AccountView> {
        let entries = self.file.lock().accounts.clone();
        entries
            .into_iter()
            .map(|a| {
                let has_key = secrets::api_key_account(&a.cloud_url)
                    .ok()
                    .and_then(|acc| self.secrets.get(&acc).ok().flatten())
                    .is_some();
                AccountView {
                    cloud_url: a.cloud_url,
                    account_id: a.account_id,
                    name: a.name,
                    has_key,
                }
            })
            .collect()
    }

    fn account_entry(&self, cloud_url: &str) -> CoreResult<AccountEntry> {
        self.file
            .lock()
            .accounts
            .iter()
            .find(|a| same_cloud(&a.cloud_url, cloud_url))
            .cloned()
            .ok_or_else(|| CoreError::NotSignedIn(cloud_url.to_owned()))
    }

    /// The API client of a signed-in cloud.
    pub(crate) fn api(&self, cloud_url: &str) -> CoreResult<(HostedClient, AccountEntry)> {
        let entry = self.account_entry(cloud_url)?;
        let key = self
            .secrets
            .get(&secrets::api_key_account(&entry.cloud_url)?)?
            .ok_or_else(|| CoreError::NotSignedIn(entry.cloud_url.clone()))?;
        Ok((client(&entry.cloud_url, Some(&key))?, entry))
    }

    /// Checks the key with `GET /api/v1/account`, then stores it (keyring) and the account
    /// (settings.toml). Channels that use this cloud's key start with it. Without a key, the
    /// one already in the keyring for this cloud is used (`webhook-connect login` on this
    /// computer writes that same entry).
    pub async fn sign_in(&self, input: SignInInput) -> CoreResult<AccountView> {
        let cloud_url = cloud_url_of(&input.cloud_url)?;
        let typed = input.api_key.trim();
        let key = if typed.is_empty() {
            self.secrets
                .get(&secrets::api_key_account(&cloud_url)?)?
                .ok_or_else(|| {
                    CoreError::Invalid(format!(
                        "an API key is required: none is stored for {cloud_url} (`webhook-connect login` stores one)"
                    ))
                })?
        } else {
            typed.to_owned()
        };
        let account = client(&cloud_url, Some(&key))?.account().await?;
        self.remember_account(&cloud_url, &key, &account.account_id, &account.name)
    }

    /// `POST /api/v1/accounts` on an `open` cloud; the key it returns once goes to the keyring.
    pub async fn create_account(&self, input: CreateAccountInput) -> CoreResult<AccountView> {
        let cloud_url = cloud_url_of(&input.cloud_url)?;
        let name = input
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(n) = name
            && !is_valid_account_name(n)
        {
            return Err(CoreError::Invalid(format!(
                "invalid account name {n:?}: 2 to 32 lower-case letters, digits and '-', starting with a letter or digit"
            )));
        }
        let created = client(&cloud_url, None)?
            .sign_up(&SignUpRequest {
                name: name.map(str::to_owned),
            })
            .await?;
        self.remember_account(
            &cloud_url,
            &created.api_key,
            &created.account.account_id,
            &created.account.name,
        )
    }

    fn remember_account(
        &self,
        cloud_url: &str,
        key: &str,
        account_id: &str,
        name: &str,
    ) -> CoreResult<AccountView> {
        let key_account = secrets::api_key_account(cloud_url)?;
        self.secrets.set(&key_account, key)?;
        let entry = AccountEntry {
            cloud_url: cloud_url.to_owned(),
            account_id: account_id.to_owned(),
            name: name.to_owned(),
        };
        self.persist(|f| {
            f.accounts.retain(|a| !same_cloud(&a.cloud_url, cloud_url));
            f.accounts.push(entry.clone());
        })?;
        // Channels waiting for this key (signed out before, or a new key) start with it.
        let using: Vec<_> = self
            .file
            .lock()
            .channels
            .iter()
            .filter(|c| c.token_account().ok().as_deref() == Some(key_account.as_str()))
            .cloned()
            .collect();
        for c in using.iter().filter(|c| c.enabled) {
            if let Err(e) = self.start_channel(c) {
                tracing::warn!(channel = %c.channel, error = %e, "channel not started");
            }
        }
        Ok(AccountView {
            cloud_url: entry.cloud_url,
            account_id: entry.account_id,
            name: entry.name,
            has_key: true,
        })
    }

    /// Forgets the account and its key (keyring). Its channels stay configured but stop: they
    /// have no credential until the next sign-in.
    pub async fn sign_out(&self, cloud_url: &str) -> CoreResult<()> {
        let entry = self.account_entry(cloud_url)?;
        let key_account = secrets::api_key_account(&entry.cloud_url)?;
        self.persist(|f| f.accounts.retain(|a| !same_cloud(&a.cloud_url, cloud_url)))?;
        self.secrets.delete(&key_account)?;
        let using: Vec<String> = self
            .file
            .lock()
            .channels
            .iter()
            .filter(|c| c.token_account().ok().as_deref() == Some(key_account.as_str()))
            .map(|c| c.key.clone())
            .collect();
        for k in using {
            self.engine.remove_channel(&k, crate::core::GRACE).await;
        }
        Ok(())
    }

    /// The account's channels at the cloud, each with the local channel forwarding it.
    pub async fn remote_channels(&self, cloud_url: &str) -> CoreResult<Vec<RemoteChannel>> {
        let (api, entry) = self.api(cloud_url)?;
        let list = api.channels().await?;
        let local = self.file.lock().channels.clone();
        Ok(list
            .channels
            .into_iter()
            .map(|c| RemoteChannel {
                local_key: local
                    .iter()
                    .find(|l| same_cloud(&l.cloud_url, &entry.cloud_url) && l.channel == c.channel)
                    .map(|l| l.key.clone()),
                channel: c.channel,
                webhook_url: c.webhook_url,
                created_at: c.created_at.to_string(),
                description: c.description,
                stats: c.stats,
            })
            .collect())
    }

    /// Creates `<account>.<name>` at the cloud, then forwards it here to `target_url` at once
    /// (the connector authenticates with the API key).
    pub async fn create_channel(&self, input: NewChannelInput) -> CoreResult<SavedChannel> {
        let name = input.name.trim().to_owned();
        if !is_valid_channel_short_name(&name) {
            return Err(CoreError::Invalid(format!(
                "invalid channel name {name:?}: 1 to 40 lower-case letters, digits and '-', starting with a letter or digit"
            )));
        }
        let target = input.target_url.trim().to_owned();
        check_target(&target)?;
        let (api, entry) = self.api(&input.cloud_url)?;
        let verify = input.verify.filter(|v| !v.secret.is_empty());
        let created = api
            .create_channel(&CreateChannelRequest {
                name,
                verify,
                ..CreateChannelRequest::default()
            })
            .await?;
        self.forward_here(&entry, &created.channel, &created.webhook_url, &target)
    }

    /// "Use here": forwards an existing channel of the account to `target_url`.
    pub async fn use_remote_channel(
        &self,
        cloud_url: &str,
        channel: &str,
        target_url: &str,
    ) -> CoreResult<SavedChannel> {
        let target = target_url.trim().to_owned();
        check_target(&target)?;
        let (api, entry) = self.api(cloud_url)?;
        let found = api
            .channels()
            .await?
            .channels
            .into_iter()
            .find(|c| c.channel == channel)
            .ok_or_else(|| CoreError::UnknownChannel(channel.to_owned()))?;
        self.forward_here(&entry, &found.channel, &found.webhook_url, &target)
    }

    fn forward_here(
        &self,
        account: &AccountEntry,
        channel: &str,
        webhook_url: &str,
        target: &str,
    ) -> CoreResult<SavedChannel> {
        let exists = self
            .file
            .lock()
            .channels
            .iter()
            .any(|c| same_cloud(&c.cloud_url, &account.cloud_url) && c.channel == channel);
        if exists {
            return Err(CoreError::Invalid(format!(
                "{channel} is already forwarded on this machine"
            )));
        }
        let token_ref = format!("keyring:{}", secrets::api_key_account(&account.cloud_url)?);
        self.save_self_service(
            ChannelInput {
                key: None,
                cloud_url: account.cloud_url.clone(),
                channel: channel.to_owned(),
                protocol: "auto".into(),
                default_target: Some(target.to_owned()),
                targets: BTreeMap::<String, TargetSettings>::new(),
                token: None,
                admin_token: None,
            },
            &token_ref,
            webhook_url,
        )
    }

    /// Deletes a self-service channel at its cloud (`DELETE /api/v1/channels/{channel}`); a
    /// channel already gone there is not an error.
    pub(crate) async fn delete_at_cloud(&self, key: &str) -> CoreResult<()> {
        let e = self.entry(key)?;
        if !e.is_self_service() {
            return Err(CoreError::Invalid(format!(
                "{} is not a self-service channel: it can only be removed from this machine",
                e.channel
            )));
        }
        let (api, _) = self.api(&e.cloud_url)?;
        match api.delete_channel(&e.channel).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

fn check_target(target: &str) -> CoreResult<()> {
    let ok = reqwest::Url::parse(target)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "target URL {target:?} must be an http(s) URL (e.g. http://localhost:3000/webhook)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::MemoryStore;
    use crate::settings;

    const CLOUD: &str = "http://127.0.0.1:9";
    const KEY: &str = "whc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn core(dir: &tempfile::TempDir) -> (Core, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let c = Core::start(dir.path().join(settings::FILE_NAME), store.clone()).unwrap();
        (c, store)
    }

    fn alice() -> AccountEntry {
        AccountEntry {
            cloud_url: CLOUD.into(),
            account_id: "acc_0123456789abcdef".into(),
            name: "alice".into(),
        }
    }

    /// Against the real Secret Service of the test's own session.
    #[test]
    fn a_self_service_channel_connects_with_the_api_key_which_stays_in_the_keyring()
    -> anyhow::Result<()> {
        connect_testkit::secret_service::isolated(|keyring| async move {
            let dir = tempfile::tempdir().unwrap();
            let store = crate::secrets::KeyringStore::new();
            let c = Core::start(dir.path().join(settings::FILE_NAME), store.clone()).unwrap();
            let view = c
                .remember_account(CLOUD, KEY, "acc_0123456789abcdef", "alice")
                .unwrap();
            assert!(view.has_key);
            assert_eq!(c.accounts(), vec![view]);
            let url = format!("{CLOUD}/webhook/wh_abcdefghijklmnopqrstuvwxyz");
            let saved = c
                .forward_here(&alice(), "alice.shop", &url, "http://127.0.0.1:9/hook")
                .unwrap();
            assert!(saved.self_service && saved.has_token, "{saved:?}");
            assert_eq!(saved.webhook_url, url, "the cloud's URL, not a guess");
            assert_eq!(saved.channel, "alice.shop");
            // One secret: the account's key, under the CLI's entry; no per-channel token.
            assert_eq!(keyring.accounts()?, vec![format!("api-key:{CLOUD}")]);
            let text = std::fs::read_to_string(dir.path().join(settings::FILE_NAME)).unwrap();
            assert!(!text.contains(KEY), "{text}");
            assert!(
                text.contains("token_ref = \"keyring:api-key:http://127.0.0.1:9\""),
                "{text}"
            );
            assert!(
                text.contains("[[accounts]]") && text.contains("name = \"alice\""),
                "{text}"
            );
            // The engine runs it with the key as its credential.
            assert!(c.engine().status().iter().any(|s| s.key == saved.key));
            // Forwarded twice is refused.
            assert!(
                c.forward_here(&alice(), "alice.shop", &url, "http://127.0.0.1:9/x")
                    .is_err()
            );

            // Editing keeps the credential and the URL; the name and cloud cannot change.
            let mut edit = ChannelInput {
                key: Some(saved.key.clone()),
                cloud_url: CLOUD.into(),
                channel: "alice.shop".into(),
                protocol: "websocket".into(),
                default_target: Some("http://127.0.0.1:9/other".into()),
                targets: BTreeMap::new(),
                token: None,
                admin_token: None,
            };
            let edited = c.save_channel(edit.clone()).unwrap();
            assert!(edited.self_service && edited.has_token);
            assert_eq!(edited.webhook_url, url);
            assert_eq!(
                edited.default_target.as_deref(),
                Some("http://127.0.0.1:9/other")
            );
            assert_eq!(keyring.accounts()?, vec![format!("api-key:{CLOUD}")]);
            edit.channel = "alice.renamed".into();
            assert_eq!(c.save_channel(edit).unwrap_err().code(), "invalid_input");

            // Signed out: the key is gone, the channel stays but stops (it has no credential).
            c.sign_out(CLOUD).await.unwrap();
            assert!(keyring.accounts()?.is_empty());
            assert!(c.accounts().is_empty());
            assert!(!c.engine().status().iter().any(|s| s.key == saved.key));
            let snap = c.snapshot();
            assert!(
                snap.channels[0]
                    .last_error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("sign in")
            );
            assert!(!c.list_channels()[0].has_token);
            // Signed in again: it starts with the key.
            c.remember_account(CLOUD, KEY, "acc_0123456789abcdef", "alice")
                .unwrap();
            assert!(c.engine().status().iter().any(|s| s.key == saved.key));
            // Removing the channel here leaves the account's key alone.
            c.remove_channel(&saved.key, false).await.unwrap();
            assert_eq!(
                keyring.lookup(&format!("api-key:{CLOUD}"))?.as_deref(),
                Some(KEY)
            );
            assert_eq!(store.unavailable(), None);
            c.shutdown().await;
            Ok(())
        })
    }

    #[tokio::test]
    async fn self_service_calls_without_an_account_or_with_bad_input_are_refused_before_any_request()
     {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = core(&dir);
        let new = |name: &str, target: &str| NewChannelInput {
            cloud_url: CLOUD.into(),
            name: name.into(),
            target_url: target.into(),
            verify: None,
        };
        assert_eq!(
            c.create_channel(new("shop", "http://127.0.0.1:9/h"))
                .await
                .unwrap_err()
                .code(),
            "not_signed_in"
        );
        // No key typed and none stored: refused before any request.
        let no_key = SignInInput {
            cloud_url: CLOUD.into(),
            api_key: "  ".into(),
        };
        assert_eq!(c.sign_in(no_key).await.unwrap_err().code(), "invalid_input");
        c.remember_account(CLOUD, KEY, "acc_0123456789abcdef", "alice")
            .unwrap();
        for (name, target) in [
            ("Shop", "http://x/"),
            ("shop.dev", "http://x/"),
            ("shop", "ftp://x/"),
            ("shop", ""),
        ] {
            assert_eq!(
                c.create_channel(new(name, target))
                    .await
                    .unwrap_err()
                    .code(),
                "invalid_input",
                "{name} {target}"
            );
        }
        let bad_url = SignInInput {
            cloud_url: "not a url".into(),
            api_key: KEY.into(),
        };
        assert_eq!(
            c.sign_in(bad_url).await.unwrap_err().code(),
            "invalid_input"
        );
        // Signed in (a key is stored): an empty key means that one, checked at the cloud.
        let stored_key = SignInInput {
            cloud_url: CLOUD.into(),
            api_key: "  ".into(),
        };
        assert_eq!(c.sign_in(stored_key).await.unwrap_err().code(), "network");
        let bad_name = CreateAccountInput {
            cloud_url: CLOUD.into(),
            name: Some("A".into()),
        };
        assert_eq!(
            c.create_account(bad_name).await.unwrap_err().code(),
            "invalid_input"
        );
        // Nothing listens on port 9: a network failure, told as such.
        assert_eq!(
            c.remote_channels(CLOUD).await.unwrap_err().code(),
            "network"
        );
        // A token channel has nothing to delete at a cloud.
        let saved = c
            .save_channel(ChannelInput {
                key: None,
                cloud_url: CLOUD.into(),
                channel: "plain".into(),
                protocol: "auto".into(),
                default_target: Some("http://127.0.0.1:9/h".into()),
                targets: BTreeMap::new(),
                token: Some("tok".into()),
                admin_token: None,
            })
            .unwrap();
        assert!(!saved.self_service);
        assert_eq!(
            c.remove_channel(&saved.key, true).await.unwrap_err().code(),
            "invalid_input"
        );
        assert_eq!(
            c.list_channels().len(),
            1,
            "nothing removed when the cloud part failed"
        );
        c.shutdown().await;
    }

    #[test]
    fn sign_in_input_never_prints_its_key() {
        let s = SignInInput {
            cloud_url: CLOUD.into(),
            api_key: KEY.into(),
        };
        assert!(!format!("{s:?}").contains(KEY));
    }
}
