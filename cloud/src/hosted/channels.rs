//! Channels owned by an account (HOSTED.md §3): `<account>.<name>`, one webhook with an
//! unguessable id, a channel token returned once, settings within the account's quota.
//! Each is also an ordinary buffer channel, registered like a configured one, so ingress,
//! dispatch and every connector endpoint treat both alike.

use std::sync::Arc;

use connect_buffer::{
    AccountRecord, ChannelRegistration, ChannelSettings, Created, HostedChannelRecord,
};
use connect_protocol::hosted::{
    ChannelCreated, ChannelDeleted, CreateChannelRequest, HostedChannel, HostedChannelDetail,
    HostedChannelSettings, HostedChannelStats, UpdateChannelRequest, VerifySpec, VerifyView,
    channel_full_name, is_valid_channel_short_name,
};
use connect_protocol::ids::{is_valid_channel_name, new_channel_token, token_digest};
use connect_protocol::time::Timestamp;

use crate::hosted::definition::compile;
use crate::hosted::keys::{looks_like_api_key, new_webhook_id};
use crate::hosted::{Hosted, HostedError, HostedResult};
use crate::hub::channel::ChannelRt;
use crate::stats::channel_stats;

/// Default `ttl_seconds` when a request gives none (capped by the account's quota).
const DEFAULT_TTL: u64 = 86_400;
const DEFAULT_ATTEMPTS: u32 = 10;
const MAX_DESCRIPTION: usize = 500;
const MAX_SECRET: usize = 1024;

fn over_cap(field: &str, value: u64, cap_name: &str, cap: u64) -> HostedError {
    HostedError::Invalid(format!(
        "{field}: {value} is above the account's cap {cap_name} = {cap}"
    ))
}

/// Checks a channel record against its account's quota and the definition ingress will run.
pub fn check_settings(rec: &HostedChannelRecord, a: &AccountRecord) -> HostedResult<()> {
    let q = &a.quota;
    if rec.ttl_seconds == 0 {
        return Err(HostedError::Invalid(
            "ttl_seconds: must be at least 1".into(),
        ));
    }
    if rec.ttl_seconds > q.max_ttl_seconds {
        return Err(over_cap(
            "ttl_seconds",
            rec.ttl_seconds,
            "max_ttl_seconds",
            q.max_ttl_seconds,
        ));
    }
    if rec.max_queue_size == 0 {
        return Err(HostedError::Invalid(
            "max_queue_size: must be at least 1".into(),
        ));
    }
    if rec.max_queue_size > q.max_queue_size {
        return Err(over_cap(
            "max_queue_size",
            rec.max_queue_size,
            "max_queue_size",
            q.max_queue_size,
        ));
    }
    if !(1..=1000).contains(&rec.max_delivery_attempts) {
        return Err(HostedError::Invalid(
            "max_delivery_attempts: must be between 1 and 1000".into(),
        ));
    }
    if rec
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control))
    {
        return Err(HostedError::Invalid(format!(
            "description: at most {MAX_DESCRIPTION} characters, no control characters"
        )));
    }
    if let Some(v) = &rec.verify {
        check_verify(v)?;
    }
    // The definition ingress will run must build (e.g. a standard-webhooks secret that is
    // not base64 is refused here, not at the first webhook).
    compile(rec, q).map_err(|e| HostedError::Invalid(format!("verify: {e}")))?;
    Ok(())
}

fn check_verify(v: &VerifySpec) -> HostedResult<()> {
    if v.secret.is_empty() || v.secret.len() > MAX_SECRET {
        return Err(HostedError::Invalid(format!(
            "verify.secret: required, at most {MAX_SECRET} bytes"
        )));
    }
    if let Some(h) = &v.header
        && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        return Err(HostedError::Invalid(
            "verify.header: not a header name".into(),
        ));
    }
    Ok(())
}

fn verify_view(v: &Option<VerifySpec>) -> Option<VerifyView> {
    v.as_ref().map(|v| VerifyView {
        preset: v.preset,
        secret_set: !v.secret.is_empty(),
        header: v.header.clone(),
    })
}

impl Hosted {
    fn settings_view(&self, rec: &HostedChannelRecord, a: &AccountRecord) -> HostedChannelSettings {
        HostedChannelSettings {
            ttl_seconds: rec.ttl_seconds,
            max_queue_size: rec.max_queue_size,
            max_delivery_attempts: rec.max_delivery_attempts,
            max_body_bytes: a
                .quota
                .max_body_bytes
                .min(self.rt.settings().max_body_bytes),
            ingress_per_second: a.quota.ingress_per_second,
            verify: verify_view(&rec.verify),
        }
    }

