//! What every connector request shares: service-state checks, channel authentication (§4.3),
//! the connection parameters of a request and the `connected` frame.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use connect_protocol::admin::TokenGeneration;
use connect_protocol::error::ErrorCode;
use connect_protocol::frames::Connected;
use connect_protocol::headers as h;
use connect_protocol::ids::Protocol;
use connect_protocol::time::Timestamp;

use crate::app::AppState;
use crate::http::auth::{bearer_token, connector_token};
use crate::http::error::{ApiError, ApiResult};
use crate::hub::channel::ChannelRt;
use crate::hub::conn::{Conn, NewConn};

/// Service-state checks shared by every connector endpoint.
pub fn check_service(st: &AppState) -> ApiResult<()> {
    if !st.settings().enabled {
        return Err(ApiError::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Webhook Connect not initialized",
        )
        .retry_after(st.settings().retry_after_seconds));
    }
    // A store that only fails writes (a full disk) still lets connectors drain it.
    if !st.buffer().health().readable {
        return Err(ApiError::buffer_unavailable(
            st.settings().retry_after_seconds,
        ));
    }
    if st.shutdown().is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BufferUnavailable,
            "Server shutting down",
        )
        .retry_after(st.settings().retry_after_seconds));
    }
    Ok(())
}

/// An authenticated connector request.
pub struct Authed {
    pub rt: Arc<ChannelRt>,
    pub digest: String,
    #[allow(dead_code)]
    pub generation: TokenGeneration,
}

/// Channel authentication (§4.3): missing → 401 `Missing authorization token`; wrong token,
/// unknown channel and malformed name all → 401 `Invalid channel token`. With a shared
/// buffer the channel's stored state is re-read before answering 401.
pub async fn authenticate(
    st: &AppState,
    channel: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> ApiResult<Authed> {
    check_service(st)?;
    let token = connector_token(st.settings(), headers, query)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRequest, e.to_string()))?;
    let Some(token) = token else {
        st.metrics().connection_rejected("auth");
        return Err(ApiError::plain(
            StatusCode::UNAUTHORIZED,
            "Missing authorization token",
        ));
    };
    // Another replica may have just rotated or configured the token: re-read before a 401.
    // An API key is never taken from a URL (HOSTED.md §2), even where `?token=` is allowed.
    if crate::hosted::keys::looks_like_api_key(&token) && bearer_token(headers).is_none() {
        st.metrics().connection_rejected("auth");
        return Err(ApiError::plain(
            StatusCode::UNAUTHORIZED,
            "Invalid channel token",
        ));
    }
    // A self-service channel also takes its owner's API key (HOSTED.md §3), checked against
    // the store; every other credential is a channel token.
    let found = match st.hosted().connector_key(channel, &token).await {
        Some(by_key) => by_key.map(|(rt, digest)| (rt, digest, TokenGeneration::Current)),
        None => st.hub().authenticate_fresh(channel, &token).await,
    };
    match found {
        Some((rt, digest, generation)) => Ok(Authed {
            rt,
            digest,
            generation,
        }),
        None => {
            st.metrics().connection_rejected("auth");
            Err(ApiError::plain(
                StatusCode::UNAUTHORIZED,
                "Invalid channel token",
            ))
        }
    }
}

/// Does the client speak protocol version 2?
pub fn client_version(headers: &HeaderMap) -> u32 {
    match headers
        .get(h::VERSION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some("2") => 2,
        _ => 1,
    }
}

/// `X-Connector-ID`: truncated to 128 characters, control characters replaced by `?`.
pub fn connector_id(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(h::CONNECTOR_ID)?;
    let s = String::from_utf8_lossy(raw.as_bytes());
    let s: String = s
        .chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    (!s.is_empty()).then_some(s)
}

/// The client IP under the trusted-proxy rule.
pub fn remote_ip(st: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    connect_config::client_ip(peer.ip(), headers, st.settings().trusted())
}

pub fn version_header() -> (header::HeaderName, HeaderValue) {
    (
        header::HeaderName::from_static(h::VERSION),
        HeaderValue::from_static("2"),
    )
}

impl Authed {
    /// Registration parameters of a new connection from this request.
    pub fn new_conn(
        &self,
        st: &AppState,
        protocol: Protocol,
        peer: SocketAddr,
        headers: &HeaderMap,
        poll_affinity: Option<String>,
    ) -> NewConn {
        NewConn {
            channel: self.rt.name().to_owned(),
            protocol,
            connector_id: connector_id(headers),
            remote_ip: remote_ip(st, peer, headers),
            protocol_version: client_version(headers),
            token_digest: self.digest.clone(),
            poll_affinity,
        }
    }

    /// The `connected` frame / event for a registered connection (v2 fields included).
    pub fn connected(&self, st: &AppState, conn: &Conn) -> Connected {
        let settings = self.rt.settings();
        Connected {
            connection_id: conn.id().to_owned(),
            channel: conn.channel().to_owned(),
            timestamp: Some(Timestamp::now()),
            protocol_version: Some(connect_protocol::PROTOCOL_VERSION),
            heartbeat_interval_seconds: Some(st.settings().heartbeat_interval_seconds),
            ack_timeout_seconds: Some(settings.ack_timeout_seconds),
            max_in_flight: Some(settings.max_in_flight as u32),
        }
    }
}
