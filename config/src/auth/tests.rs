use super::*;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const NOW: i64 = 1_700_000_000;

// Test-only P-256 key pair (generated for these tests, protects nothing).
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgody85G7CIVBpGB2d
OBTkXViJDAvxpICIY54xTtkx67KhRANCAAQdlAXIl6VzABTCmcA1vO/OTwm3KfL/
8nD1EXI9kWBRBwBHoxp3Vu2NFZPFh8PNR+OysayiYXJnFYW5HtKHluqI
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHZQFyJelcwAUwpnANbzvzk8Jtyny
//Jw9RFyPZFgUQcAR6Mad1btjRWTxYfDzUfjsrGsomFyZxWFuR7Sh5bqiA==
-----END PUBLIC KEY-----
";

fn auth(entry: Value) -> Result<Auth, String> {
    let mut w = Warnings::new("t");
    Auth::parse(entry.as_object().unwrap(), &mut w)
}

struct Req {
    headers: HeaderMap,
    query: String,
    peer: IpAddr,
    body: Vec<u8>,
    trusted: Vec<IpNet>,
    now: i64,
}

impl Req {
    fn new() -> Self {
        Req {
            headers: HeaderMap::new(),
            query: String::new(),
            peer: "198.51.100.7".parse().unwrap(),
            body: b"{\"a\":1}".to_vec(),
            trusted: Vec::new(),
            now: NOW,
        }
    }
    fn h(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .append(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        self
    }
    fn q(mut self, q: &str) -> Self {
        self.query = q.into();
        self
    }
    fn body(mut self, b: &[u8]) -> Self {
        self.body = b.to_vec();
        self
    }
    fn check(&self, a: &Auth) -> Result<(), String> {
        a.check(&AuthRequest {
            headers: &self.headers,
            query: &self.query,
            peer: self.peer,
            body: &self.body,
            global_trusted_proxies: &self.trusted,
            now_unix: self.now,
        })
    }
}

fn hmac256_hex(key: &[u8], data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    hex::encode(m.finalize().into_bytes())
}

fn hmac256_b64(key: &[u8], data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    STANDARD.encode(m.finalize().into_bytes())
}

// --- parsing: fail closed -------------------------------------------------------------------

#[test]
fn empty_or_malformed_blocks_are_entry_errors() {
    for bad in [
        json!({"authorization": ""}),
        json!({"authorization": "   "}),
        json!({"authorization": 5}),
        json!({"basic_auth": {}}),
        json!({"basic_auth": {"username": "u", "password": ""}}),
        json!({"basic_auth": "u:p"}),
        json!({"header_auth": {}}),
        json!({"header_auth": {"api_key": ""}}),
        json!({"query_auth": {"api_key": "k", "parameter_name": "a b"}}),
        json!({"query_auth": []}),
        json!({"hmac": {}}),
        json!({"hmac": {"secret": ""}}),
        json!({"hmac": {"secret": "s", "algorithm": "md5"}}),
        json!({"hmac": {"secret": "s", "encoding": "base32"}}),
        json!({"hmac": {"secret": "s", "provider": "gitlab"}}),
        json!({"hmac": {"secret": "whsec_!!!", "provider": "standard-webhooks"}}),
        json!({"jwt": {}}),
        json!({"jwt": {"secret": "s", "algorithm": "none"}}),
        json!({"jwt": {"secret": "s", "algorithm": "EdDSA"}}),
        json!({"jwt": {"secret": "not a pem", "algorithm": "RS256"}}),
        json!({"jwt": {"secret": "not a pem", "algorithm": "ES256"}}),
        json!({"ip_whitelist": []}),
        json!({"ip_whitelist": ["10.0.0.0/33"]}),
        json!({"ip_whitelist": "10.0.0.1"}),
        json!({"trusted_proxies": ["nope"]}),
    ] {
        assert!(auth(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn error_texts_never_contain_the_secret() {
    let e = auth(json!({"hmac": {"secret": "whsec_%%TOPSECRET", "provider": "standard-webhooks"}}))
        .err()
        .unwrap();
    assert!(!e.contains("TOPSECRET"), "{e}");
    let e = auth(json!({"jwt": {"secret": "TOPSECRET", "algorithm": "RS256"}}))
        .err()
        .unwrap();
    assert!(!e.contains("TOPSECRET"), "{e}");
}

#[test]
fn unknown_keys_in_blocks_warn() {
    let mut w = Warnings::new("e");
    let entry = json!({"header_auth": {"api_key": "k", "extra": 1}});
    Auth::parse(entry.as_object().unwrap(), &mut w).unwrap();
    assert_eq!(w.list, vec!["e: unknown key 'header_auth.extra' ignored"]);
}

// --- authorization ---------------------------------------------------------------------------

#[test]
fn bearer_scheme_is_case_insensitive_token_exact() {
    let a = auth(json!({"authorization": "Bearer tok123"})).unwrap();
    assert!(
        Req::new()
            .h("authorization", "Bearer tok123")
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .h("authorization", "bearer tok123  ")
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .h("authorization", "BEARER tok123")
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .h("authorization", "Bearer TOK123")
            .check(&a)
            .is_err()
    );
    assert!(
        Req::new()
            .h("authorization", "Bearer tok1234")
            .check(&a)
            .is_err()
    );
    assert!(Req::new().h("authorization", "tok123").check(&a).is_err());
    assert!(Req::new().check(&a).is_err());
}

#[test]
fn other_authorization_values_compare_whole_header() {
    let a = auth(json!({"authorization": "Token abc"})).unwrap();
    assert!(Req::new().h("authorization", "Token abc").check(&a).is_ok());
    assert!(
        Req::new()
            .h("authorization", " Token abc ")
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .h("authorization", "token abc")
            .check(&a)
            .is_err()
    );
    let a = auth(json!({"authorization": "tok123"})).unwrap();
    assert!(Req::new().h("authorization", "tok123").check(&a).is_ok());
    assert!(
        Req::new()
            .h("authorization", "Bearer tok123")
            .check(&a)
            .is_err()
    );
}

#[test]
fn control_characters_in_authorization_are_rejected() {
    let a = auth(json!({"authorization": "tok"})).unwrap();
    // HeaderValue forbids CR/LF but admits other bytes; build one with a NUL-free tab and
    // check the NUL/CR/LF guard directly.
    assert!(has_ctl(b"tok\r\n"));
    assert!(has_ctl(b"t\0k"));
    assert!(!has_ctl(b"tok\t"));
    assert!(Req::new().h("authorization", "tok\t").check(&a).is_ok());
}

// --- basic_auth ------------------------------------------------------------------------------

#[test]
fn basic_auth_checks_both_parts() {
    let a = auth(json!({"basic_auth": {"username": "user", "password": "p:ss"}})).unwrap();
    let ok = format!("Basic {}", STANDARD.encode("user:p:ss"));
    assert!(Req::new().h("authorization", &ok).check(&a).is_ok());
    let lower = format!("basic {}", STANDARD.encode("user:p:ss"));
    assert!(Req::new().h("authorization", &lower).check(&a).is_ok());
    for bad in ["user:wrong", "other:p:ss", "userp:ss", ""] {
        let h = format!("Basic {}", STANDARD.encode(bad));
        assert!(
            Req::new().h("authorization", &h).check(&a).is_err(),
            "{bad}"
        );
    }
    // Not strict base64 (missing padding / URL-safe) → 401.
    let unpadded = STANDARD
        .encode("user:p:ss")
        .trim_end_matches('=')
        .to_string();
    if unpadded != STANDARD.encode("user:p:ss") {
        let h = format!("Basic {unpadded}");
        assert!(Req::new().h("authorization", &h).check(&a).is_err());
    }
    assert!(Req::new().h("authorization", "Bearer x").check(&a).is_err());
}

#[test]
fn basic_auth_decodes_latin1_when_not_utf8() {
    let a = auth(json!({"basic_auth": {"username": "jürgen", "password": "pw"}})).unwrap();
    let mut raw = b"j\xfcrgen:pw".to_vec();
    let h = format!("Basic {}", STANDARD.encode(&raw));
    assert!(Req::new().h("authorization", &h).check(&a).is_ok());
    raw = "jürgen:pw".as_bytes().to_vec();
    let h = format!("Basic {}", STANDARD.encode(&raw));
    assert!(Req::new().h("authorization", &h).check(&a).is_ok());
}

// --- header_auth / query_auth ----------------------------------------------------------------

#[test]
fn header_auth_is_case_insensitive_by_default() {
    let a = auth(json!({"header_auth": {"api_key": "AbC"}})).unwrap();
    assert!(Req::new().h("x-api-key", "abc").check(&a).is_ok());
    assert!(Req::new().h("X-API-KEY", "ABC").check(&a).is_ok());
    assert!(Req::new().h("x-api-key", "abd").check(&a).is_err());
    assert!(Req::new().h("x-api-key", "").check(&a).is_err());
    assert!(Req::new().check(&a).is_err());
    let a = auth(json!({"header_auth": {"header_name": "X-Key", "api_key": "AbC", "case_sensitive": "true"}}))
        .unwrap();
    assert!(Req::new().h("x-key", "AbC").check(&a).is_ok());
    assert!(Req::new().h("x-key", "abc").check(&a).is_err());
}

#[test]
fn query_auth_uses_first_decoded_occurrence() {
    let a = auth(json!({"query_auth": {"api_key": "a b/c"}})).unwrap();
    assert!(Req::new().q("api_key=a%20b%2Fc").check(&a).is_ok());
    assert!(Req::new().q("x=1&api_key=A+B%2fc").check(&a).is_ok());
    assert!(
        Req::new()
            .q("api_key=wrong&api_key=a%20b%2Fc")
            .check(&a)
            .is_err()
    );
    assert!(Req::new().q("api%5Fkey=a%20b%2Fc").check(&a).is_ok());
    assert!(Req::new().q("api_key=").check(&a).is_err());
    assert!(Req::new().q("").check(&a).is_err());
    let long = format!("api_key={}", "a".repeat(1001));
    let a = auth(json!({"query_auth": {"api_key": "a".repeat(1001), "parameter_name": "api_key"}}))
        .unwrap();
    assert!(Req::new().q(&long).check(&a).is_err());
    let a = auth(
        json!({"query_auth": {"api_key": "K", "parameter_name": "tok", "case_sensitive": true}}),
    )
    .unwrap();
    assert!(Req::new().q("tok=K").check(&a).is_ok());
    assert!(Req::new().q("tok=k").check(&a).is_err());
}

// --- ip_whitelist / client ip ----------------------------------------------------------------

#[test]
fn ip_whitelist_matches_cidr_and_mapped_v6() {
    let a =
        auth(json!({"ip_whitelist": ["203.0.113.0/24", "2001:db8::/32", "192.0.2.1"]})).unwrap();
    let mut r = Req::new();
    for ip in [
        "203.0.113.9",
        "::ffff:203.0.113.9",
        "2001:db8::1",
        "192.0.2.1",
    ] {
        r.peer = ip.parse().unwrap();
        assert!(r.check(&a).is_ok(), "{ip}");
    }
    for ip in ["203.0.114.1", "2001:db9::1", "192.0.2.2"] {
        r.peer = ip.parse().unwrap();
        assert!(r.check(&a).is_err(), "{ip}");
    }
    let a = auth(json!({"ip_whitelist": ["::ffff:10.0.0.0/104"]})).unwrap();
    r.peer = "10.1.2.3".parse().unwrap();
    assert!(r.check(&a).is_ok());
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let trusted: Vec<IpNet> = vec![parse_ip_or_net("10.0.0.0/8").unwrap()];
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("1.1.1.1, 203.0.113.5, 10.0.0.2"),
    );
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let stranger: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(
        client_ip(proxy, &h, &trusted),
        "203.0.113.5".parse::<IpAddr>().unwrap()
    );
    assert_eq!(client_ip(stranger, &h, &trusted), stranger);
    assert_eq!(client_ip(proxy, &h, &[]), proxy);
    // All trusted → left-most.
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("10.9.9.9, 10.0.0.2"),
    );
    assert_eq!(
        client_ip(proxy, &h, &trusted),
        "10.9.9.9".parse::<IpAddr>().unwrap()
    );
    // No XFF → X-Real-IP.
    let mut h = HeaderMap::new();
    h.insert("x-real-ip", HeaderValue::from_static("203.0.113.77"));
    assert_eq!(
        client_ip(proxy, &h, &trusted),
        "203.0.113.77".parse::<IpAddr>().unwrap()
    );
    // Mapped peer matches v4 trusted list.
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(
        client_ip(mapped, &h, &trusted),
        "203.0.113.77".parse::<IpAddr>().unwrap()
    );
    // Multiple XFF headers are one list; ports are tolerated.
    let mut h = HeaderMap::new();
    h.append(
        "x-forwarded-for",
        HeaderValue::from_static("203.0.113.1:4711"),
    );
    h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.3"));
    assert_eq!(
        client_ip(proxy, &h, &trusted),
        "203.0.113.1".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn per_webhook_trusted_proxies_extend_the_global_list() {
    let a =
        auth(json!({"ip_whitelist": ["203.0.113.5"], "trusted_proxies": ["10.0.0.1"]})).unwrap();
    let mut r = Req::new().h("x-forwarded-for", "203.0.113.5");
    r.peer = "10.0.0.1".parse().unwrap();
    assert!(r.check(&a).is_ok());
    let a = auth(json!({"ip_whitelist": ["203.0.113.5"]})).unwrap();
    assert!(r.check(&a).is_err());
    r.trusted = vec![parse_ip_or_net("10.0.0.1").unwrap()];
    assert!(r.check(&a).is_ok());
}

// --- hmac ------------------------------------------------------------------------------------

#[test]
fn generic_hmac_hex_with_optional_algorithm_prefix() {
    let a = auth(json!({"hmac": {"secret": "s3cret"}})).unwrap();
    let body = b"payload bytes";
    let sig = hmac256_hex(b"s3cret", body);
    let r = |v: &str| Req::new().body(body).h("x-hmac-signature", v);
    assert!(r(&sig).check(&a).is_ok());
    assert!(r(&sig.to_uppercase()).check(&a).is_ok());
    assert!(r(&format!("sha256={sig}")).check(&a).is_ok());
    assert!(r(&format!("SHA256={sig}")).check(&a).is_ok());
    assert!(r(&format!("sha1={sig}")).check(&a).is_err());
    assert!(r(&hmac256_hex(b"other", body)).check(&a).is_err());
    assert!(r("zz").check(&a).is_err());
    assert!(r("sha256=").check(&a).is_err());
    assert!(Req::new().body(body).check(&a).is_err());
    // Body changed by one byte.
    assert!(
        Req::new()
            .body(b"payload bytez")
            .h("x-hmac-signature", &sig)
            .check(&a)
            .is_err()
    );
}

#[test]
fn generic_hmac_sha1_sha512_base64_and_prefix() {
    let body = b"x";
    let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(b"k").unwrap();
    m.update(body);
    let s1 = hex::encode(m.finalize().into_bytes());
    let a = auth(json!({"hmac": {"secret": "k", "algorithm": "SHA1", "header": "X-Sig"}})).unwrap();
    assert!(Req::new().body(body).h("x-sig", &s1).check(&a).is_ok());

    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(b"k").unwrap();
    m.update(body);
    let raw = m.finalize().into_bytes();
    let a = auth(json!({"hmac": {"secret": "k", "algorithm": "sha512", "encoding": "base64"}}))
        .unwrap();
    for enc in [STANDARD.encode(raw), URL_SAFE_NO_PAD.encode(raw)] {
        assert!(
            Req::new()
                .body(body)
                .h("x-hmac-signature", &enc)
                .check(&a)
                .is_ok()
        );
    }
    let a =
        auth(json!({"hmac": {"secret": "k", "algorithm": "sha512", "prefix": "sig:"}})).unwrap();
    let hexsig = hex::encode(raw);
    assert!(
        Req::new()
            .body(body)
            .h("x-hmac-signature", &format!("sig:{hexsig}"))
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .body(body)
            .h("x-hmac-signature", &hexsig)
            .check(&a)
            .is_err()
    );
}

#[test]
fn github_preset_known_answer() {
    // Known answer from GitHub's documentation ("Validating webhook deliveries").
    let secret = "It's a Secret to Everybody";
    let body = b"Hello, World!";
    let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(hmac256_hex(secret.as_bytes(), body), expected);
    let a = auth(json!({"hmac": {"provider": "github", "secret": secret}})).unwrap();
    let r = |v: &str| Req::new().body(body).h("x-hub-signature-256", v);
    assert!(r(&format!("sha256={expected}")).check(&a).is_ok());
    assert!(r(expected).check(&a).is_err(), "prefix required");
    assert!(
        r(&format!("sha256={}", hmac256_hex(b"x", body)))
            .check(&a)
            .is_err()
    );
}

#[test]
fn stripe_preset_any_v1_within_tolerance() {
    let secret = "whsec_test_secret";
    let body = br#"{"id":"evt_1"}"#;
    let t = NOW - 10;
    let good = hmac256_hex(
        secret.as_bytes(),
        format!("{t}.{}", std::str::from_utf8(body).unwrap()).as_bytes(),
    );
    let a = auth(json!({"hmac": {"provider": "stripe", "secret": secret}})).unwrap();
    let r = |v: &str| Req::new().body(body).h("stripe-signature", v);
    assert!(r(&format!("t={t},v1={good}")).check(&a).is_ok());
    assert!(
        r(&format!("t={t},v1={},v1={good},v0=abc", "00".repeat(32)))
            .check(&a)
            .is_ok()
    );
    assert!(
        r(&format!("t={t},v1={}", "00".repeat(32)))
            .check(&a)
            .is_err()
    );
    assert!(r(&format!("v1={good}")).check(&a).is_err());
    assert!(r(&format!("t={t}")).check(&a).is_err());
    let old = NOW - 301;
    let sig_old = hmac256_hex(
        secret.as_bytes(),
        format!("{old}.{}", std::str::from_utf8(body).unwrap()).as_bytes(),
    );
    assert_eq!(
        r(&format!("t={old},v1={sig_old}")).check(&a),
        Err(STALE.into())
    );
    let a =
        auth(json!({"hmac": {"provider": "stripe", "secret": secret, "tolerance_seconds": "600"}}))
            .unwrap();
    assert!(r(&format!("t={old},v1={sig_old}")).check(&a).is_ok());
}

#[test]
fn shopify_preset_base64() {
    let body = b"{\"order\":1}";
    let sig = hmac256_b64(b"shpss", body);
    let a = auth(json!({"hmac": {"provider": "shopify", "secret": "shpss"}})).unwrap();
    assert!(
        Req::new()
            .body(body)
            .h("x-shopify-hmac-sha256", &sig)
            .check(&a)
            .is_ok()
    );
    assert!(
        Req::new()
            .body(body)
            .h("x-shopify-hmac-sha256", &hmac256_b64(b"x", body))
            .check(&a)
            .is_err()
    );
}

#[test]
fn slack_preset_signs_version_timestamp_body() {
    let body = b"token=x&team_id=T1";
    let ts = (NOW + 5).to_string();
    let mut signed = format!("v0:{ts}:").into_bytes();
    signed.extend_from_slice(body);
    let sig = format!("v0={}", hmac256_hex(b"slack-secret", &signed));
    let a = auth(json!({"hmac": {"provider": "slack", "secret": "slack-secret"}})).unwrap();
    let r = |sig: &str, ts: &str| {
        Req::new()
            .body(body)
            .h("x-slack-signature", sig)
            .h("x-slack-request-timestamp", ts)
    };
    assert!(r(&sig, &ts).check(&a).is_ok());
    assert!(r(&sig, &(NOW + 6).to_string()).check(&a).is_err());
    assert!(
        Req::new()
            .body(body)
            .h("x-slack-signature", &sig)
            .check(&a)
            .is_err()
    );
    let stale = (NOW - 1000).to_string();
    let mut s2 = format!("v0:{stale}:").into_bytes();
    s2.extend_from_slice(body);
    let sig2 = format!("v0={}", hmac256_hex(b"slack-secret", &s2));
    assert_eq!(r(&sig2, &stale).check(&a), Err(STALE.into()));
}

#[test]
fn standard_webhooks_preset_uses_decoded_key() {
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let body = b"{\"type\":\"ping\"}";
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let ts = NOW.to_string();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    let sig = hmac256_b64(key, &signed);
    let a = auth(json!({"hmac": {"provider": "standard-webhooks", "secret": secret}})).unwrap();
    let r = |s: &str| {
        Req::new()
            .body(body)
            .h("webhook-id", id)
            .h("webhook-timestamp", &ts)
            .h("webhook-signature", s)
    };
    assert!(r(&format!("v1,{sig}")).check(&a).is_ok());
    assert!(
        r(&format!(
            "v1,{} v1a,xyz v1,{sig}",
            STANDARD.encode([0u8; 32])
        ))
        .check(&a)
        .is_ok()
    );
    assert!(
        r(&format!("v1,{}", hmac256_b64(secret.as_bytes(), &signed)))
            .check(&a)
            .is_err()
    );
    assert!(r(&sig).check(&a).is_err());
    // Secret without the prefix is accepted too.
    let a =
        auth(json!({"hmac": {"provider": "standard-webhooks", "secret": STANDARD.encode(key)}}))
            .unwrap();
    assert!(r(&format!("v1,{sig}")).check(&a).is_ok());
}

// --- jwt -------------------------------------------------------------------------------------

fn hs_token(claims: Value, secret: &[u8], alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn jwt_hs256_with_claims() {
    let a = auth(json!({"jwt": {"secret": "jwt-secret", "issuer": "me", "audience": ["x", "y"]}}))
        .unwrap();
    let bearer = |t: &str| Req::new().h("authorization", &format!("bearer {t}"));
    let good = hs_token(
        json!({"iss": "me", "aud": "y", "exp": NOW + 60}),
        b"jwt-secret",
        Algorithm::HS256,
    );
    assert!(bearer(&good).check(&a).is_ok());
    let aud_list = hs_token(
        json!({"iss": "me", "aud": ["z", "x"]}),
        b"jwt-secret",
        Algorithm::HS256,
    );
    assert!(bearer(&aud_list).check(&a).is_ok());
    for (claims, why) in [
        (json!({"iss": "me", "aud": "y", "exp": NOW - 1}), "expired"),
        (
            json!({"iss": "me", "aud": "y", "nbf": NOW + 10}),
            "not yet valid",
        ),
        (json!({"iss": "you", "aud": "y"}), "issuer"),
        (json!({"aud": "y"}), "missing issuer"),
        (json!({"iss": "me", "aud": "z"}), "audience"),
        (json!({"iss": "me"}), "missing audience"),
    ] {
        let t = hs_token(claims, b"jwt-secret", Algorithm::HS256);
        assert!(bearer(&t).check(&a).is_err(), "{why}");
    }
    let wrong_key = hs_token(json!({"iss": "me", "aud": "y"}), b"other", Algorithm::HS256);
    assert!(bearer(&wrong_key).check(&a).is_err());
    let wrong_alg = hs_token(
        json!({"iss": "me", "aud": "y"}),
        b"jwt-secret",
        Algorithm::HS512,
    );
    assert!(bearer(&wrong_alg).check(&a).is_err(), "only one algorithm");
    assert!(
        Req::new().h("authorization", &good).check(&a).is_err(),
        "needs Bearer"
    );
}

#[test]
fn jwt_leeway_and_verify_exp() {
    let expired = hs_token(json!({"exp": NOW - 5}), b"k", Algorithm::HS256);
    let r = Req::new().h("authorization", &format!("Bearer {expired}"));
    assert!(
        r.check(&auth(json!({"jwt": {"secret": "k"}})).unwrap())
            .is_err()
    );
    assert!(
        r.check(&auth(json!({"jwt": {"secret": "k", "leeway_seconds": 10}})).unwrap())
            .is_ok()
    );
    assert!(
        r.check(&auth(json!({"jwt": {"secret": "k", "verify_exp": false}})).unwrap())
            .is_ok()
    );
    // No exp at all is accepted (checked only when present).
    let t = hs_token(json!({"sub": "a"}), b"k", Algorithm::HS256);
    let r = Req::new().h("authorization", &format!("Bearer {t}"));
    assert!(
        r.check(&auth(json!({"jwt": {"secret": "k"}})).unwrap())
            .is_ok()
    );
}

#[test]
fn jwt_es256_public_key() {
    let a = auth(json!({"jwt": {"secret": EC_PUBLIC, "algorithm": "es256"}})).unwrap();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({"exp": NOW + 5}),
        &key,
    )
    .unwrap();
    assert!(
        Req::new()
            .h("authorization", &format!("Bearer {t}"))
            .check(&a)
            .is_ok()
    );
    // An HS256 token "signed" with the public key text must not pass (algorithm confusion).
    let forged = hs_token(
        json!({"exp": NOW + 5}),
        EC_PUBLIC.as_bytes(),
        Algorithm::HS256,
    );
    assert!(
        Req::new()
            .h("authorization", &format!("Bearer {forged}"))
            .check(&a)
            .is_err()
    );
}

// --- ordering --------------------------------------------------------------------------------

#[test]
fn every_configured_method_must_pass_in_order() {
    let a = auth(json!({
        "ip_whitelist": ["198.51.100.0/24"],
        "authorization": "Bearer t",
        "header_auth": {"api_key": "k"},
    }))
    .unwrap();
    assert_eq!(
        a.methods(),
        vec!["ip_whitelist", "authorization", "header_auth"]
    );
    let ok = Req::new()
        .h("authorization", "Bearer t")
        .h("x-api-key", "k");
    assert!(ok.check(&a).is_ok());
    let mut bad_ip = Req::new()
        .h("authorization", "Bearer t")
        .h("x-api-key", "k");
    bad_ip.peer = "192.0.2.1".parse().unwrap();
    assert_eq!(bad_ip.check(&a), Err("IP address not allowed".into()));
    let no_key = Req::new().h("authorization", "Bearer t");
    assert!(
        no_key.check(&a).unwrap_err().contains("X-API-Key")
            || no_key.check(&a).unwrap_err().contains("x-api-key")
    );
    assert!(format!("{a:?}").contains("header_auth"));
}