    /// Registers (or updates) the buffer channel of `rec` and this replica's view of it.
    /// `token_digest` is the digest of the token given at creation: the "configured" token
    /// of the channel, so rotations are kept across updates (§7).
    async fn register(&self, rec: &HostedChannelRecord, token_digest: String) -> HostedResult<()> {
        let reg = ChannelRegistration {
            name: rec.channel.clone(),
            settings: ChannelSettings {
                max_queue_size: rec.max_queue_size,
                max_queue_bytes: self.rt.settings().max_queue_bytes,
                max_delivery_attempts: rec.max_delivery_attempts,
                ttl_seconds: rec.ttl_seconds,
                ..ChannelSettings::default()
            },
            configured_token_digest: token_digest,
            owner: rec.webhook_id.clone(),
            webhook_ids: vec![rec.webhook_id.clone()],
        };
        let r = self.buffer().register_channel(reg).await?;
        self.rt.hub().upsert_channel(&r.record);
        Ok(())
    }

    /// `POST /api/v1/channels`.
    pub async fn create_channel(
        &self,
        a: &AccountRecord,
        req: &CreateChannelRequest,
    ) -> HostedResult<ChannelCreated> {
        if !is_valid_channel_short_name(&req.name) {
            return Err(HostedError::Invalid(
                "name: must match ^[a-z0-9][a-z0-9-]{0,39}$".into(),
            ));
        }
        let full = channel_full_name(&a.name, &req.name);
        if !is_valid_channel_name(&full) {
            return Err(HostedError::Invalid(
                "name: not a valid channel name".into(),
            ));
        }
        let now = Timestamp::now();
        let mut rec = HostedChannelRecord {
            channel: full.clone(),
            account_id: a.account_id.clone(),
            webhook_id: new_webhook_id(),
            created_at: now,
            updated_at: now,
            description: req.description.clone(),
            verify: req.verify.clone(),
            ttl_seconds: req
                .ttl_seconds
                .unwrap_or(DEFAULT_TTL.min(a.quota.max_ttl_seconds)),
            max_queue_size: req.max_queue_size.unwrap_or(a.quota.max_queue_size),
            max_delivery_attempts: req.max_delivery_attempts.unwrap_or(DEFAULT_ATTEMPTS),
        };
        check_settings(&rec, a)?;
        let taken = || HostedError::NameTaken(format!("channel '{full}' already exists"));
        if self.configured_channel(&full) || self.buffer().channel(&full).await?.is_some() {
            return Err(taken());
        }
        while self.configured_webhook(&rec.webhook_id) {
            rec.webhook_id = new_webhook_id();
        }
        let token = new_channel_token();
        // The store checks max_channels and creates in one atomic step (concurrent creates,
        // other replicas), so the quota cannot be passed by a few.
        match self
            .buffer()
            .create_hosted_channel(&rec, a.quota.max_channels)
            .await?
        {
            Created::Created => {}
            Created::Taken => return Err(taken()),
            Created::Full => {
                return Err(HostedError::QuotaExceeded(format!(
                    "the account has reached its quota max_channels = {}",
                    a.quota.max_channels
                )));
            }
        }
        if let Err(e) = self.register(&rec, token_digest(&token)).await {
            // Do not leave a record whose channel does not exist.
            let _ = self.buffer().delete_hosted_channel(&full).await;
            return Err(e);
        }
        tracing::info!(channel = %full, account = %a.account_id, "self-service channel created");
        Ok(ChannelCreated {
            channel: full,
            webhook_url: self.webhook_url(&rec.webhook_id),
            webhook_id: rec.webhook_id.clone(),
            channel_token: token,
            created_at: rec.created_at,
            description: rec.description.clone(),
            settings: self.settings_view(&rec, a),
        })
    }

    fn configured_channel(&self, name: &str) -> bool {
        self.rt
            .config()
            .is_some_and(|c| c.webhooks.channels().contains_key(name))
    }

    fn configured_webhook(&self, id: &str) -> bool {
        self.rt
            .config()
            .is_some_and(|c| c.webhooks.webhooks().any(|w| w.id == id))
    }

    /// The account's channel `name`; another account's or a configured one is
    /// [`HostedError::NotFound`], like a missing one.
    pub async fn owned(&self, a: &AccountRecord, name: &str) -> HostedResult<HostedChannelRecord> {
        match self.buffer().hosted_channel(name).await? {
            Some(c) if c.account_id == a.account_id => Ok(c),
            _ => Err(HostedError::NotFound),
        }
    }

    async fn item(&self, rec: &HostedChannelRecord) -> HostedResult<HostedChannel> {
        let s = channel_stats(self.rt.hub(), &rec.channel).await?;
        Ok(HostedChannel {
            channel: rec.channel.clone(),
            webhook_id: rec.webhook_id.clone(),
            webhook_url: self.webhook_url(&rec.webhook_id),
            created_at: rec.created_at,
            description: rec.description.clone(),
            stats: HostedChannelStats {
                messages_queued: s.messages_queued,
                messages_in_flight: s.messages_in_flight,
                dead_letters: s.dead_letters,
                connected_clients: s.connected_clients,
                messages_received: s.messages_received,
                messages_acked: s.messages_acked,
            },
        })
    }

    /// `GET /api/v1/channels`.
    pub async fn list_channels(&self, a: &AccountRecord) -> HostedResult<Vec<HostedChannel>> {
        let mut out = Vec::new();
        for rec in self.buffer().account_channels(&a.account_id).await? {
            out.push(self.item(&rec).await?);
        }
        Ok(out)
    }

