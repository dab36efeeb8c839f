//! A typed client of the cloud's self-service API (HOSTED.md §2–§3, prefix `/api/v1`): the
//! account, open sign-up, the account's channels and their dead letters, authenticated with the
//! account's API key. Shared by the CLI (`login`, `channels`, `dead-letters`, `listen`) and the
//! desktop app. The HTTP stack is the channels' own ([`CloudHttpOptions`]: TLS, client
//! certificate, proxy), so an API call goes wherever the connector's links go.
//!
//! The key is sent as `Authorization: Bearer`, never in a URL, and never shows in `Debug`
//! output or in errors. [`key_file`] keeps it in a file for machines without an OS keyring.

mod error;
pub mod key_file;

use std::collections::BTreeMap;
use std::time::Duration;

use connect_protocol::admin::{
    BulkReplayResponse, DeadLetterActionResponse, DeadLetterList, MessageList, MessageView,
    PurgeResponse, RotateTokenRequest, RotateTokenResponse,
};
use connect_protocol::hosted::{
    Account, AccountCreated, ChannelCreated, ChannelDeleted, CreateChannelRequest,
    HostedChannelDetail, HostedChannelList, SignUpRequest, UpdateChannelRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::transport::cloud_http::CloudHttpOptions;
pub use error::{HostedError, code_name};

/// How long one API call may take, connection included, unless the options say otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Client of one cloud's `/api/v1`. Cheap to clone.
#[derive(Clone)]
pub struct HostedClient {
    /// The cloud URL without a trailing `/`.
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for HostedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedClient")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `http(s)://host[:port][/base]` of a cloud URL, without a trailing `/`; anything else (another
/// scheme, a query, no host) is refused.
pub fn normalize_cloud_url(cloud_url: &str) -> Result<String, HostedError> {
    let u = reqwest::Url::parse(cloud_url.trim())
        .map_err(|e| HostedError::Setup(format!("cloud URL {cloud_url:?}: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(HostedError::Setup(format!(
            "cloud URL {cloud_url:?}: must be http:// or https://"
        )));
    }
    if u.host_str().is_none() || u.query().is_some() || u.fragment().is_some() {
        return Err(HostedError::Setup(format!(
            "cloud URL {cloud_url:?}: expected http(s)://host[:port][/base]"
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(HostedError::Setup(format!(
            "cloud URL {cloud_url:?}: credentials do not belong in the URL"
        )));
    }
    Ok(u.as_str().trim_end_matches('/').to_owned())
}

impl HostedClient {
    /// A client of `cloud_url`, with `api_key` for every call that needs one.
    pub fn new(
        cloud_url: &str,
        api_key: Option<&str>,
        opts: &CloudHttpOptions,
    ) -> Result<Self, HostedError> {
        let base = normalize_cloud_url(cloud_url)?;
        if let Some(k) = api_key {
            key_file::check_key(k).map_err(HostedError::Setup)?;
        }
        let mut opts = opts.clone();
        opts.request_timeout = opts.request_timeout.or(Some(DEFAULT_REQUEST_TIMEOUT));
        let http = crate::transport::cloud_http::cloud_client(&base, &opts, &BTreeMap::new())
            .map_err(|e| HostedError::Setup(e.to_string()))?;
        Ok(Self {
            base,
            key: api_key.map(str::to_owned),
            http,
        })
    }

    /// The same client with another key.
    pub fn with_key(&self, api_key: &str) -> Result<Self, HostedError> {
        key_file::check_key(api_key).map_err(HostedError::Setup)?;
        Ok(Self {
            key: Some(api_key.to_owned()),
            ..self.clone()
        })
    }

    /// The cloud URL this client talks to (normalized, no trailing `/`).
    pub fn cloud_url(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        authenticated: bool,
    ) -> Result<T, HostedError> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(http::header::ACCEPT, "application/json");
        if authenticated {
            let key = self.key.as_deref().ok_or(HostedError::NoKey)?;
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| HostedError::Network(crate::channel::error_chain(&e)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| HostedError::Network(crate::channel::error_chain(&e)))?;
        if !status.is_success() {
            return Err(HostedError::from_answer(status, &bytes, retry_after));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| HostedError::Unexpected(format!("HTTP {} {path}: {e}", status.as_u16())))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, HostedError> {
        self.call::<(), T>(reqwest::Method::GET, path, None, true)
            .await
    }

    /// `POST /api/v1/accounts` (open sign-up, no key): the account and its key, shown once.
    pub async fn sign_up(&self, req: &SignUpRequest) -> Result<AccountCreated, HostedError> {
        self.call(reqwest::Method::POST, "/accounts", Some(req), false)
            .await
    }

    /// `GET /api/v1/account`: the key's account (a refused key is [`HostedError::Unauthorized`]).
    pub async fn account(&self) -> Result<Account, HostedError> {
        self.get("/account").await
    }

    /// `GET /api/v1/channels`.
    pub async fn channels(&self) -> Result<HostedChannelList, HostedError> {
        self.get("/channels").await
    }

    /// `POST /api/v1/channels` (`name` is the short name).
    pub async fn create_channel(
        &self,
        req: &CreateChannelRequest,
    ) -> Result<ChannelCreated, HostedError> {
        self.call(reqwest::Method::POST, "/channels", Some(req), true)
            .await
    }

    /// `GET /api/v1/channels/{channel}` (`channel` is the full `<account>.<name>`).
    pub async fn channel(&self, channel: &str) -> Result<HostedChannelDetail, HostedError> {
        self.get(&format!("/channels/{}", seg(channel))).await
    }

    /// `PATCH /api/v1/channels/{channel}`.
    pub async fn update_channel(
        &self,
        channel: &str,
        req: &UpdateChannelRequest,
    ) -> Result<HostedChannelDetail, HostedError> {
        self.call(
            reqwest::Method::PATCH,
            &format!("/channels/{}", seg(channel)),
            Some(req),
            true,
        )
        .await
    }

    /// `DELETE /api/v1/channels/{channel}`.
    pub async fn delete_channel(&self, channel: &str) -> Result<ChannelDeleted, HostedError> {
        self.call::<(), _>(
            reqwest::Method::DELETE,
            &format!("/channels/{}", seg(channel)),
            None,
            true,
        )
        .await
    }

    /// `POST /api/v1/channels/{channel}/rotate-token` (PROTOCOL.md §7; default grace 3600 s).
    pub async fn rotate_token(
        &self,
        channel: &str,
        grace_period_seconds: Option<i64>,
    ) -> Result<RotateTokenResponse, HostedError> {
        let body = RotateTokenRequest {
            grace_period_seconds,
        };
        self.call(
            reqwest::Method::POST,
            &format!("/channels/{}/rotate-token", seg(channel)),
            Some(&body),
            true,
        )
        .await
    }

    /// `GET …/dead-letters?limit=N&include_body=…`, newest first (`limit` 1..=1000).
    pub async fn dead_letters(
        &self,
        channel: &str,
        limit: u32,
        include_body: bool,
    ) -> Result<DeadLetterList, HostedError> {
        self.get(&format!(
            "/channels/{}/dead-letters?limit={}&include_body={include_body}",
            seg(channel),
            limit.clamp(1, 1000)
        ))
        .await
    }

    /// `GET …/dead-letters/{id}`, with its body.
    pub async fn dead_letter(&self, channel: &str, id: &str) -> Result<MessageView, HostedError> {
        self.get(&format!(
            "/channels/{}/dead-letters/{}",
            seg(channel),
            seg(id)
        ))
        .await
    }

    /// `POST …/dead-letters/{id}/replay`.
    pub async fn replay_dead_letter(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<DeadLetterActionResponse, HostedError> {
        self.call::<(), _>(
            reqwest::Method::POST,
            &format!("/channels/{}/dead-letters/{}/replay", seg(channel), seg(id)),
            None,
            true,
        )
        .await
    }

    /// `POST …/dead-letters/replay[?limit=N]`: oldest first, all without a limit.
    pub async fn replay_all_dead_letters(
        &self,
        channel: &str,
        limit: Option<u32>,
    ) -> Result<BulkReplayResponse, HostedError> {
        let q = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
        self.call::<(), _>(
            reqwest::Method::POST,
            &format!("/channels/{}/dead-letters/replay{q}", seg(channel)),
            None,
            true,
        )
        .await
    }

    /// `DELETE …/dead-letters/{id}`.
    pub async fn delete_dead_letter(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<DeadLetterActionResponse, HostedError> {
        self.call::<(), _>(
            reqwest::Method::DELETE,
            &format!("/channels/{}/dead-letters/{}", seg(channel), seg(id)),
            None,
            true,
        )
        .await
    }

    /// `DELETE …/dead-letters` (purge).
    pub async fn purge_dead_letters(&self, channel: &str) -> Result<PurgeResponse, HostedError> {
        self.call::<(), _>(
            reqwest::Method::DELETE,
            &format!("/channels/{}/dead-letters", seg(channel)),
            None,
            true,
        )
        .await
    }

    /// `GET …/messages?limit=N&state=…` (`state`: `ready`, `in_flight`, `delayed` or `all`).
    pub async fn messages(
        &self,
        channel: &str,
        limit: u32,
        state: &str,
    ) -> Result<MessageList, HostedError> {
        self.get(&format!(
            "/channels/{}/messages?limit={}&state={}",
            seg(channel),
            limit.clamp(1, 100),
            seg(state)
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_urls_are_normalized_and_odd_ones_refused() {
        let n = |u: &str| normalize_cloud_url(u).map_err(|e| e.to_string());
        assert_eq!(
            n("https://Hooks.Example.com/").unwrap(),
            "https://hooks.example.com"
        );
        assert_eq!(n(" http://h:8000/base/ ").unwrap(), "http://h:8000/base");
        assert_eq!(n("https://h:443").unwrap(), "https://h");
        assert!(n("ftp://h").is_err());
        assert!(n("https://h/?x=1").is_err());
        assert!(n("https://u:p@h").is_err());
        assert!(n("h:8000").is_err());
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let c = HostedClient::new(
            "http://127.0.0.1:9",
            Some("whc_secret"),
            &Default::default(),
        )
        .expect("client");
        let text = format!("{c:?}");
        assert!(!text.contains("whc_secret"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_before_any_request() {
        let e = HostedClient::new("http://h", Some("whc_a\nb"), &Default::default())
            .expect_err("refused");
        assert!(matches!(e, HostedError::Setup(_)), "{e:?}");
    }
}
