//! Dead letters of a channel at its cloud: read, replayed, deleted and purged with the cloud's
//! admin token (`admin:<origin>`, PROTOCOL §8.2), or, for a self-service channel, with its
//! account's API key (`/api/v1/channels/{channel}/dead-letters…`, HOSTED.md §3), so that a
//! developer's machine needs no admin token.

use connect_engine::admin::AdminClient;
use connect_engine::hosted::HostedClient;
use connect_protocol::admin::DeadLetterList;

use crate::core::Core;
use crate::error::{CoreError, CoreResult};
use crate::secrets;

impl Core {
    /// The admin client for a channel's cloud (admin token from `admin:<origin>`).
    fn admin(&self, key: &str) -> CoreResult<(AdminClient, String)> {
        let e = self.entry(key)?;
        let account = secrets::admin_account(&e.cloud_url)?;
        let token = self.secrets.get(&account)?.ok_or_else(|| {
            CoreError::NoAdminToken(secrets::origin(&e.cloud_url).unwrap_or_default())
        })?;
        Ok((AdminClient::new(&e.cloud_url, &token)?, e.channel))
    }

    pub async fn list_dead_letters(
        &self,
        key: &str,
        limit: u32,
        offset: u32,
    ) -> CoreResult<DeadLetterList> {
        // A self-service channel's dead letters are read with the account's API key.
        if let Some(list) = self.hosted_dead_letters(key, limit, offset).await? {
            return Ok(list);
        }
        let (c, ch) = self.admin(key)?;
        c.list_dead_letters(&ch, limit, offset)
            .await
            .map_err(CoreError::from)
    }

    pub async fn replay_dead_letter(&self, key: &str, message_id: &str) -> CoreResult<()> {
        let hosted = self
            .hosted_dead_letter_action(key, DeadLetterAction::Replay(message_id))
            .await?;
        if hosted.is_none() {
            let (c, ch) = self.admin(key)?;
            c.replay_dead_letter(&ch, message_id).await?;
        }
        self.dead_letters_changed(key);
        Ok(())
    }

    pub async fn delete_dead_letter(&self, key: &str, message_id: &str) -> CoreResult<()> {
        let hosted = self
            .hosted_dead_letter_action(key, DeadLetterAction::Delete(message_id))
            .await?;
        if hosted.is_none() {
            let (c, ch) = self.admin(key)?;
            c.delete_dead_letter(&ch, message_id).await?;
        }
        self.dead_letters_changed(key);
        Ok(())
    }

    pub async fn purge_dead_letters(&self, key: &str) -> CoreResult<u64> {
        let n = match self
            .hosted_dead_letter_action(key, DeadLetterAction::Purge)
            .await?
        {
            Some(n) => n,
            None => {
                let (c, ch) = self.admin(key)?;
                c.purge_dead_letters(&ch).await?
            }
        };
        self.dead_letters_changed(key);
        Ok(n)
    }

    /// The tray's and the overview's dead-letter count follow at once, not at the next reading.
    fn dead_letters_changed(&self, key: &str) {
        // A channel that is not running has no reading to refresh.
        let _ = self.engine.refresh_queue(key);
    }

    /// The API client and channel name for a self-service channel's dead letters.
    fn dead_letter_api(&self, key: &str) -> CoreResult<Option<(HostedClient, String)>> {
        let e = self.entry(key)?;
        if !e.is_self_service() {
            return Ok(None);
        }
        let (api, _) = self.api(&e.cloud_url)?;
        Ok(Some((api, e.channel)))
    }

    pub(crate) async fn hosted_dead_letters(
        &self,
        key: &str,
        limit: u32,
        offset: u32,
    ) -> CoreResult<Option<DeadLetterList>> {
        match self.dead_letter_api(key)? {
            Some((api, ch)) => {
                // The API has no offset: the first `offset + limit` are fetched (as the admin
                // client does) and the first `offset` skipped.
                let want = (limit.max(1) + offset).min(1000);
                let mut list = api.dead_letters(&ch, want, true).await?;
                let skip = (offset as usize).min(list.messages.len());
                list.messages.drain(..skip);
                list.messages.truncate(limit.max(1) as usize);
                list.count = list.messages.len() as u64;
                Ok(Some(list))
            }
            None => Ok(None),
        }
    }

    /// Replay (`Some(id)`, replay), delete (`Some(id)`, delete) or purge (`None`) through the
    /// API key; `None` when the channel is not self-service.
    pub(crate) async fn hosted_dead_letter_action(
        &self,
        key: &str,
        action: DeadLetterAction<'_>,
    ) -> CoreResult<Option<u64>> {
        let Some((api, ch)) = self.dead_letter_api(key)? else {
            return Ok(None);
        };
        let n = match action {
            DeadLetterAction::Replay(id) => api.replay_dead_letter(&ch, id).await.map(|_| 1)?,
            DeadLetterAction::Delete(id) => api.delete_dead_letter(&ch, id).await.map(|_| 1)?,
            DeadLetterAction::Purge => api.purge_dead_letters(&ch).await?.deleted,
        };
        Ok(Some(n))
    }
}

/// What to do to dead letters through the API key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DeadLetterAction<'a> {
    Replay(&'a str),
    Delete(&'a str),
    Purge,
}
