//! Connector endpoints (PROTOCOL §4–5): WebSocket, SSE and long-poll streams, `/connect/ack`
//! and `/connect/status`. Authentication happens before any upgrade or stream starts.

pub mod ack;
pub mod poll;
pub mod sse;
pub mod ws;

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
use crate::http::error::{ApiError, ApiResult};
use crate::hub::channel::ChannelRt;
use crate::hub::conn::{Conn, NewConn};

/// Extracts the bearer token (§1.4): `Bearer` case-insensitive with any spaces, or a single
/// bare token; any other scheme is an invalid credential (empty string).
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if raw.is_empty() {
        return None;
    }
    match raw.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(rest.trim().to_owned())
        }
        Some(_) => Some(String::new()),
        None => Some(raw.to_owned()),
    }
}

/// The token of a connector request: the header, else `?token=` when the operator allows it.
pub fn connector_token(st: &AppState, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    bearer_token(headers).or_else(|| {
        if !st.settings().allow_query_tokens {
            return None;
        }
        query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "token").then(|| percent_decode(v))
        })
    })
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
/// unknown channel and malformed name all → 401 `Invalid channel token`.
pub fn authenticate(
    st: &AppState,
    channel: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> ApiResult<Authed> {
    check_service(st)?;
    let Some(token) = connector_token(st, headers, query) else {
        st.metrics().connection_rejected("auth");
        return Err(ApiError::plain(
            StatusCode::UNAUTHORIZED,
            "Missing authorization token",
        ));
    };
    match st.hub().authenticate(channel, &token) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn bearer_parsing_follows_the_protocol() {
        assert_eq!(bearer_token(&h("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&h("bEaReR    abc  ")).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token(&h("abc")).as_deref(),
            Some("abc"),
            "a bare token is accepted"
        );
        assert_eq!(
            bearer_token(&h("Basic abc")).as_deref(),
            Some(""),
            "other schemes are invalid"
        );
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn percent_decoding_handles_truncated_escapes() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
