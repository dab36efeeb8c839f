//! Webhook bodies (§2.4): character-set decoding, the JSON limits check and the parse, under
//! each content type the first byte picks; and the identifiers of the ingress path (§2.2).
#![no_main]

use connect_protocol::{ids, json};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/json; charset=utf-16"),
    Some("application/json; charset=UTF-16LE"),
    Some("application/json; charset=utf-16be"),
    Some("application/json; charset=latin-1"),
    Some("application/json; charset=iso-8859-1"),
    Some("text/plain; charset=\"utf-32\""),
    Some("application/json; charset="),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    let checked = json::check_payload(body, ct);
    let parsed = json::parse_payload(body, ct);
    // The validating pass and the parse agree on what is accepted.
    assert_eq!(checked.is_ok(), parsed.is_ok(), "{checked:?} vs {parsed:?}");
    let _ = json::decode_text(body, ct);
    let _ = json::payload_of(body, ct);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = json::max_depth(text);
        let _ = ids::validate_webhook_id(text.trim());
        let _ = ids::is_valid_namespace(text);
        let _ = ids::is_valid_channel_name(text);
    }
});
