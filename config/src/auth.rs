//! Ingress authentication (CONFIG §2.4, PROTOCOL §2.5): parsing of the auth blocks at load time
//! (fail closed: empty or malformed blocks are entry errors) and the per-request checks.
//!
//! Every secret comparison goes through `ct_eq`, which compares SHA-256 digests in constant
//! time so that neither the content nor the length of a secret leaks through timing.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

use crate::fields::{self, Warnings};

/// What one ingress request offers for authentication.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?`.
    pub query: &'a str,
    /// The TCP peer address.
    pub peer: IpAddr,
    /// The exact body bytes received (HMAC is computed over them).
    pub body: &'a [u8],
    /// `WEBHOOK_CONNECT_TRUSTED_PROXIES`.
    pub global_trusted_proxies: &'a [IpNet],
    /// Current time in Unix seconds (injected so that tolerance and `exp` checks are testable).
    pub now_unix: i64,
}

/// The authentication methods configured on one webhook; all configured methods must pass.
#[derive(Default)]
pub struct Auth {
    pub ip_whitelist: Option<Vec<IpNet>>,
    /// Added to the global trusted proxies for this webhook (§2.4.8).
    pub trusted_proxies: Vec<IpNet>,
    pub authorization: Option<Box<AuthorizationAuth>>,
    pub basic_auth: Option<Box<BasicAuth>>,
    pub jwt: Option<Box<JwtAuth>>,
    pub hmac: Option<Box<HmacAuth>>,
    pub header_auth: Option<Box<HeaderAuth>>,
    pub query_auth: Option<Box<QueryAuth>>,
}

impl fmt::Debug for Auth {
    // Only which methods are configured: the blocks hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.methods()).finish()
    }
}

impl Auth {
    /// Names of the configured methods, in evaluation order.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.ip_whitelist.is_some() {
            m.push("ip_whitelist");
        }
        if self.authorization.is_some() {
            m.push("authorization");
        }
        if self.basic_auth.is_some() {
            m.push("basic_auth");
        }
        if self.jwt.is_some() {
            m.push("jwt");
        }
        if self.hmac.is_some() {
            m.push("hmac");
        }
        if self.header_auth.is_some() {
            m.push("header_auth");
        }
        if self.query_auth.is_some() {
            m.push("query_auth");
        }
        m
    }

    /// Runs every configured method in the fixed order of §2.2. `Err` is the 401 `detail`.
    pub fn check(&self, req: &AuthRequest<'_>) -> Result<(), String> {
        if let Some(list) = &self.ip_whitelist {
            let trusted: Vec<IpNet> = req
                .global_trusted_proxies
                .iter()
                .chain(&self.trusted_proxies)
                .copied()
                .collect();
            let ip = client_ip(req.peer, req.headers, &trusted);
            if !list.iter().any(|n| n.contains(&ip)) {
                return Err("IP address not allowed".into());
            }
        }
        if let Some(a) = &self.authorization {
            a.check(req.headers)?;
        }
        if let Some(a) = &self.basic_auth {
            a.check(req.headers)?;
        }
        if let Some(a) = &self.jwt {
            a.check(req.headers, req.now_unix)?;
        }
        if let Some(a) = &self.hmac {
            a.check(req.headers, req.body, req.now_unix)?;
        }
        if let Some(a) = &self.header_auth {
            a.check(req.headers)?;
        }
        if let Some(a) = &self.query_auth {
            a.check(req.query)?;
        }
        Ok(())
    }

    /// Parses the auth keys of one webhook object.
    pub(crate) fn parse(entry: &Map<String, Value>, w: &mut Warnings<'_>) -> Result<Auth, String> {
        let mut auth = Auth::default();
        if let Some(v) = entry.get("ip_whitelist") {
            let list = ip_list(v, "ip_whitelist")?;
            if list.is_empty() {
                return Err("ip_whitelist: must not be empty".into());
            }
            auth.ip_whitelist = Some(list);
        }
        if let Some(v) = entry.get("trusted_proxies") {
            auth.trusted_proxies = ip_list(v, "trusted_proxies")?;
        }
        if let Some(v) = entry.get("authorization") {
            auth.authorization = Some(Box::new(AuthorizationAuth::parse(v)?));
        }
        if let Some(v) = entry.get("basic_auth") {
            auth.basic_auth = Some(Box::new(BasicAuth::parse(v, w)?));
        }
        if let Some(v) = entry.get("jwt") {
            auth.jwt = Some(Box::new(JwtAuth::parse(v, w)?));
        }
        if let Some(v) = entry.get("hmac") {
            auth.hmac = Some(Box::new(HmacAuth::parse(v, w)?));
        }
        if let Some(v) = entry.get("header_auth") {
            auth.header_auth = Some(Box::new(HeaderAuth::parse(v, w)?));
        }
        if let Some(v) = entry.get("query_auth") {
            auth.query_auth = Some(Box::new(QueryAuth::parse(v, w)?));
        }
        Ok(auth)
    }
}

