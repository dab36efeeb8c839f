use super::*;
use crate::placeholders::{MapEnv, SecretLookup};
use serde_json::json;

fn env() -> MapEnv {
    MapEnv::new([
        ("TTL", "3600"),
        ("TOK", "a-very-long-channel-token"),
        ("EMPTY", ""),
    ])
}

fn parse(v: Value) -> Result<Webhook, String> {
    Webhook::parse("hook", None, &v, &env(), None)
}

fn connect(extra: Value) -> Value {
    let mut mc = json!({"channel": "team-alpha", "channel_token": "a-very-long-channel-token"});
    for (k, v) in extra.as_object().unwrap() {
        mc[k] = v.clone();
    }
    json!({"module": "webhook_connect", "module-config": mc})
}

#[test]
fn minimal_webhook_connect_entry_uses_defaults() {
    let w = parse(connect(json!({}))).unwrap();
    assert_eq!(w.key, "hook");
    assert_eq!(w.data_type, DataType::Json);
    let s = w.connect_settings().unwrap();
    assert_eq!(
        (
            s.ttl_seconds,
            s.max_queue_size,
            s.max_connections,
            s.max_in_flight,
            s.ack_timeout_seconds,
            s.max_delivery_attempts,
            s.retry_backoff_max_seconds,
            s.dlq_retention_seconds
        ),
        (86_400, 10_000, 10, 100, 30, 10, 60, 604_800)
    );
    assert!(
        !w.cleanup.enabled,
        "cleanup off by default for webhook_connect"
    );
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    assert!(w.rate_limit.is_none() && w.json_schema.is_none());
    assert!(
        !format!("{s:?}").contains("a-very-long"),
        "Debug hides the token"
    );
}

#[test]
fn keys_for_namespaces() {
    assert_eq!(entry_key(None, "a"), "a");
    assert_eq!(entry_key(Some("default"), "a"), "a");
    assert_eq!(entry_key(Some("ns1"), "a"), "ns1/a");
    let w = Webhook::parse("a", Some("ns1"), &connect(json!({})), &env(), None).unwrap();
    assert_eq!(w.key, "ns1/a");
    assert_eq!(w.namespace.as_deref(), Some("ns1"));
}

#[test]
fn module_config_ranges_are_enforced() {
    for (k, bad, good) in [
        ("ttl_seconds", json!(0), json!(31_536_000)),
        ("ttl_seconds", json!(31_536_001), json!(1)),
        ("max_queue_size", json!(10_000_001), json!(10_000_000)),
        ("max_connections", json!(10_001), json!(10_000)),
        ("max_in_flight", json!(0), json!(10_000)),
        ("ack_timeout_seconds", json!(4), json!(5)),
        ("ack_timeout_seconds", json!(3601), json!(3600)),
        ("max_delivery_attempts", json!(1001), json!(1000)),
        ("retry_backoff_max_seconds", json!(0), json!(3600)),
        ("dlq_retention_seconds", json!(59), json!(0)),
        ("dlq_retention_seconds", json!(31_536_001), json!(60)),
        ("ttl_seconds", json!("abc"), json!("{$TTL}")),
        ("ttl_seconds", json!(-5), json!("7")),
        ("ttl_seconds", json!(1.5), json!(2.0)),
    ] {
        let e = parse(connect(json!({k: bad.clone()}))).unwrap_err();
        assert!(e.contains(k), "{k}={bad}: {e}");
        assert!(
            parse(connect(json!({k: good.clone()}))).is_ok(),
            "{k}={good}"
        );
    }
    let w = parse(connect(json!({"ttl_seconds": "{$TTL}"}))).unwrap();
    assert_eq!(w.connect_settings().unwrap().ttl_seconds, 3600);
}

#[test]
fn channel_and_token_rules() {
    for bad_channel in [
        json!("a..b"),
        json!("a/b"),
        json!(""),
        json!(5),
        json!("-x"),
    ] {
        let mut v = connect(json!({}));
        v["module-config"]["channel"] = bad_channel.clone();
        assert!(parse(v).unwrap_err().contains("channel"), "{bad_channel}");
    }
    let mut v = connect(json!({}));
    v["module-config"]
        .as_object_mut()
        .unwrap()
        .remove("channel_token");
    assert!(parse(v).unwrap_err().contains("channel_token"));
    let v = connect(json!({"channel_token": "{$EMPTY}"}));
    assert!(parse(v).unwrap_err().contains("channel_token"));
    let w = parse(connect(
        json!({"channel_token": "short", "include_message_id": true}),
    ))
    .unwrap();
    assert_eq!(w.warnings.len(), 2, "{:?}", w.warnings);
    assert!(
        w.warnings
            .iter()
            .all(|m| !m.contains("short\"") && m.starts_with("hook: "))
    );
}

#[test]
fn unknown_module_and_data_type_are_entry_errors() {
    assert!(
        parse(json!({"module": "rabbitmq"}))
            .unwrap_err()
            .contains("module")
    );
    assert!(parse(json!({"module": "kafka"})).is_err());
    assert!(parse(json!({})).unwrap_err().contains("module: required"));
    assert!(parse(json!({"module": 1})).is_err());
    assert!(
        parse(json!({"module": "log", "data_type": "xml"}))
            .unwrap_err()
            .contains("data_type")
    );
    assert!(
        parse(json!({"module": "log", "module-config": []}))
            .unwrap_err()
            .contains("module-config")
    );
    let w = parse(json!({"module": "log", "data_type": "blob"})).unwrap();
    assert_eq!(w.data_type, DataType::Blob);
    assert!(parse(json!("log")).is_err());
}

