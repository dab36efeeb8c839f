use super::*;
use crate::cleanup::CleanupMode;
use serde_json::json;
use std::os::unix::fs::symlink;

fn input<'a>(
    headers: &'a Map<String, Value>,
    payload: &'a Value,
    ts: &'a Timestamp,
) -> LogInput<'a> {
    LogInput {
        webhook_id: "hook",
        namespace: None,
        received_at: ts,
        headers,
        payload,
    }
}

// --- log -------------------------------------------------------------------------------------

#[test]
fn log_record_shape_and_redaction() {
    let ts = Timestamp::now();
    let headers =
        json!({"content-type": "application/json", "X-Session-Id": "abc", "Cookie": "c=1"});
    let payload =
        json!({"user": "bob", "db-url": "postgres://x", "nested": {"ssn": "123"}, "n": 1});
    let s = LogSettings::default();
    // Cleanup off to see the log module's own redaction.
    let line = render_log(
        &s,
        &Cleanup::default_for(false),
        &input(headers.as_object().unwrap(), &payload, &ts),
    );
    assert!(!line.contains('\n'));
    let rec: Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&String> = rec.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "webhook_id",
            "namespace",
            "received_at",
            "headers",
            "payload"
        ]
    );
    assert_eq!(rec["namespace"], Value::Null);
    assert_eq!(rec["headers"]["X-Session-Id"], LOG_REDACTED);
    assert_eq!(rec["headers"]["Cookie"], LOG_REDACTED);
    assert_eq!(rec["headers"]["content-type"], "application/json");
    assert_eq!(rec["payload"]["db-url"], LOG_REDACTED);
    assert_eq!(rec["payload"]["nested"]["ssn"], LOG_REDACTED);
    assert_eq!(rec["payload"]["user"], "bob");
}

#[test]
fn log_without_redaction_applies_cleanup_and_pretty_print() {
    let ts = Timestamp::now();
    let headers = json!({"authorization": "Bearer x"});
    let payload = json!({"password": "p", "cookie": "c"});
    let s = LogSettings {
        pretty_print: true,
        redact_sensitive: false,
    };
    let text = render_log(
        &s,
        &Cleanup::default_for(true),
        &input(headers.as_object().unwrap(), &payload, &ts),
    );
    assert!(text.contains('\n'));
    let rec: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rec["headers"]["authorization"], crate::cleanup::REDACTED);
    assert_eq!(rec["payload"]["password"], crate::cleanup::REDACTED);
    assert_eq!(rec["payload"]["cookie"], "c");
}

#[test]
fn log_truncates_long_strings() {
    let ts = Timestamp::now();
    let headers = Map::new();
    let payload = json!({"big": "é".repeat(LOG_MAX_STRING_CHARS + 5), "ok": "x".repeat(LOG_MAX_STRING_CHARS)});
    let line = render_log(
        &LogSettings::default(),
        &Cleanup::default_for(false),
        &input(&headers, &payload, &ts),
    );
    let rec: Value = serde_json::from_str(&line).unwrap();
    let big = rec["payload"]["big"].as_str().unwrap();
    assert!(big.ends_with(LOG_TRUNCATED));
    assert_eq!(
        big.chars().count(),
        LOG_MAX_STRING_CHARS + LOG_TRUNCATED.chars().count()
    );
    assert_eq!(
        rec["payload"]["ok"].as_str().unwrap().len(),
        LOG_MAX_STRING_CHARS
    );
}

// --- save_to_disk: configuration --------------------------------------------------------------

fn base() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn s(path: &str, base: &Path) -> Result<SaveToDiskSettings, String> {
    SaveToDiskSettings::new(path, Some(base.to_str().unwrap())).map_err(|e| e.to_string())
}

#[test]
fn path_traversal_in_any_encoding_is_rejected() {
    let b = base();
    for bad in [
        "..",
        "../x",
        "a/../../x",
        "a/%2e%2e/x",
        "%2E%2E",
        "a/%252e%252e/b",
        "a\\..\\b",
        "a%00b",
        "a%2500b",
    ] {
        let e = s(bad, b.path()).unwrap_err();
        assert!(e.starts_with("module-config.path"), "{bad}: {e}");
    }
    assert!(s("a/b..c", b.path()).is_ok(), "'..' inside a name is fine");
    assert!(s(".", b.path()).is_ok());
}