    /// `GET /api/v1/channels/{channel}`.
    pub async fn channel_detail(
        &self,
        a: &AccountRecord,
        name: &str,
    ) -> HostedResult<HostedChannelDetail> {
        let rec = self.owned(a, name).await?;
        self.detail(&rec, a).await
    }

    async fn detail(
        &self,
        rec: &HostedChannelRecord,
        a: &AccountRecord,
    ) -> HostedResult<HostedChannelDetail> {
        let connected_clients = self
            .rt
            .hub()
            .channel(&rec.channel)
            .map(|rt| {
                let cur = rt.current_token_digest();
                rt.connections().iter().map(|c| c.info(&cur)).collect()
            })
            .unwrap_or_default();
        Ok(HostedChannelDetail {
            channel: self.item(rec).await?,
            settings: self.settings_view(rec, a),
            connected_clients,
        })
    }

    /// `PATCH /api/v1/channels/{channel}`: each given field is checked against the quota.
    pub async fn update_channel(
        &self,
        a: &AccountRecord,
        name: &str,
        req: &UpdateChannelRequest,
    ) -> HostedResult<HostedChannelDetail> {
        let old = self.owned(a, name).await?;
        let mut rec = old.clone();
        if let Some(v) = &req.verify {
            rec.verify = v.clone();
        }
        if let Some(v) = req.ttl_seconds {
            rec.ttl_seconds = v;
        }
        if let Some(v) = req.max_queue_size {
            rec.max_queue_size = v;
        }
        if let Some(v) = req.max_delivery_attempts {
            rec.max_delivery_attempts = v;
        }
        if let Some(d) = &req.description {
            rec.description = Some(d.clone());
        }
        check_settings(&rec, a)?;
        rec.updated_at = Timestamp::now();
        if !self.buffer().put_hosted_channel(&rec).await? {
            return Err(HostedError::NotFound);
        }
        let configured = self
            .buffer()
            .channel(&rec.channel)
            .await?
            .map(|c| c.token.configured_digest)
            .ok_or(HostedError::NotFound)?;
        self.register(&rec, configured).await?;
        self.detail(&rec, a).await
    }

    /// `DELETE /api/v1/channels/{channel}`.
    pub async fn delete_channel(
        &self,
        a: &AccountRecord,
        name: &str,
    ) -> HostedResult<ChannelDeleted> {
        let rec = self.owned(a, name).await?;
        let n = self.remove_channel(&rec).await?;
        Ok(ChannelDeleted {
            deleted: rec.channel,
            messages_discarded: n,
        })
    }

    /// Deletes a self-service channel: the record first (ingress answers 404 on every
    /// replica from then on), then the buffer channel and its messages; live connections
    /// are closed with 4006 (here at once, elsewhere when the deletion is published).
    pub(crate) async fn remove_channel(&self, rec: &HostedChannelRecord) -> HostedResult<u64> {
        self.buffer().delete_hosted_channel(&rec.channel).await?;
        self.compiled.forget(&rec.webhook_id);
        let n = self.buffer().delete_channel(&rec.channel).await?;
        self.rt.hub().remove_channel(&rec.channel);
        if n > 0 {
            // The one series a deleted channel keeps: what its deletion discarded.
            self.rt
                .metrics()
                .discarded(&rec.channel, "channel_deleted", n);
        }
        tracing::info!(channel = %rec.channel, discarded = n, "self-service channel deleted");
        Ok(n)
    }

    /// Connector authentication with an API key (HOSTED.md §3), decided by the store (so a
    /// key rotated through another replica is refused here at once). `None`: `token` is not
    /// an API key or `channel` is not self-service — channel tokens decide. `Some(None)`:
    /// refused (another account's key, a revoked key, a disabled account); a connection this
    /// replica accepted with that key is closed.
    pub async fn connector_key(
        &self,
        channel: &str,
        token: &str,
    ) -> Option<Option<(Arc<ChannelRt>, String)>> {
        if !looks_like_api_key(token) {
            return None;
        }
        let rec = self.buffer().hosted_channel(channel).await.ok()??;
        let hub = self.rt.hub();
        let account = self.authenticate_key(Some(token)).await.ok();
        let Some(a) = account.filter(|a| a.account_id == rec.account_id) else {
            if let Some(rt) = hub.channel(channel)
                && rt.owner_key_is(&token_digest(token))
            {
                rt.set_owner_key(None);
                hub.enforce_tokens(&rt);
            }
            return Some(None);
        };
        if hub.channel(channel).is_none() {
            hub.refresh_channel(channel, false).await;
        }
        let Some(rt) = hub.channel(channel) else {
            return Some(None);
        };
        if !rt.owner_key_is(&a.key_digest) {
            rt.set_owner_key(Some(a.key_digest.clone()));
            // Connections of a key replaced elsewhere end here.
            hub.enforce_tokens(&rt);
        }
        Some(Some((rt, a.key_digest)))
    }
}
