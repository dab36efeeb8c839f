//! A client of the cloud's admin API (PROTOCOL.md §8) for what the desktop app shows: the
//! channel's dead letters, with replay, delete and purge.

use std::time::Duration;

use connect_protocol::admin::{DeadLetterList, PurgeResponse};
use serde::de::DeserializeOwned;

use crate::EngineError;

/// Admin API client for one cloud.
#[derive(Clone, Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl AdminClient {
    pub fn new(cloud_url: &str, admin_token: &str) -> Result<Self, EngineError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| EngineError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: format!("{}/admin/webhook-connect", cloud_url.trim_end_matches('/')),
            token: admin_token.to_owned(),
            http,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, EngineError> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| EngineError::AdminUnreachable(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| EngineError::AdminUnreachable(e.to_string()))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v["message"]
                        .as_str()
                        .or(v["error"].as_str())
                        .map(str::to_owned)
                })
                .unwrap_or(text);
            return Err(match status.as_u16() {
                401 | 403 => EngineError::AdminAuth { status, detail },
                _ => EngineError::AdminStatus { status, detail },
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| EngineError::AdminUnreachable(format!("unexpected answer: {e}")))
    }

    /// Newest first, bodies included. The API has no offset: the first `offset + limit`
    /// (at most 1000) are fetched and the first `offset` skipped.
    pub async fn list_dead_letters(
        &self,
        channel: &str,
        limit: u32,
        offset: u32,
    ) -> Result<DeadLetterList, EngineError> {
        let want = (limit.max(1) + offset).min(1000);
        let mut list: DeadLetterList = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/channels/{}/dead-letters?limit={want}&include_body=true",
                    seg(channel)
                ),
            )
            .await?;
        let skip = (offset as usize).min(list.messages.len());
        list.messages.drain(..skip);
        list.messages.truncate(limit.max(1) as usize);
        list.count = list.messages.len() as u64;
        Ok(list)
    }

    pub async fn replay_dead_letter(&self, channel: &str, id: &str) -> Result<(), EngineError> {
        self.call::<serde_json::Value>(
            reqwest::Method::POST,
            &format!("/channels/{}/dead-letters/{}/replay", seg(channel), seg(id)),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_dead_letter(&self, channel: &str, id: &str) -> Result<(), EngineError> {
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("/channels/{}/dead-letters/{}", seg(channel), seg(id)),
        )
        .await
        .map(|_| ())
    }

    /// Deletes every dead letter of the channel; returns how many.
    pub async fn purge_dead_letters(&self, channel: &str) -> Result<u64, EngineError> {
        let r: PurgeResponse = self
            .call(
                reqwest::Method::DELETE,
                &format!("/channels/{}/dead-letters", seg(channel)),
            )
            .await?;
        Ok(r.deleted)
    }
}
