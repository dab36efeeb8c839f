//! Accounts: creation (admin, or open sign-up under its per-IP limit and the account cap),
//! updates, key rotation, deletion with every channel, and API-key authentication.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use connect_buffer::{AccountRecord, Created};
use connect_protocol::hosted::{
    Account, AccountCreated, AccountDeleted, KeyRotated, Quota, QuotaPatch, SelfServiceMode,
    UpdateAccountRequest, is_valid_account_name,
};
use connect_protocol::ids::token_digest;
use connect_protocol::time::Timestamp;

use crate::hosted::keys::{looks_like_api_key, new_account_id, new_account_name, new_api_key};
use crate::hosted::{Hosted, HostedError, HostedResult, signup};

const HOUR: Duration = Duration::from_secs(3600);

/// `base` with the fields of `patch` that are set, each checked (422 names the field).
pub fn apply_quota(base: Quota, patch: &QuotaPatch, max_body_cap: u64) -> HostedResult<Quota> {
    let positive = |name: &str, v: Option<u64>, cur: u64| match v {
        Some(0) => Err(HostedError::Invalid(format!(
            "quota.{name}: must be at least 1"
        ))),
        Some(v) => Ok(v),
        None => Ok(cur),
    };
    let q = Quota {
        max_channels: patch.max_channels.unwrap_or(base.max_channels),
        max_queue_size: positive("max_queue_size", patch.max_queue_size, base.max_queue_size)?,
        max_body_bytes: positive("max_body_bytes", patch.max_body_bytes, base.max_body_bytes)?,
        ingress_per_second: positive(
            "ingress_per_second",
            patch.ingress_per_second,
            base.ingress_per_second,
        )?,
        max_ttl_seconds: positive(
            "max_ttl_seconds",
            patch.max_ttl_seconds,
            base.max_ttl_seconds,
        )?,
    };
    if q.max_body_bytes > max_body_cap {
        return Err(HostedError::Invalid(format!(
            "quota.max_body_bytes: {} is above the cloud's cap WEBHOOK_CONNECT_MAX_BODY_BYTES = {max_body_cap}",
            q.max_body_bytes
        )));
    }
    if q.ingress_per_second > 1_000_000 {
        return Err(HostedError::Invalid(
            "quota.ingress_per_second: must be at most 1000000".into(),
        ));
    }
    Ok(q)
}

