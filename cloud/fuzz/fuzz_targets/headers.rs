//! Headers: the bearer / bare token of the connector, admin and `/metrics` endpoints, the
//! reload API's token, the §2.3 header limits, the client address behind proxies, and every
//! webhook authentication method (Basic, JWT, HMAC with and without a provider, header and
//! query keys). The input is `query\n` then `name: value` lines; the whole input is the body.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use connect_cloud::http::parsers;
use connect_config::{AuthRequest, Lookup, MapEnv, WebhookSet};
use libfuzzer_sys::fuzz_target;

/// One webhook per authentication method, so that each is reached (all configured methods
/// must pass, in a fixed order, so one webhook with all of them would stop at the first).
fn webhooks() -> &'static (WebhookSet, Vec<&'static str>) {
    static SET: OnceLock<(WebhookSet, Vec<&'static str>)> = OnceLock::new();
    SET.get_or_init(|| {
        let doc = serde_json::json!({
            "authz": {"module": "log", "authorization": "Bearer s3cret"},
            "basic": {"module": "log", "basic_auth": {"username": "u", "password": "p"}},
            "jwt": {"module": "log", "jwt": {"secret": "k", "issuer": "i", "audience": ["a"]}},
            "hmac": {"module": "log", "hmac": {"secret": "k", "header": "X-Sig", "encoding": "base64", "prefix": "sha256="}},
            "stripe": {"module": "log", "hmac": {"secret": "k", "provider": "stripe"}},
            "github": {"module": "log", "hmac": {"secret": "k", "provider": "github"}},
            "slack": {"module": "log", "hmac": {"secret": "k", "provider": "slack"}},
            "hdr": {"module": "log", "header_auth": {"header_name": "X-Key", "api_key": "k"}},
            "qry": {"module": "log", "query_auth": {"parameter_name": "key", "api_key": "k"}},
            "ips": {"module": "log", "ip_whitelist": ["10.0.0.0/8", "::1"], "trusted_proxies": ["127.0.0.1"]}
        });
        let set = WebhookSet::from_json(&doc, None, &MapEnv::default(), None)
            .expect("the fuzz webhooks are valid");
        let ids = vec![
            "authz", "basic", "jwt", "hmac", "stripe", "github", "slack", "hdr", "qry", "ips",
        ];
        (set, ids)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let query = lines
        .next()
        .and_then(|q| std::str::from_utf8(q).ok())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(k, v);
    }
    let _ = parsers::bearer_token(&headers);
    let _ = parsers::reload_token(&headers);
    let _ = parsers::check_header_limits(&headers, 100, 8192);
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let trusted = ["127.0.0.0/8".parse().expect("net")];
    let _ = connect_config::client_ip(peer, &headers, &trusted);
    let (set, ids) = webhooks();
    for id in ids {
        let Lookup::Found(w) = set.lookup(None, id) else {
            panic!("webhook {id} missing");
        };
        let _ = w.authenticate(&AuthRequest {
            headers: &headers,
            query,
            peer,
            body: data,
            global_trusted_proxies: &trusted,
            now_unix: 1_765_000_000,
        });
    }
});