/// Constant-time equality of two secrets, independent of their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.ct_eq(&db).into()
}

fn has_ctl(v: &[u8]) -> bool {
    v.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The single `Authorization` header value; `Err` = missing or smuggling CR/LF/NUL.
fn authorization_header<'h>(headers: &'h HeaderMap, missing: &str) -> Result<&'h [u8], String> {
    let v = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| missing.to_string())?;
    let b = v.as_bytes();
    if has_ctl(b) {
        return Err("Invalid authorization header".into());
    }
    Ok(b)
}

/// Splits `<scheme> <rest>` and checks the scheme case-insensitively.
fn strip_scheme<'v>(value: &'v [u8], scheme: &str) -> Option<&'v [u8]> {
    let s = value.trim_ascii();
    let n = scheme.len();
    if s.len() > n && s[..n].eq_ignore_ascii_case(scheme.as_bytes()) && s[n].is_ascii_whitespace() {
        Some(s[n + 1..].trim_ascii())
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// ip_whitelist / trusted_proxies / client IP

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are their IPv4 form.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net
        && let Some(v4) = n.addr().to_ipv4_mapped()
        && n.prefix_len() >= 96
        && let Ok(v4net) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
    {
        return IpNet::V4(v4net.trunc());
    }
    net.trunc()
}

/// Parses one IP or CIDR (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`).
pub fn parse_ip_or_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(normalize_net(net))
}

fn ip_list(v: &Value, key: &str) -> Result<Vec<IpNet>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{key}: must be an array of IP addresses or CIDR blocks"))?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .and_then(parse_ip_or_net)
                .ok_or_else(|| format!("{key}[{i}]: not an IP address or CIDR block"))
        })
        .collect()
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

/// The client address (§2.4.8): the TCP peer, unless the peer is a trusted proxy; then
/// `X-Forwarded-For` walked right to left, skipping trusted hops (all trusted → the left-most),
/// or `X-Real-IP` when there is no `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = normalize_ip(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|s| !s.trim().is_empty())
        .collect();
    if xff.is_empty() {
        return headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_hop)
            .map(normalize_ip)
            .unwrap_or(peer);
    }
    let mut candidate = peer;
    for hop in xff.iter().rev() {
        // An unparsable hop was written by someone we cannot vouch for: stop at the last
        // address a trusted proxy reported.
        let Some(ip) = parse_hop(hop).map(normalize_ip) else {
            return candidate;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        candidate = ip;
    }
    candidate
}

// ---------------------------------------------------------------------------------------------
// authorization

/// `authorization`: a `Bearer <token>` or any exact header value.
pub struct AuthorizationAuth {
    /// `Some(token)` when the configured value is `Bearer <token>`.
    bearer: Option<String>,
    exact: String,
}