impl Hosted {
    /// Creates an account with a new key (admin API, or [`Hosted::sign_up`]).
    pub async fn create_account(
        &self,
        name: &str,
        quota: Option<&QuotaPatch>,
    ) -> HostedResult<AccountCreated> {
        if !is_valid_account_name(name) {
            return Err(HostedError::Invalid(
                "name: must match ^[a-z0-9][a-z0-9-]{1,31}$".into(),
            ));
        }
        let quota = apply_quota(
            self.settings().default_quota(),
            quota.unwrap_or(&QuotaPatch::default()),
            self.rt.settings().max_body_bytes,
        )?;
        let key = new_api_key();
        let rec = AccountRecord {
            account_id: new_account_id(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
            disabled: false,
            quota,
            key_digest: token_digest(&key),
        };
        // The cap is checked by the store in the same atomic step as the create.
        match self
            .buffer()
            .create_account(&rec, self.settings().max_accounts)
            .await?
        {
            Created::Full => Err(HostedError::Capacity),
            Created::Taken => Err(HostedError::NameTaken(format!(
                "account name '{name}' is taken"
            ))),
            Created::Created => {
                tracing::info!(account = %rec.account_id, name = %rec.name, "account created");
                Ok(AccountCreated {
                    account: self.account_view(&rec).await?,
                    api_key: key,
                })
            }
        }
    }

    /// `POST /api/v1/accounts` (open mode): the name is checked, then the per-IP limit, then
    /// the account is created (a generated name when none is given).
    pub async fn sign_up(&self, ip: IpAddr, name: Option<&str>) -> HostedResult<AccountCreated> {
        if self.mode() != SelfServiceMode::Open {
            return Err(HostedError::SignUpDisabled);
        }
        if let Some(n) = name
            && !is_valid_account_name(n)
        {
            return Err(HostedError::Invalid(
                "name: must match ^[a-z0-9][a-z0-9-]{1,31}$".into(),
            ));
        }
        self.check_signup_limit(ip).await?;
        match name {
            Some(n) => self.create_account(n, None).await,
            None => {
                // A generated name colliding is astronomically rare; try a few.
                let mut last = None;
                for _ in 0..4 {
                    match self.create_account(&new_account_name(), None).await {
                        Err(HostedError::NameTaken(e)) => last = Some(e),
                        other => return other,
                    }
                }
                Err(HostedError::NameTaken(last.unwrap_or_default()))
            }
        }
    }

    /// Counts one sign-up of `ip` (its IPv4 address or IPv6 /64, see [`signup`]); shared by
    /// every replica when the buffer is.
    async fn check_signup_limit(&self, ip: IpAddr) -> HostedResult<()> {
        let max = self.settings().signup_per_ip_per_hour;
        let key = signup::client_key(ip);
        let shared = self
            .buffer()
            .rate_limit(&key, max, HOUR)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "shared sign-up limit unavailable; using the local window");
                None
            });
        let verdict =
            shared.unwrap_or_else(|| self.signups.lock().check(ip, max, HOUR, Instant::now()));
        verdict.map_err(HostedError::RateLimited)
    }

    /// The account of a presented API key. Unknown, revoked or malformed key and disabled
    /// account are the same [`HostedError::Unauthorized`].
    pub async fn authenticate_key(&self, token: Option<&str>) -> HostedResult<AccountRecord> {
        let token = token.unwrap_or("");
        let digest = token_digest(token);
        if !looks_like_api_key(token) {
            return Err(HostedError::Unauthorized);
        }
        match self.buffer().account_by_key(&digest).await? {
            Some(a) if !a.disabled => Ok(a),
            _ => Err(HostedError::Unauthorized),
        }
    }

    pub async fn account_record(&self, id: &str) -> HostedResult<AccountRecord> {
        self.buffer()
            .account(id)
            .await?
            .ok_or(HostedError::AccountNotFound)
    }

    pub async fn list_accounts(&self) -> HostedResult<Vec<Account>> {
        let mut out = Vec::new();
        for a in self.buffer().accounts().await? {
            out.push(self.account_view(&a).await?);
        }
        Ok(out)
    }

    /// `PATCH /admin/…/accounts/{id}`: quota and `disabled`. Disabling closes the
    /// connections its key opened on this replica.
    pub async fn update_account(
        &self,
        id: &str,
        req: &UpdateAccountRequest,
    ) -> HostedResult<Account> {
        let mut a = self.account_record(id).await?;
        if let Some(q) = &req.quota {
            a.quota = apply_quota(a.quota, q, self.rt.settings().max_body_bytes)?;
        }
        if let Some(d) = req.disabled {
            a.disabled = d;
        }
        if !self.buffer().put_account(&a).await? {
            return Err(HostedError::AccountNotFound);
        }
        if a.disabled {
            self.forget_key(&a).await?;
        }
        self.account_view(&a).await
    }

    /// A new key; the old one stops working at once (and its connections are closed here).
    pub async fn rotate_key(&self, id: &str) -> HostedResult<KeyRotated> {
        let mut a = self.account_record(id).await?;
        let key = new_api_key();
        a.key_digest = token_digest(&key);
        if !self.buffer().put_account(&a).await? {
            return Err(HostedError::AccountNotFound);
        }
        self.forget_key(&a).await?;
        tracing::info!(account = %a.account_id, "account key rotated");
        Ok(KeyRotated {
            account_id: a.account_id,
            api_key: key,
        })
    }

    /// Stops accepting the account's previous key on its channels' live connections.
    async fn forget_key(&self, a: &AccountRecord) -> HostedResult<()> {
        for c in self.buffer().account_channels(&a.account_id).await? {
            if let Some(rt) = self.rt.hub().channel(&c.channel) {
                rt.set_owner_key(None);
                self.rt.hub().enforce_tokens(&rt);
            }
        }
        Ok(())
    }

    /// Deletes the account and every channel it owns (§3 deletion rules for each).
    pub async fn delete_account(&self, id: &str) -> HostedResult<AccountDeleted> {
        let a = self.account_record(id).await?;
        let mut n = 0;
        for c in self.buffer().account_channels(&a.account_id).await? {
            self.remove_channel(&c).await?;
            n += 1;
        }
        if !self.buffer().delete_account(id).await? {
            return Err(HostedError::AccountNotFound);
        }
        tracing::info!(account = %id, channels = n, "account deleted");
        Ok(AccountDeleted {
            deleted: id.to_owned(),
            channels_deleted: n,
        })
    }
}
