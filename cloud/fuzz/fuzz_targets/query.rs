//! Query strings: percent-decoding, `?token=`, the `/connect/ack` and long-poll parameters, and
//! `query_auth`'s lookup. None may panic, whatever the bytes (a raw `%aé` once did).
#![no_main]

use connect_cloud::http::parsers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = parsers::decode_query_value(q);
    if !q.contains('%') {
        // Without escapes, decoding only turns `+` into a space.
        assert_eq!(decoded.as_deref(), Ok(q.replace('+', " ").as_str()));
    }
    let _ = parsers::query_token(q);
    if let Ok(a) = parsers::parse_ack_query(Some(q)) {
        assert!(!a.message_id.is_empty());
        assert!(matches!(a.status.as_str(), "ack" | "nack" | "extend"));
    }
    if let Ok(p) = parsers::parse_poll_query(Some(q)) {
        assert!((1..=60).contains(&p.timeout));
        assert!((1..=100).contains(&p.max_messages));
    }
    let _ = connect_config::auth::query_param(q, "api_key");
});