impl AuthorizationAuth {
    fn parse(v: &Value) -> Result<Self, String> {
        let s = fields::nonempty(v, "authorization")?;
        let trimmed = s.trim();
        let bearer = strip_scheme(trimmed.as_bytes(), "bearer")
            .and_then(|t| std::str::from_utf8(t).ok())
            .map(str::to_string);
        Ok(AuthorizationAuth {
            bearer,
            exact: trimmed.to_string(),
        })
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let h = authorization_header(headers, "Authorization header required")?;
        let ok = match &self.bearer {
            Some(token) => {
                strip_scheme(h, "bearer").is_some_and(|got| ct_eq(got, token.as_bytes()))
            }
            None => ct_eq(h.trim_ascii(), self.exact.as_bytes()),
        };
        if ok {
            Ok(())
        } else {
            Err("Invalid authorization token".into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// basic_auth

pub struct BasicAuth {
    username: String,
    password: String,
}

impl BasicAuth {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "basic_auth")?;
        w.unknown_keys(m, "basic_auth.", &["username", "password"]);
        Ok(BasicAuth {
            username: fields::required(m, "username", "basic_auth.")?.to_string(),
            password: fields::required(m, "password", "basic_auth.")?.to_string(),
        })
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let h = authorization_header(headers, "Basic authentication required")?;
        let b64 =
            strip_scheme(h, "basic").ok_or_else(|| "Basic authentication required".to_string())?;
        let decoded = STANDARD
            .decode(b64)
            .map_err(|_| "Invalid basic authentication header".to_string())?;
        let text = match String::from_utf8(decoded) {
            Ok(s) => s,
            // Latin-1: every byte is the code point of the same value.
            Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
        };
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| "Invalid basic authentication header".to_string())?;
        // Both halves are always compared so the timing does not tell which one was wrong.
        let u = ct_eq(user.as_bytes(), self.username.as_bytes());
        let p = ct_eq(pass.as_bytes(), self.password.as_bytes());
        if u & p {
            Ok(())
        } else {
            Err("Invalid credentials".into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// header_auth / query_auth

pub struct HeaderAuth {
    header: HeaderName,
    api_key: String,
    case_sensitive: bool,
}

fn key_matches(got: &str, expected: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        ct_eq(got.as_bytes(), expected.as_bytes())
    } else {
        ct_eq(
            got.to_lowercase().as_bytes(),
            expected.to_lowercase().as_bytes(),
        )
    }
}

impl HeaderAuth {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "header_auth")?;
        w.unknown_keys(
            m,
            "header_auth.",
            &["header_name", "api_key", "case_sensitive"],
        );
        let name = match m.get("header_name") {
            None | Some(Value::Null) => "X-API-Key",
            Some(v) => fields::nonempty(v, "header_auth.header_name")?.trim(),
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "header_auth.header_name: not a valid header name".to_string())?;
        Ok(HeaderAuth {
            header,
            api_key: fields::required(m, "api_key", "header_auth.")?.to_string(),
            case_sensitive: match m.get("case_sensitive") {
                None | Some(Value::Null) => false,
                Some(v) => fields::boolean(v, "header_auth.case_sensitive")?,
            },
        })
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let missing = || format!("Missing required header: {}", self.header.as_str());
        let v = headers.get(&self.header).ok_or_else(missing)?;
        if v.is_empty() {
            return Err(missing());
        }
        let got = v
            .to_str()
            .map_err(|_| "Invalid API key".to_string())?
            .trim();
        if key_matches(got, &self.api_key, self.case_sensitive) {
            Ok(())
        } else {
            Err("Invalid API key".into())
        }
    }
}

pub struct QueryAuth {
    parameter: String,
    api_key: String,
    case_sensitive: bool,
}

/// Form-style percent-decoding (`+` is a space) of one query component.
pub(crate) fn decode_query_component(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The first occurrence of `name` in a raw query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<Option<String>> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_query_component(k).as_deref() == Some(name) {
            return Some(decode_query_component(v));
        }
    }
    None
}

impl QueryAuth {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "query_auth")?;
        w.unknown_keys(
            m,
            "query_auth.",
            &["parameter_name", "api_key", "case_sensitive"],
        );
        let parameter = match m.get("parameter_name") {
            None | Some(Value::Null) => "api_key".to_string(),
            Some(v) => fields::string(v, "query_auth.parameter_name")?.to_string(),
        };
        let valid = (1..=100).contains(&parameter.len())
            && parameter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err("query_auth.parameter_name: must match ^[A-Za-z0-9_.-]{1,100}$".into());
        }
        Ok(QueryAuth {
            parameter,
            api_key: fields::required(m, "api_key", "query_auth.")?.to_string(),
            case_sensitive: match m.get("case_sensitive") {
                None | Some(Value::Null) => false,
                Some(v) => fields::boolean(v, "query_auth.case_sensitive")?,
            },
        })
    }

    fn check(&self, query: &str) -> Result<(), String> {
        let missing = || format!("Missing required query parameter: {}", self.parameter);
        let value = match query_param(query, &self.parameter) {
            None => return Err(missing()),
            Some(None) => return Err("Invalid API key".into()),
            Some(Some(v)) => v,
        };
        if value.is_empty() {
            return Err(missing());
        }
        if value.chars().count() > 1000 {
            return Err("Invalid API key".into());
        }
        if key_matches(&value, &self.api_key, self.case_sensitive) {
            Ok(())
        } else {
            Err("Invalid API key".into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jwt

pub struct JwtAuth {
    algorithm: Algorithm,
    key: DecodingKey,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
    verify_exp: bool,
    leeway: u64,
}

fn jwt_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

fn claim_time(claims: &Value, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| "Invalid JWT token".to_string()),
    }
}

impl JwtAuth {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "jwt")?;
        w.unknown_keys(
            m,
            "jwt.",
            &[
                "secret",
                "algorithm",
                "issuer",
                "audience",
                "verify_exp",
                "leeway_seconds",
            ],
        );
        let secret = fields::required(m, "secret", "jwt.")?;
        let algorithm = match m.get("algorithm") {
            None | Some(Value::Null) => Algorithm::HS256,
            Some(v) => jwt_algorithm(fields::string(v, "jwt.algorithm")?).ok_or_else(|| {
                "jwt.algorithm: unsupported (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384)"
                    .to_string()
            })?,
        };
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                DecodingKey::from_secret(secret.as_bytes())
            }
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(secret.as_bytes())
                .map_err(|_| "jwt.secret: not a PEM EC public key".to_string())?,
            _ => DecodingKey::from_rsa_pem(secret.as_bytes())
                .map_err(|_| "jwt.secret: not a PEM RSA public key".to_string())?,
        };
        let issuer = match m.get("issuer") {
            None | Some(Value::Null) => None,
            Some(v) => Some(fields::nonempty(v, "jwt.issuer")?.to_string()),
        };
        let audience = match m.get("audience") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => {
                let list = a
                    .iter()
                    .map(|x| fields::nonempty(x, "jwt.audience").map(str::to_string))
                    .collect::<Result<Vec<_>, _>>()?;
                if list.is_empty() {
                    return Err("jwt.audience: must not be empty".into());
                }
                Some(list)
            }
            Some(v) => Some(vec![fields::nonempty(v, "jwt.audience")?.to_string()]),
        };
        Ok(JwtAuth {
            algorithm,
            key,
            issuer,
            audience,
            verify_exp: match m.get("verify_exp") {
                None | Some(Value::Null) => true,
                Some(v) => fields::boolean(v, "jwt.verify_exp")?,
            },
            leeway: match m.get("leeway_seconds") {
                None | Some(Value::Null) => 0,
                Some(v) => fields::integer(v, "jwt.leeway_seconds", 0..=86_400)?,
            },
        })
    }

    fn check(&self, headers: &HeaderMap, now: i64) -> Result<(), String> {
        let h = authorization_header(headers, "Missing or invalid Authorization header")?;
        let token = strip_scheme(h, "bearer")
            .and_then(|t| std::str::from_utf8(t).ok())
            .ok_or_else(|| "Missing or invalid Authorization header".to_string())?;
        // The library only checks the signature and the one algorithm; time claims are checked
        // here against the injected clock.
        let mut validation = Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &validation)
            .map_err(|_| "Invalid JWT token".to_string())?;
        let claims = data.claims;
        let now = now as f64;
        let leeway = self.leeway as f64;
        if self.verify_exp
            && let Some(exp) = claim_time(&claims, "exp")?
            && exp < now - leeway
        {
            return Err("JWT token has expired".into());
        }
        if let Some(nbf) = claim_time(&claims, "nbf")?
            && nbf > now + leeway
        {
            return Err("JWT token not yet valid".into());
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err("Invalid JWT issuer".into());
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => aud.contains(s),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|s| aud.iter().any(|x| x == s)),
                _ => false,
            };
            if !ok {
                return Err("Invalid JWT audience".into());
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// hmac

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl HmacAlgorithm {
    fn name(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha1 => "sha1",
            HmacAlgorithm::Sha256 => "sha256",
            HmacAlgorithm::Sha512 => "sha512",
        }
    }

    /// HMAC over the concatenation of `parts` (avoids copying large bodies).
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length; the empty result never matches (fail closed).
            let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            HmacAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
            HmacAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigEncoding {
    Hex,
    Base64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HmacProvider {
    Generic {
        algorithm: HmacAlgorithm,
        encoding: SigEncoding,
        prefix: Option<String>,
    },
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
}

pub struct HmacAuth {
    pub provider: HmacProvider,
    key: Vec<u8>,
    header: HeaderName,
    tolerance: u64,
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok()
}

/// Standard or URL-safe alphabet, padded or not.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn sig_eq(expected: &[u8], got: Option<Vec<u8>>) -> bool {
    // Digest lengths are public, so comparing lengths first leaks nothing.
    !expected.is_empty()
        && got.is_some_and(|g| g.len() == expected.len() && bool::from(g.ct_eq(expected)))
}

const MISSING_SIG: &str = "Missing signature header";
const MALFORMED_SIG: &str = "Malformed signature header";
const BAD_SIG: &str = "Invalid HMAC signature";
const STALE: &str = "Signature timestamp outside tolerance";

impl HmacAuth {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "hmac")?;
        w.unknown_keys(
            m,
            "hmac.",
            &[
                "secret",
                "header",
                "algorithm",
                "encoding",
                "prefix",
                "provider",
                "tolerance_seconds",
            ],
        );
        let secret = fields::required(m, "secret", "hmac.")?;
        let provider = match m.get("provider") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                fields::string(v, "hmac.provider")?
                    .trim()
                    .to_ascii_lowercase(),
            ),
        };
        let provider = match provider.as_deref() {
            None => {
                let algorithm = match m.get("algorithm") {
                    None | Some(Value::Null) => HmacAlgorithm::Sha256,
                    Some(v) => match fields::string(v, "hmac.algorithm")?
                        .trim()
                        .to_ascii_lowercase()
                        .as_str()
                    {
                        "sha1" => HmacAlgorithm::Sha1,
                        "sha256" => HmacAlgorithm::Sha256,
                        "sha512" => HmacAlgorithm::Sha512,
                        _ => return Err("hmac.algorithm: must be sha1, sha256 or sha512".into()),
                    },
                };
                let encoding = match m.get("encoding") {
                    None | Some(Value::Null) => SigEncoding::Hex,
                    Some(v) => match fields::string(v, "hmac.encoding")?
                        .trim()
                        .to_ascii_lowercase()
                        .as_str()
                    {
                        "hex" => SigEncoding::Hex,
                        "base64" => SigEncoding::Base64,
                        _ => return Err("hmac.encoding: must be hex or base64".into()),
                    },
                };
                let prefix = match m.get("prefix") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(fields::nonempty(v, "hmac.prefix")?.to_string()),
                };
                HmacProvider::Generic {
                    algorithm,
                    encoding,
                    prefix,
                }
            }
            Some(p) => {
                for k in ["algorithm", "encoding", "prefix"] {
                    if m.contains_key(k) {
                        w.push(format!("hmac.{k} is fixed by provider '{p}' and ignored"));
                    }
                }
                match p {
                    "github" => HmacProvider::Github,
                    "stripe" => HmacProvider::Stripe,
                    "shopify" => HmacProvider::Shopify,
                    "slack" => HmacProvider::Slack,
                    "standard-webhooks" | "standard_webhooks" | "standardwebhooks" => {
                        HmacProvider::StandardWebhooks
                    }
                    _ => {
                        return Err(
                            "hmac.provider: must be github, stripe, shopify, slack or standard-webhooks"
                                .into(),
                        );
                    }
                }
            }
        };
        let key = match provider {
            HmacProvider::StandardWebhooks => {
                let raw = secret.trim();
                let raw = raw.strip_prefix("whsec_").unwrap_or(raw);
                STANDARD
                    .decode(raw)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| "hmac.secret: not valid base64 after 'whsec_'".to_string())?
            }
            _ => secret.as_bytes().to_vec(),
        };
        let default_header = match provider {
            HmacProvider::Generic { .. } => "X-HMAC-Signature",
            HmacProvider::Github => "X-Hub-Signature-256",
            HmacProvider::Stripe => "Stripe-Signature",
            HmacProvider::Shopify => "X-Shopify-Hmac-Sha256",
            HmacProvider::Slack => "X-Slack-Signature",
            HmacProvider::StandardWebhooks => "webhook-signature",
        };
        let header = match m.get("header") {
            None | Some(Value::Null) => default_header,
            Some(v) => fields::nonempty(v, "hmac.header")?.trim(),
        };
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| "hmac.header: not a valid header name".to_string())?;
        let tolerance = match m.get("tolerance_seconds") {
            None | Some(Value::Null) => 300,
            Some(v) => fields::integer(v, "hmac.tolerance_seconds", 1..=31_536_000)?,
        };
        Ok(HmacAuth {
            provider,
            key,
            header,
            tolerance,
        })
    }

    fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, String> {
        let v = headers.get(name).ok_or_else(|| MISSING_SIG.to_string())?;
        let s = v.to_str().map_err(|_| MALFORMED_SIG.to_string())?.trim();
        if s.is_empty() {
            return Err(MISSING_SIG.into());
        }
        Ok(s)
    }

    fn check_time(&self, ts: &str, now: i64) -> Result<(), String> {
        let t: i64 = ts.trim().parse().map_err(|_| MALFORMED_SIG.to_string())?;
        if now.abs_diff(t) > self.tolerance {
            return Err(STALE.into());
        }
        Ok(())
    }

    fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
        let sig = Self::header_str(headers, self.header.as_str())?;
        let ok = match &self.provider {
            HmacProvider::Generic {
                algorithm,
                encoding,
                prefix,
            } => {
                let value = match prefix {
                    Some(p) => sig
                        .strip_prefix(p.as_str())
                        .ok_or_else(|| MALFORMED_SIG.to_string())?,
                    None if *encoding == SigEncoding::Hex => {
                        // Compatible behaviour: an optional `<algorithm>=` prefix.
                        let tag = format!("{}=", algorithm.name());
                        if sig.len() > tag.len()
                            && sig.as_bytes()[..tag.len()].eq_ignore_ascii_case(tag.as_bytes())
                        {
                            &sig[tag.len()..]
                        } else {
                            sig
                        }
                    }
                    None => sig,
                };
                let got = match encoding {
                    SigEncoding::Hex => decode_hex(value),
                    SigEncoding::Base64 => decode_b64(value),
                }
                .ok_or_else(|| MALFORMED_SIG.to_string())?;
                sig_eq(&algorithm.mac(&self.key, &[body]), Some(got))
            }
            HmacProvider::Github => {
                let hexsig = sig
                    .strip_prefix("sha256=")
                    .ok_or_else(|| MALFORMED_SIG.to_string())?;
                let got = decode_hex(hexsig).ok_or_else(|| MALFORMED_SIG.to_string())?;
                sig_eq(&HmacAlgorithm::Sha256.mac(&self.key, &[body]), Some(got))
            }
            HmacProvider::Shopify => {
                let got = decode_b64(sig).ok_or_else(|| MALFORMED_SIG.to_string())?;
                sig_eq(&HmacAlgorithm::Sha256.mac(&self.key, &[body]), Some(got))
            }
            HmacProvider::Stripe => {
                let mut t = None;
                let mut v1 = Vec::new();
                for part in sig.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v.trim()),
                        Some(("v1", v)) => v1.push(v.trim()),
                        _ => {}
                    }
                }
                let t = t.ok_or_else(|| MALFORMED_SIG.to_string())?;
                if v1.is_empty() {
                    return Err(MALFORMED_SIG.into());
                }
                self.check_time(t, now)?;
                let expected = HmacAlgorithm::Sha256.mac(&self.key, &[t.as_bytes(), b".", body]);
                // Every candidate is compared (no early exit) so timing does not reveal which.
                v1.iter()
                    .fold(false, |acc, s| acc | sig_eq(&expected, decode_hex(s)))
            }
            HmacProvider::Slack => {
                let ts = Self::header_str(headers, "x-slack-request-timestamp")?;
                let hexsig = sig
                    .strip_prefix("v0=")
                    .ok_or_else(|| MALFORMED_SIG.to_string())?;
                let got = decode_hex(hexsig).ok_or_else(|| MALFORMED_SIG.to_string())?;
                self.check_time(ts, now)?;
                let expected =
                    HmacAlgorithm::Sha256.mac(&self.key, &[b"v0:", ts.as_bytes(), b":", body]);
                sig_eq(&expected, Some(got))
            }
            HmacProvider::StandardWebhooks => {
                let id = Self::header_str(headers, "webhook-id")?;
                let ts = Self::header_str(headers, "webhook-timestamp")?;
                self.check_time(ts, now)?;
                let expected = HmacAlgorithm::Sha256
                    .mac(&self.key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                let candidates: Vec<&str> = sig
                    .split_ascii_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .collect();
                if candidates.is_empty() {
                    return Err(MALFORMED_SIG.into());
                }
                candidates
                    .iter()
                    .fold(false, |acc, s| acc | sig_eq(&expected, decode_b64(s)))
            }
        };
        if ok { Ok(()) } else { Err(BAD_SIG.into()) }
    }
}

#[cfg(test)]
mod tests;
