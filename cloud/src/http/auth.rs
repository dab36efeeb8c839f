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
) -> Result<Option<String>, MalformedEscape> {
    if let Some(t) = bearer_token(headers) {
        return Ok(Some(t));
    }
    if !settings.allow_query_tokens {
        return Ok(None);
    }
    match query {
        Some(query) => query_token(query),
        None => Ok(None),
    }
}

/// The first `token=` value of a query string, decoded.
pub fn query_token(query: &str) -> Result<Option<String>, MalformedEscape> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| decode_query_value(v))
        .transpose()
}

/// A `%` whose two-character escape is cut by a non-ASCII character (`%aé`): answered 400
/// `invalid_request` (it used to panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid percent-encoding in query string")]
pub struct MalformedEscape;

/// Decodes a query-string value: `+` is a space and `%XX` a byte (invalid UTF-8 is replaced).
/// An ASCII `%` that starts no escape (`100%`, `%zz`) stays literal; a `%` followed by a
/// non-ASCII character within its two escape characters is [`MalformedEscape`].
pub fn decode_query_value(s: &str) -> Result<String, MalformedEscape> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if bytes.iter().skip(i + 1).take(2).any(|b| !b.is_ascii()) {
            return Err(MalformedEscape);
        }
    }
    let spaced = s.replace('+', " ");
    Ok(percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned())
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
        assert_eq!(decode_query_value("a%20b+c").as_deref(), Ok("a b c"));
        assert_eq!(decode_query_value("100%").as_deref(), Ok("100%"));
        assert_eq!(decode_query_value("%zz").as_deref(), Ok("%zz"));
    }

    #[test]
    fn an_escape_cut_by_a_non_ascii_character_is_malformed() {
        assert_eq!(decode_query_value("%a\u{e9}"), Err(MalformedEscape));
        assert_eq!(decode_query_value("%\u{e9}"), Err(MalformedEscape));
        assert_eq!(decode_query_value("\u{e9}%41").as_deref(), Ok("\u{e9}A"));
        assert_eq!(decode_query_value("%2B+").as_deref(), Ok("+ "));
    }
}
