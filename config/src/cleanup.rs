//! Credential cleanup (CONFIG §2.7, PROTOCOL §3.3): masks or removes credential-looking fields of
//! payloads, headers and query strings before a module sees them.
//!
//! The name rules are the reference's, kept for compatibility even though they are broad
//! (`author` and `monkey` match).

use serde_json::{Map, Value};

use crate::fields::{self, Warnings};

/// Replacement for masked primitive values.
pub const REDACTED: &str = "***REDACTED***";
/// Containers deeper than this are left as they are.
pub const MAX_DEPTH: usize = 100;

const NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "private_key",
    "privatekey",
    "api_secret",
    "client_secret",
    "bearer",
    "x-api-key",
    "x-auth-token",
    "x-access-token",
    "session_id",
    "sessionid",
    "session_token",
    "csrf_token",
    "csrf",
    "oauth_token",
    "oauth_secret",
    "consumer_secret",
    "token_secret",
];

/// Substrings equivalent to the patterns `.*password.*`, `.*secret.*`, `.*token.*`, `.*key.*`,
/// `.*credential.*`, `.*auth.*`; `x-.*-key`, `x-.*-token`, `x-.*-secret` are subsumed by them.
const PATTERNS: &[&str] = &["password", "secret", "token", "key", "credential", "auth"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupMode {
    Mask,
    Remove,
}

/// The `credential_cleanup` block of one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cleanup {
    pub enabled: bool,
    pub mode: CleanupMode,
    /// Extra names, lower-cased.
    pub fields: Vec<String>,
    /// The entry had a `credential_cleanup` block (module mode applies cleanup only then, §7.6).
    pub explicit: bool,
}

impl Cleanup {
    /// Module defaults: on for `log` and `save_to_disk`, off for `webhook_connect`.
    pub fn default_for(enabled: bool) -> Self {
        Cleanup {
            enabled,
            mode: CleanupMode::Mask,
            fields: Vec::new(),
            explicit: false,
        }
    }

    pub(crate) fn parse(
        v: Option<&Value>,
        default_enabled: bool,
        w: &mut Warnings<'_>,
    ) -> Result<Self, String> {
        let mut c = Cleanup::default_for(default_enabled);
        let Some(v) = v else { return Ok(c) };
        let m = fields::object(v, "credential_cleanup")?;
        w.unknown_keys(m, "credential_cleanup.", &["enabled", "mode", "fields"]);
        c.explicit = true;
        if let Some(v) = m.get("enabled").filter(|v| !v.is_null()) {
            c.enabled = fields::boolean(v, "credential_cleanup.enabled")?;
        }
        if let Some(v) = m.get("mode").filter(|v| !v.is_null()) {
            c.mode = match fields::string(v, "credential_cleanup.mode")?
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "mask" => CleanupMode::Mask,
                "remove" => CleanupMode::Remove,
                _ => return Err("credential_cleanup.mode: must be mask or remove".into()),
            };
        }
        if let Some(v) = m.get("fields").filter(|v| !v.is_null()) {
            let arr = v.as_array().ok_or_else(|| {
                "credential_cleanup.fields: must be an array of strings".to_string()
            })?;
            for (i, f) in arr.iter().enumerate() {
                let s = fields::string(f, &format!("credential_cleanup.fields[{i}]"))?;
                c.fields.push(s.trim().to_lowercase());
            }
        }
        Ok(c)
    }

    /// The cleanup the connector's module mode applies: only an explicit block counts there,
    /// because the cloud side already decided what is relayed (§7.6).
    pub fn for_module_mode(&self) -> Cleanup {
        let mut c = self.clone();
        c.enabled = self.explicit && self.enabled;
        c
    }

    /// Whether `name` (a payload key, header name or query parameter name) is a credential name.
    pub fn is_credential_name(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        NAMES.contains(&lower.as_str())
            || self.fields.contains(&lower)
            || PATTERNS.iter().any(|p| lower.contains(p))
    }
}

/// Masks `v` when cleanup is enabled; returns it unchanged otherwise.
pub fn mask_value(v: &Value, c: &Cleanup) -> Value {
    if !c.enabled {
        return v.clone();
    }
    mask_at(v, c, 0)
}

