//! The cloud's self-service API (`/api/v1`, HOSTED.md §2–3) as the app uses it, with the
//! account's API key as the bearer credential. Answers are the protocol crate's types.

use std::time::Duration;

use connect_protocol::admin::{DeadLetterList, PurgeResponse};
use connect_protocol::hosted::{
    Account, AccountCreated, ChannelCreated, ChannelDeleted, CreateChannelRequest,
    HostedChannelList, SignUpRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call to `/api/v1` failed. Never carries the key.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the cloud could not be reached: {0}")]
    Unreachable(String),
    /// An error answer: the status, the cloud's machine `code` when it sent one, its `detail`.
    #[error("the cloud answered HTTP {status}: {detail}")]
    Status {
        status: u16,
        code: Option<String>,
        detail: String,
    },
    #[error("the cloud's answer could not be read: {0}")]
    Answer(String),
}

impl ApiError {
    /// The stable machine code of the IPC error (see `error.rs`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "network",
            Self::Answer(_) => "cloud_error",
            Self::Status { status, code, .. } => match (status, code.as_deref()) {
                (401, _) => "api_key_rejected",
                (403, Some("quota_exceeded")) => "quota_exceeded",
                (403, _) => "forbidden",
                (404, _) => "not_found",
                (409, _) => "name_taken",
                (422, _) => "invalid_input",
                (429, _) => "rate_limited",
                (503, Some("capacity")) => "capacity",
                _ => "cloud_error",
            },
        }
    }

    /// What the user reads.
    pub fn user_message(&self) -> String {
        match self {
            Self::Status { status: 401, .. } => {
                "The cloud refused this API key (unknown, revoked, or the account is disabled)."
                    .into()
            }
            Self::Status {
                status: 403,
                code: Some(c),
                detail,
            } if c == "quota_exceeded" => format!("Your account is at its quota: {detail}"),
            Self::Status {
                status: 403,
                detail,
                ..
            } => format!("The cloud does not allow this: {detail}"),
            Self::Status {
                status: 404,
                detail,
                ..
            } => format!("Not found at the cloud (is self-service on?): {detail}"),
            Self::Status {
                status: 409,
                detail,
                ..
            } => format!("That name is taken: {detail}"),
            other => other.to_string(),
        }
    }
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A client of one cloud's `/api/v1`, with or without an API key.
#[derive(Clone)]
pub struct HostedApi {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for HostedApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HostedApi {
    pub fn new(cloud_url: &str, key: Option<&str>) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ApiError::Unreachable(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: format!("{}/api/v1", cloud_url.trim().trim_end_matches('/')),
            key: key.map(str::to_owned),
            http,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiError> {
        let mut rq = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            rq = rq.bearer_auth(k);
        }
        if let Some(b) = body {
            rq = rq.json(b);
        }
        let resp = rq
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            let v = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
            let detail = v["detail"]
                .as_str()
                .or(v["message"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(ApiError::Status {
                status,
                code: v["code"].as_str().map(str::to_owned),
                detail,
            });
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Answer(e.to_string()))
    }

    /// `GET /api/v1/account`: checks the key.
    pub async fn account(&self) -> Result<Account, ApiError> {
        self.call(reqwest::Method::GET, "/account", None::<&()>)
            .await
    }

    /// `POST /api/v1/accounts` (an `open` cloud).
    pub async fn sign_up(&self, name: Option<&str>) -> Result<AccountCreated, ApiError> {
        let body = SignUpRequest {
            name: name.map(str::to_owned),
        };
        self.call(reqwest::Method::POST, "/accounts", Some(&body))
            .await
    }

    pub async fn list_channels(&self) -> Result<HostedChannelList, ApiError> {
        self.call(reqwest::Method::GET, "/channels", None::<&()>)
            .await
    }

    pub async fn create_channel(
        &self,
        req: &CreateChannelRequest,
    ) -> Result<ChannelCreated, ApiError> {
        self.call(reqwest::Method::POST, "/channels", Some(req))
            .await
    }

    pub async fn delete_channel(&self, channel: &str) -> Result<ChannelDeleted, ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/channels/{}", seg(channel)),
            None::<&()>,
        )
        .await
    }

    /// Newest first, bodies included; the first `offset` skipped (as the admin client does).
    pub async fn list_dead_letters(
        &self,
        channel: &str,
        limit: u32,
        offset: u32,
    ) -> Result<DeadLetterList, ApiError> {
        let want = (limit.max(1) + offset).min(1000);
        let mut list: DeadLetterList = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/channels/{}/dead-letters?limit={want}&include_body=true",
                    seg(channel)
                ),
                None::<&()>,
            )
            .await?;
        let skip = (offset as usize).min(list.messages.len());
        list.messages.drain(..skip);
        list.messages.truncate(limit.max(1) as usize);
        list.count = list.messages.len() as u64;
        Ok(list)
    }

    pub async fn replay_dead_letter(&self, channel: &str, id: &str) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(
            reqwest::Method::POST,
            &format!("/channels/{}/dead-letters/{}/replay", seg(channel), seg(id)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_dead_letter(&self, channel: &str, id: &str) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("/channels/{}/dead-letters/{}", seg(channel), seg(id)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    pub async fn purge_dead_letters(&self, channel: &str) -> Result<u64, ApiError> {
        let r: PurgeResponse = self
            .call(
                reqwest::Method::DELETE,
                &format!("/channels/{}/dead-letters", seg(channel)),
                None::<&()>,
            )
            .await?;
        Ok(r.deleted)
    }
}
