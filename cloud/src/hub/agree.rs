//! Replica agreement: a token rotation, a channel registered or deleted, or a configured
//! token change made through another replica sharing the buffer holds here at the next
//! request, not at the next periodic re-read ([`Hub::sync_shared`], every second).
//!
//! Two mechanisms, both only with a shared buffer:
//! - read-through on a miss: before a presented token is refused, this replica re-reads the
//!   channel's stored state and checks again ([`Hub::authenticate_fresh`]); a token made
//!   valid elsewhere (rotated, configured, a channel just created) is accepted at once. A
//!   valid token costs nothing extra; a refused one costs one Redis read.
//! - published changes: the buffer tells every replica which channel changed
//!   ([`connect_buffer::Buffer::channel_changes`]) and each re-reads it
//!   ([`Hub::refresh_channel`]), so a revoked token stops working and its connections are
//!   closed as soon as the message arrives; the periodic re-read covers a lost message. An
//!   account's key rotated (or the account disabled) elsewhere is published for each of its
//!   channels, and [`Hub::recheck_owner_key`] closes the connections the old key opened here.

use std::sync::Arc;

use connect_protocol::admin::TokenGeneration;

use crate::hub::Hub;
use crate::hub::channel::ChannelRt;

impl Hub {
    /// [`Hub::authenticate`], re-reading the channel's stored state before refusing.
    pub async fn authenticate_fresh(
        &self,
        channel: &str,
        token: &str,
    ) -> Option<(Arc<ChannelRt>, String, TokenGeneration)> {
        if let Some(ok) = self.authenticate(channel, token) {
            return Some(ok);
        }
        if !self.buffer.is_shared() {
            return None;
        }
        // A channel missing from the store is left alone here: after Redis lost its data the
        // channels are registered again, and a wrong token must not close anything.
        self.refresh_channel(channel, false).await;
        self.authenticate(channel, token)
    }

    /// Re-reads one channel's stored state and applies it: token state (closing connections
    /// whose token is no longer valid), settings, a channel this replica did not hold yet;
    /// with `remove_missing`, a channel gone from the store is removed here too.
    pub async fn refresh_channel(&self, name: &str, remove_missing: bool) {
        match self.buffer.channel(name).await {
            Ok(Some(rec)) => {
                self.upsert_channel(&rec);
                if let Some(rt) = self.channel(name) {
                    self.recheck_owner_key(&rt).await;
                }
            }
            Ok(None) => {
                if remove_missing && self.channel(name).is_some() {
                    tracing::info!(channel = %name, "channel deleted on another replica");
                    self.remove_channel(name);
                }
            }
            Err(e) => {
                tracing::debug!(channel = %name, error = %e, "re-reading a channel failed");
            }
        }
    }

    /// A self-service channel accepting its owner's API key: re-reads the owner's account and,
    /// when the key was rotated elsewhere or the account was disabled or deleted, stops
    /// accepting the key and closes the connections it opened (4005, like a revoked token).
    /// Costs two reads, only for channels with a key in use here.
    pub async fn recheck_owner_key(&self, rt: &Arc<ChannelRt>) {
        let Some(held) = rt.owner_key() else {
            return;
        };
        let still_valid = match self.buffer.hosted_channel(rt.name()).await {
            Ok(Some(c)) => match self.buffer.account(&c.account_id).await {
                Ok(Some(a)) => !a.disabled && a.key_digest == held,
                Ok(None) => false,
                Err(_) => return,
            },
            Ok(None) => false,
            Err(_) => return,
        };
        if !still_valid {
            tracing::info!(channel = %rt.name(), "owner key rotated or account disabled on another replica; its connections are closed");
            rt.set_owner_key(None);
            self.enforce_tokens(rt);
        }
    }
}
