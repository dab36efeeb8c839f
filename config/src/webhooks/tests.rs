use super::*;
use crate::placeholders::MapEnv;
use serde_json::json;

const TOK: &str = "tok-aaaaaaaaaaaaaaaa";

fn set(doc: Value) -> WebhookSet {
    WebhookSet::from_json(&doc, None, &MapEnv::default(), None).unwrap()
}

fn hook(channel: &str, token: &str, extra: Value) -> Value {
    let mut mc = json!({"channel": channel, "channel_token": token});
    for (k, v) in extra.as_object().unwrap() {
        mc[k] = v.clone();
    }
    json!({"module": "webhook_connect", "module-config": mc})
}

#[test]
fn non_object_document_is_fatal() {
    for doc in [json!([]), json!("x"), json!(null)] {
        assert!(WebhookSet::from_json(&doc, None, &MapEnv::default(), None).is_err());
    }
    assert!(set(json!({})).is_empty());
}

#[test]
fn bad_entries_are_disabled_others_load() {
    let s = set(json!({
        "good": {"module": "log"},
        "bad": {"module": "rabbitmq"},
        "stats": {"module": "log"},
    }));
    assert_eq!(s.len(), 3);
    assert_eq!(s.webhooks().count(), 1);
    let errs: Vec<&str> = s.errors().iter().map(|e| e.webhook.as_str()).collect();
    assert_eq!(errs, vec!["bad", "stats"]);
    assert!(matches!(s.lookup(None, "good"), Lookup::Found(w) if w.id == "good"));
    assert!(matches!(s.lookup(None, "bad"), Lookup::Disabled(r) if r.contains("module")));
}

#[test]
fn default_is_a_catch_all_but_disabled_ids_never_fall_back() {
    let s = set(json!({
        "default": {"module": "log"},
        "broken": {"module": "log", "authorization": ""},
        "real": {"module": "log"},
    }));
    assert!(matches!(s.lookup(None, "real"), Lookup::Found(w) if w.id == "real"));
    assert!(matches!(s.lookup(None, "anything"), Lookup::Found(w) if w.id == "default"));
    assert!(matches!(s.lookup(None, "broken"), Lookup::Disabled(_)));
    assert!(matches!(s.lookup(Some("other"), "real"), Lookup::NotFound));
    let s = set(json!({"real": {"module": "log"}}));
    assert!(matches!(s.lookup(None, "x"), Lookup::NotFound));
    let s = set(json!({"default": {"module": "nope"}}));
    assert!(matches!(s.lookup(None, "x"), Lookup::Disabled(_)));
}

#[test]
fn namespaces_are_separate_maps() {
    let s = WebhookSet::from_entries(
        [
            (
                Some("a".to_string()),
                "default".to_string(),
                json!({"module": "log"}),
            ),
            (
                Some("b".to_string()),
                "x".to_string(),
                json!({"module": "log"}),
            ),
        ],
        &MapEnv::default(),
        None,
    );
    assert!(matches!(s.lookup(Some("a"), "x"), Lookup::Found(w) if w.key == "a/default"));
    assert!(matches!(s.lookup(Some("b"), "x"), Lookup::Found(w) if w.key == "b/x"));
    assert!(matches!(s.lookup(Some("b"), "y"), Lookup::NotFound));
    assert!(s.has_namespace(Some("a")) && !s.has_namespace(Some("c")));
}

#[test]
fn channels_have_an_owner_and_sorted_members() {
    let s = set(json!({
        "zeta": hook("team", TOK, json!({"max_connections": 5})),
        "alpha": hook("team", TOK, json!({})),
        "solo": hook("other", TOK, json!({})),
        "logger": {"module": "log"},
    }));
    let ch = s.channels();
    assert_eq!(ch.len(), 2);
    assert_eq!(s.channel_count(), 2);
    let team = &ch["team"];
    assert_eq!(team.owner, "alpha");
    assert_eq!(team.webhook_keys, vec!["alpha", "zeta"]);
    assert_eq!(team.settings.max_connections, 10);
    assert!(
        s.warnings()
            .iter()
            .any(|w| w.contains("zeta") && w.contains("max_connections")),
        "{:?}",
        s.warnings()
    );
}

#[test]
fn conflicting_channel_tokens_disable_the_non_owner() {
    let s = set(json!({
        "a": hook("team", TOK, json!({})),
        "b": hook("team", "another-token-xxxxxxxx", json!({})),
    }));
    assert!(matches!(s.lookup(None, "a"), Lookup::Found(_)));
    let Lookup::Disabled(reason) = s.lookup(None, "b") else {
        panic!("b must be disabled")
    };
    assert!(
        reason.contains("channel_token") && !reason.contains("another-token"),
        "{reason}"
    );
    assert_eq!(s.channels()["team"].webhook_keys, vec!["a"]);
    assert_eq!(s.errors().len(), 1);
    assert_eq!(s.errors()[0].webhook, "b");
}

#[test]
fn channel_tokens_conflict_across_namespaces() {
    let s = WebhookSet::from_entries(
        [
            (
                Some("ns2".to_string()),
                "x".to_string(),
                hook("team", "zzzzzzzzzzzzzzzzzz", json!({})),
            ),
            (
                Some("ns1".to_string()),
                "y".to_string(),
                hook("team", TOK, json!({})),
            ),
        ],
        &MapEnv::default(),
        None,
    );
    assert_eq!(s.channels()["team"].owner, "ns1/y");
    assert_eq!(s.errors()[0].webhook, "ns2/x");
}

#[test]
fn warnings_are_collected_per_entry() {
    let s = set(json!({"a": {"module": "log", "topic": "t"}}));
    assert_eq!(
        s.warnings(),
        &["a: unknown key 'topic' ignored".to_string()]
    );
}
