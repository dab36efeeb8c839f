//! Credentials at the HTTP edge: the `Authorization` header is parsed here, once, for the
//! connector endpoints (§1.4), the admin API (§8.1), `/metrics` and the reload API
//! (CONFIG.md §6.3); and the `?token=` query parameter where the operator allows it.

use axum::http::{HeaderMap, header};

use connect_protocol::ids::token_digest;

use crate::hub::channel::ct_eq;
use crate::settings::Settings;

/// Does a presented secret match the configured one? Compared as digests in constant time, so
/// neither the length nor a prefix of the secret leaks through timing.
pub fn same_secret(given: &str, expected: &str) -> bool {
    ct_eq(&token_digest(given), &token_digest(expected))
}

/// What an `Authorization` value carries.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'a> {
    /// `Bearer` (case-insensitive, any spaces) and what follows it, trimmed.
    Bearer(&'a str),
    /// A single word without a scheme: the token itself.
    Bare(&'a str),
    /// Another scheme (`Basic …`): the whole value.
    Other(&'a str),
}

/// Parses a trimmed, non-empty `Authorization` value.
fn credential(raw: &str) -> Option<Credential<'_>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    Some(match raw.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Credential::Bearer(rest.trim())
        }
        Some(_) => Credential::Other(raw),
        None => Credential::Bare(raw),
    })
}

/// Extracts the bearer token (§1.4): `Bearer` case-insensitive with any spaces, or a single
/// bare token; any other scheme is an invalid credential (empty string).
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    match credential(raw)? {
        Credential::Bearer(t) | Credential::Bare(t) => Some(t.to_owned()),
        Credential::Other(_) => Some(String::new()),
    }
}

/// The token of a connector request: the header, else `?token=` when the operator allows it.
pub fn connector_token(
    settings: &Settings,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<String> {
    bearer_token(headers).or_else(|| {
        if !settings.allow_query_tokens {
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

/// Why the reload API refuses a request's credentials (CONFIG.md §6.3).
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadAuthError {
    /// No header, or an empty one.
    Missing,
    /// CR, LF or NUL in the header.
    Malformed,
}

/// The token of a reload API request: `Bearer` or no scheme; any other value is taken whole
/// (and will not match).
pub fn reload_token(headers: &HeaderMap) -> Result<String, ReloadAuthError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .ok_or(ReloadAuthError::Missing)?;
    let bytes = raw.as_bytes();
    if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(ReloadAuthError::Malformed);
    }
    let text = String::from_utf8_lossy(bytes);
    match credential(&text).ok_or(ReloadAuthError::Missing)? {
        Credential::Bearer(t) | Credential::Bare(t) | Credential::Other(t) => Ok(t.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
    fn reload_tokens_take_bearer_bare_or_the_whole_value() {
        assert_eq!(reload_token(&h("Bearer abc")), Ok("abc".into()));
        assert_eq!(reload_token(&h("abc")), Ok("abc".into()));
        assert_eq!(reload_token(&h("Basic abc")), Ok("Basic abc".into()));
        assert_eq!(reload_token(&h("  ")), Err(ReloadAuthError::Missing));
        assert_eq!(
            reload_token(&HeaderMap::new()),
            Err(ReloadAuthError::Missing)
        );
    }

    #[test]
    fn percent_decoding_handles_truncated_escapes() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