#[test]
fn base_dir_rules() {
    for bad in [
        "/etc",
        "/etc/webhooks",
        "/usr/share/x",
        "/var/lib/app",
        "/proc",
        "/private/etc/x",
    ] {
        assert!(SaveToDiskSettings::new(".", Some(bad)).is_err(), "{bad}");
    }
    assert!(SaveToDiskSettings::new(".", Some("/srv/../etc")).is_err());
    let b = base();
    // A symlink pointing into a system directory is resolved before the check.
    let link = b.path().join("sneaky");
    symlink("/etc", &link).unwrap();
    assert!(SaveToDiskSettings::new(".", Some(link.to_str().unwrap())).is_err());
    // Not a system directory by prefix only.
    let ok = b.path().join("etcetera");
    assert!(SaveToDiskSettings::new(".", Some(ok.to_str().unwrap())).is_ok());
}

#[test]
fn target_must_stay_inside_base_and_be_a_directory() {
    let b = base();
    let outside = base();
    assert!(
        s(outside.path().to_str().unwrap(), b.path())
            .unwrap_err()
            .contains("escapes")
    );
    symlink(outside.path(), b.path().join("out")).unwrap();
    assert!(s("out/x", b.path()).unwrap_err().contains("escapes"));
    fs::write(b.path().join("file"), b"x").unwrap();
    assert!(s("file", b.path()).unwrap_err().contains("not a directory"));
    let inside = b.path().join("abs");
    assert!(
        s(inside.to_str().unwrap(), b.path()).is_ok(),
        "absolute inside base is fine"
    );
}

#[test]
fn parse_warns_about_ignored_keys() {
    let b = base();
    let m = json!({"path": "x", "base_dir": b.path().to_str().unwrap(), "format": "json", "append": true, "zzz": 1});
    let mut w = Warnings::new("e");
    SaveToDiskSettings::parse(m.as_object().unwrap(), &mut w).unwrap();
    assert_eq!(w.list.len(), 3, "{:?}", w.list);
}

// --- save_to_disk: writing --------------------------------------------------------------------

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_atomically_with_private_modes() {
    let b = base();
    let st = s("deep/er", b.path()).unwrap();
    let doc = json!({"a": 1, "password": "p"});
    let p = st
        .write(&Cleanup::default_for(true), &doc, "msg_0123")
        .unwrap();
    assert_eq!(
        p,
        fs::canonicalize(b.path())
            .unwrap()
            .join("deep/er/msg_0123.json")
    );
    let written: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"a": 1, "password": crate::cleanup::REDACTED})
    );
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(&b.path().join("deep")), 0o700);
    assert_eq!(mode(&b.path().join("deep/er")), 0o700);
    // No temp files left behind; a redelivery overwrites the same file.
    st.write(&Cleanup::default_for(false), &json!(2), "msg_0123")
        .unwrap();
    let names: Vec<_> = fs::read_dir(b.path().join("deep/er"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
    assert_eq!(fs::read_to_string(&p).unwrap(), "2");
}

#[test]
fn write_rechecks_the_path() {
    let b = base();
    let outside = base();
    let st = s("later", b.path()).unwrap();
    // The directory is swapped for a symlink pointing outside after load.
    symlink(outside.path(), b.path().join("later")).unwrap();
    let e = st
        .write(&Cleanup::default_for(false), &json!(1), "x")
        .unwrap_err();
    assert!(matches!(e, SaveError::Unsafe(_)), "{e}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn final_symlink_is_replaced_not_followed() {
    let b = base();
    let victim = base();
    let target = victim.path().join("victim.json");
    fs::write(&target, b"original").unwrap();
    let st = s(".", b.path()).unwrap();
    symlink(&target, b.path().join("m1.json")).unwrap();
    st.write(&Cleanup::default_for(false), &json!({"x": 1}), "m1")
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"original");
    assert!(
        !fs::symlink_metadata(b.path().join("m1.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn file_names_are_plain() {
    let b = base();
    let st = s(".", b.path()).unwrap();
    for bad in ["", "../x", "a/b", ".hidden", "a\0b"] {
        assert!(
            st.write(&Cleanup::default_for(false), &json!(1), bad)
                .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn disk_document_follows_the_content_table() {
    assert_eq!(
        disk_document(b"{\"a\":1}", Some(&json!({"a": 1}))),
        json!({"a": 1})
    );
    assert_eq!(disk_document(b"plain text", None), json!("plain text"));
    assert_eq!(
        disk_document(&[0xff, 0x00], None),
        json!({"body_b64": "/wA="})
    );
}

#[test]
fn umask_does_not_widen_or_narrow_modes() {
    // Modes are set explicitly after creation, so they hold whatever the process umask is.
    let b = base();
    let st = s("u", b.path()).unwrap();
    let p = st
        .write(
            &Cleanup {
                enabled: false,
                mode: CleanupMode::Mask,
                fields: vec![],
                explicit: false,
            },
            &json!(1),
            "f",
        )
        .unwrap();
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(p.parent().unwrap()), 0o700);
}