fn mask_at(v: &Value, c: &Cleanup, depth: usize) -> Value {
    if depth >= MAX_DEPTH {
        return v.clone();
    }
    match v {
        Value::Object(map) => Value::Object(mask_map(map, c, depth)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|x| mask_at(x, c, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

fn mask_map(map: &Map<String, Value>, c: &Cleanup, depth: usize) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        let container = matches!(v, Value::Object(_) | Value::Array(_));
        if container || !c.is_credential_name(k) {
            // Containers under credential names are searched, not masked wholesale.
            out.insert(k.clone(), mask_at(v, c, depth + 1));
        } else if c.mode == CleanupMode::Mask {
            out.insert(k.clone(), Value::String(REDACTED.into()));
        }
    }
    out
}

/// Masks a header map (`name → value`) when cleanup is enabled.
pub fn mask_headers(headers: &Map<String, Value>, c: &Cleanup) -> Map<String, Value> {
    if !c.enabled {
        return headers.clone();
    }
    mask_map(headers, c, 0)
}

/// Masks the values of credential-named parameters of a raw query string (no `?`) when cleanup
/// is enabled; `remove` drops those parameters. Other parameters keep their exact raw text.
pub fn mask_query(q: &str, c: &Cleanup) -> String {
    if !c.enabled || q.is_empty() {
        return q.to_string();
    }
    let mut parts = Vec::new();
    for pair in q.split('&') {
        let k = pair.split_once('=').map_or(pair, |(k, _)| k);
        let name = crate::auth::decode_query_component(k).unwrap_or_else(|| k.to_string());
        if pair.is_empty() || !c.is_credential_name(&name) {
            parts.push(pair.to_string());
        } else if c.mode == CleanupMode::Mask {
            parts.push(format!("{k}={REDACTED}"));
        }
    }
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn on(mode: CleanupMode) -> Cleanup {
        Cleanup {
            enabled: true,
            mode,
            fields: vec!["customer_ref".into()],
            explicit: true,
        }
    }

    #[test]
    fn names_follow_the_fixed_list_and_patterns() {
        let c = on(CleanupMode::Mask);
        for n in [
            "password",
            "PWD",
            "csrf",
            "session_id",
            "X-Custom-Key",
            "x-auth-token",
            "author",
            "monkey",
            "Customer_Ref",
            "my_secret_thing",
            "bearer",
        ] {
            assert!(c.is_credential_name(n), "{n}");
        }
        for n in ["user", "amount", "id", "sessions", "customer"] {
            assert!(!c.is_credential_name(n), "{n}");
        }
    }

    #[test]
    fn mask_replaces_primitives_and_searches_containers() {
        let c = on(CleanupMode::Mask);
        let v = json!({
            "user": "bob", "password": "hunter2", "n": 5,
            "auth": {"token": 42, "scheme": "basic", "list": [{"api_key": null}]},
            "items": [{"secret": true, "name": "x"}],
        });
        assert_eq!(
            mask_value(&v, &c),
            json!({
                "user": "bob", "password": REDACTED, "n": 5,
                "auth": {"token": REDACTED, "scheme": "basic", "list": [{"api_key": REDACTED}]},
                "items": [{"secret": REDACTED, "name": "x"}],
            })
        );
    }

    #[test]
    fn remove_drops_keys() {
        let c = on(CleanupMode::Remove);
        let v = json!({"user": "bob", "password": "x", "auth": {"token": 1, "a": 2}});
        assert_eq!(mask_value(&v, &c), json!({"user": "bob", "auth": {"a": 2}}));
    }

    #[test]
    fn disabled_cleanup_changes_nothing() {
        let c = Cleanup::default_for(false);
        let v = json!({"password": "x"});
        assert_eq!(mask_value(&v, &c), v);
        assert_eq!(mask_query("token=a", &c), "token=a");
    }

    #[test]
    fn headers_and_query_are_masked() {
        let c = on(CleanupMode::Mask);
        let h = json!({"authorization": "Bearer x", "content-type": "application/json", "x-api-key": "k"});
        assert_eq!(
            Value::Object(mask_headers(h.as_object().unwrap(), &c)),
            json!({"authorization": REDACTED, "content-type": "application/json", "x-api-key": REDACTED})
        );
        assert_eq!(
            mask_query("a=1&api%5Fkey=s&token&b=%20", &c),
            format!("a=1&api%5Fkey={REDACTED}&token={REDACTED}&b=%20")
        );
        assert_eq!(mask_query("a=1&token=x", &on(CleanupMode::Remove)), "a=1");
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!({"password": "x"});
        for _ in 0..150 {
            v = json!({"n": v});
        }
        // Must not overflow the stack; the deep value is left as is.
        let out = mask_value(&v, &on(CleanupMode::Mask));
        assert_eq!(out, v);
    }

    #[test]
    fn parse_block() {
        let mut w = Warnings::new("e");
        let c = Cleanup::parse(
            Some(&json!({"enabled": "true", "mode": "remove", "fields": ["Foo"], "x": 1})),
            false,
            &mut w,
        )
        .unwrap();
        assert!(c.enabled && c.explicit && c.mode == CleanupMode::Remove);
        assert_eq!(c.fields, vec!["foo"]);
        assert_eq!(w.list.len(), 1);
        assert!(Cleanup::parse(Some(&json!({"mode": "hide"})), true, &mut w).is_err());
        assert!(Cleanup::parse(Some(&json!([])), true, &mut w).is_err());
        let d = Cleanup::parse(None, true, &mut w).unwrap();
        assert!(d.enabled && !d.explicit);
        assert!(!d.for_module_mode().enabled);
        assert!(c.for_module_mode().enabled);
    }
}