#[test]
fn bad_ids_are_entry_errors() {
    for id in ["stats", "a--b", "_x", "admin_x", "a b", ""] {
        let e = Webhook::parse(id, None, &json!({"module": "log"}), &env(), None).unwrap_err();
        assert!(e.contains("invalid webhook id"), "{id}: {e}");
    }
}

#[test]
fn unsupported_auth_and_chain_are_entry_errors() {
    for k in ["digest_auth", "oauth1", "oauth2", "recaptcha"] {
        let e = parse(json!({"module": "log", k: {"x": 1}})).unwrap_err();
        assert!(e.contains(k), "{e}");
    }
    assert!(
        parse(json!({"module": "log", "chain": ["a"]}))
            .unwrap_err()
            .contains("chain")
    );
    assert!(parse(json!({"module": "log", "chain": null})).is_ok());
}

#[test]
fn ignored_and_unknown_keys_warn() {
    let w = parse(json!({
        "module": "log", "retry": {"enabled": true}, "connection": "c",
        "chain-config": {}, "queue_name": "q", "require_https": true
    }))
    .unwrap();
    assert_eq!(w.warnings.len(), 5, "{:?}", w.warnings);
}

#[test]
fn placeholders_are_resolved_strictly() {
    let e = parse(json!({"module": "log", "authorization": "Bearer {$NOPE}"})).unwrap_err();
    assert!(e.contains("NOPE") && e.contains("authorization"), "{e}");
    // An empty default produces an empty auth block: fail closed.
    let e = parse(json!({"module": "log", "authorization": "{$NOPE:}"})).unwrap_err();
    assert!(e.contains("authorization"), "{e}");
}

#[test]
fn vault_placeholders_and_errors() {
    struct V;
    impl SecretSource for V {
        fn get(&self, path: &str, _field: &str) -> SecretLookup {
            match path {
                "ok" => SecretLookup::Value("from-vault-1234567".into()),
                "down" => SecretLookup::Unavailable("timeout".into()),
                _ => SecretLookup::Missing,
            }
        }
    }
    let v = connect(json!({"channel_token": "{$vault:ok#t}"}));
    let w = Webhook::parse("hook", None, &v, &env(), Some(&V)).unwrap();
    assert_eq!(
        w.connect_settings().unwrap().channel_token,
        "from-vault-1234567"
    );
    let v = connect(json!({"channel_token": "{$vault:down#t:dev-default-token}"}));
    let e = Webhook::parse("hook", None, &v, &env(), Some(&V)).unwrap_err();
    assert!(e.contains("down#t"), "{e}");
}

#[test]
fn rate_limit_block() {
    let w = parse(json!({"module": "log", "rate_limit": {}})).unwrap();
    assert_eq!(
        w.rate_limit,
        Some(RateLimitSpec {
            max_requests: 100,
            window_seconds: 60
        })
    );
    let w =
        parse(json!({"module": "log", "rate_limit": {"max_requests": "5", "window_seconds": 1}}))
            .unwrap();
    assert_eq!(w.rate_limit.unwrap().max_requests, 5);
    for bad in [
        json!({"max_requests": 0}),
        json!({"max_requests": 1_000_001}),
        json!({"window_seconds": 86_401}),
        json!([]),
    ] {
        assert!(
            parse(json!({"module": "log", "rate_limit": bad}))
                .unwrap_err()
                .contains("rate_limit")
        );
    }
}

#[test]
fn json_schema_rules() {
    let w = parse(json!({"module": "log", "json_schema": {"type": "object", "required": ["a"]}}))
        .unwrap();
    assert!(w.validate_schema(&json!({"a": 1})).is_ok());
    assert_eq!(w.validate_schema(&json!({})).unwrap_err().len(), 1);
    let w = parse(json!({"module": "log", "json_schema": {}})).unwrap();
    assert!(w.json_schema.is_none());
    assert_eq!(w.warnings.len(), 1);
    assert!(
        parse(json!({"module": "log", "data_type": "blob", "json_schema": {"type": "object"}}))
            .unwrap_err()
            .contains("json_schema")
    );
    assert!(
        parse(json!({"module": "log", "json_schema": {"type": 5}}))
            .unwrap_err()
            .contains("json_schema")
    );
    assert!(parse(json!({"module": "log", "json_schema": "x"})).is_err());
}

#[test]
fn cleanup_defaults_depend_on_the_module() {
    assert!(parse(json!({"module": "log"})).unwrap().cleanup.enabled);
    let w = parse(json!({"module": "webhook_connect", "module-config": {"channel": "c", "channel_token": "a-very-long-channel-token"},
                         "credential_cleanup": {"enabled": true}}))
    .unwrap();
    assert!(w.cleanup.enabled && w.cleanup.explicit);
}

#[test]
fn log_module_config() {
    let w = parse(json!({"module": "log", "module-config": {"pretty_print": "yes", "redact_sensitive": false}})).unwrap();
    assert_eq!(
        w.module,
        Module::Log(LogSettings {
            pretty_print: true,
            redact_sensitive: false
        })
    );
    assert!(parse(json!({"module": "log", "module-config": {"pretty_print": "maybe"}})).is_err());
}

#[test]
fn authenticate_delegates_to_the_auth_blocks() {
    let w = parse(json!({"module": "log", "header_auth": {"api_key": "k"}})).unwrap();
    let mut h = http::HeaderMap::new();
    let req = |h: &http::HeaderMap| {
        w.authenticate(&AuthRequest {
            headers: h,
            query: "",
            peer: "127.0.0.1".parse().unwrap(),
            body: b"",
            global_trusted_proxies: &[],
            now_unix: 0,
        })
    };
    assert!(req(&h).is_err());
    h.insert("x-api-key", http::HeaderValue::from_static("K"));
    assert!(req(&h).is_ok());
}
