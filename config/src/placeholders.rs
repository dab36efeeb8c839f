//! Placeholder resolution (CONFIG §3): `{$NAME}`, `{$NAME:default}`, `{$vault:path#field}` and
//! `{$vault:path#field:default}` in every string value of a configuration document.
//!
//! Resolution is strict and verbatim: an unset variable without a default is an error naming the
//! variable (never a guessable literal), inserted values are never altered or re-scanned, and no
//! error text ever contains a resolved value.

use serde_json::Value;
use std::collections::HashMap;

/// Maximum nesting of objects/arrays walked by [`resolve`].
pub const MAX_DEPTH: usize = 100;
/// Largest value a placeholder may insert (bytes).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Where `{$NAME}` values come from. Injected so that configuration never touches process state
/// beyond reading it, and tests never write the process environment.
pub trait EnvSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment (read only).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        // A set-but-not-UTF-8 variable cannot be inserted verbatim into JSON; treat it as unset.
        std::env::var(name).ok()
    }
}

/// A fixed map of variables, for tests and for injected environments.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        MapEnv(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl EnvSource for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Resolves `{$vault:path#field}`; implemented by the Vault client.
pub trait SecretSource: Send + Sync {
    fn get(&self, path: &str, field: &str) -> SecretLookup;
}

/// Outcome of one secret lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretLookup {
    Value(String),
    /// The path or the field does not exist: a configured default applies.
    Missing,
    /// Vault unreachable, forbidden or failing: never falls back to a default (§5.2).
    Unavailable(String),
}

/// Why a placeholder cannot be resolved: an entry error. The text names the variable or
/// `path#field` (and, from [`resolve`], the key path), never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("malformed {{$vault:…}} reference")]
    MalformedVault,
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("vault reference {path}#{field} cannot be resolved: no secrets backend configured")]
    NoSecretsBackend { path: String, field: String },
    #[error("vault reference {path}#{field}: secret or field does not exist")]
    SecretMissing { path: String, field: String },
    /// Vault unreachable, forbidden or failing (never falls back to a default, §5.2).
    #[error("vault reference {path}#{field} cannot be resolved: {reason}")]
    SecretUnavailable {
        path: String,
        field: String,
        reason: String,
    },
    /// `what` is the variable name or `path#field`.
    #[error("value of {what} is longer than {max} bytes")]
    TooLong { what: String, max: usize },
    #[error("{at}: nesting deeper than {max} levels")]
    TooDeep { at: String, max: usize },
    /// A string value at key path `at` (dot-separated) holds an unresolvable placeholder.
    #[error("{at}: {source}")]
    At {
        at: String,
        source: Box<PlaceholderError>,
    },
}

/// Resolves every placeholder in every string value (not keys) of `value`.
///
/// `secrets: None` means Vault is not configured. The error names the variable or `path#field`
/// and the key path where it was found, never a value.
pub fn resolve(
    value: &Value,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
) -> Result<Value, PlaceholderError> {
    let mut path = Vec::new();
    walk(value, env, secrets, 0, &mut path)
}

fn walk(
    value: &Value,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
    depth: usize,
    path: &mut Vec<String>,
) -> Result<Value, PlaceholderError> {
    if depth > MAX_DEPTH {
        return Err(PlaceholderError::TooDeep {
            at: display_path(path),
            max: MAX_DEPTH,
        });
    }
    Ok(match value {
        Value::String(s) => {
            Value::String(
                resolve_str(s, env, secrets).map_err(|e| PlaceholderError::At {
                    at: display_path(path),
                    source: Box::new(e),
                })?,
            )
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                let r = walk(item, env, secrets, depth + 1, path);
                path.pop();
                out.push(r?);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                path.push(k.clone());
                let r = walk(v, env, secrets, depth + 1, path);
                path.pop();
                out.insert(k.clone(), r?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        "(value)".into()
    } else {
        path.join(".")
    }
}

/// A parsed placeholder body (the text between `{$` and the closing `}`).
enum Ref<'a> {
    Env {
        name: &'a str,
        default: Option<&'a str>,
    },
    Vault {
        path: &'a str,
        field: &'a str,
        default: Option<&'a str>,
    },
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_vault_path(p: &str) -> bool {
    let t = p.trim_matches('/');
    (1..=512).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
        && !t.split('/').any(|seg| seg == "..")
        && !t.contains("..")
}

fn is_vault_field(f: &str) -> bool {
    (1..=128).contains(&f.len())
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses `vault:path#field[:default]` (without the `vault:` prefix). `None` = malformed.
fn parse_vault(rest: &str) -> Option<Ref<'_>> {
    let (path, after) = rest.split_once('#')?;
    let (field, default) = match after.split_once(':') {
        Some((f, d)) => (f, Some(d)),
        None => (after, None),
    };
    (is_vault_path(path) && is_vault_field(field)).then_some(Ref::Vault {
        path: path.trim_matches('/'),
        field,
        default,
    })
}

/// Parses a placeholder body. `Ok(None)`: not a placeholder, left as text.
/// `Err`: a malformed `{$vault:` reference, which is an entry error.
fn parse_body(body: &str) -> Result<Option<Ref<'_>>, PlaceholderError> {
    if let Some(rest) = body.strip_prefix("vault:") {
        return parse_vault(rest)
            .map(Some)
            .ok_or(PlaceholderError::MalformedVault);
    }
    let (name, default) = match body.split_once(':') {
        Some((n, d)) => (n, Some(d)),
        None => (body, None),
    };
    Ok(is_env_name(name).then_some(Ref::Env { name, default }))
}

fn lookup(
    r: &Ref<'_>,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
) -> Result<String, PlaceholderError> {
    let value = match *r {
        Ref::Env { name, default } => match env.var(name) {
            Some(v) => v,
            None => match default {
                Some(d) => d.to_string(),
                None => return Err(PlaceholderError::EnvUnset(name.to_string())),
            },
        },
        Ref::Vault {
            path,
            field,
            default,
        } => match secrets {
            None => match default {
                Some(d) => d.to_string(),
                None => {
                    return Err(PlaceholderError::NoSecretsBackend {
                        path: path.to_string(),
                        field: field.to_string(),
                    });
                }
            },
            Some(s) => match s.get(path, field) {
                SecretLookup::Value(v) => v,
                SecretLookup::Missing => match default {
                    Some(d) => d.to_string(),
                    None => {
                        return Err(PlaceholderError::SecretMissing {
                            path: path.to_string(),
                            field: field.to_string(),
                        });
                    }
                },
                SecretLookup::Unavailable(why) => {
                    return Err(PlaceholderError::SecretUnavailable {
                        path: path.to_string(),
                        field: field.to_string(),
                        reason: why,
                    });
                }
            },
        },
    };
    if value.len() > MAX_VALUE_BYTES {
        let what = match *r {
            Ref::Env { name, .. } => name.to_string(),
            Ref::Vault { path, field, .. } => format!("{path}#{field}"),
        };
        return Err(PlaceholderError::TooLong {
            what,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(value)
}

/// Resolves the placeholders of one string in a single left-to-right pass.
pub fn resolve_str(
    s: &str,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
) -> Result<String, PlaceholderError> {
    if !s.contains("{$") {
        return Ok(s.to_string());
    }
    // Whole-string form: the default runs to the final `}` and may itself contain `:` and `}`.
    if let Some(body) = s.strip_prefix("{$").and_then(|b| b.strip_suffix('}')) {
        // A whole-string parse can fail because the string holds several embedded references
        // (`{$vault:a#b}{$vault:c#d}`); the embedded scan below decides then.
        if let Ok(Some(r)) = parse_body(body) {
            return lookup(&r, env, secrets);
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{$") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            if after.starts_with("vault:") {
                return Err(PlaceholderError::MalformedVault);
            }
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        match parse_body(&after[..end])? {
            Some(r) => {
                // Inserted text goes straight to the output: it is never scanned again.
                out.push_str(&lookup(&r, env, secrets)?);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("{$");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Vault(HashMap<(String, String), SecretLookup>);
    impl SecretSource for Vault {
        fn get(&self, path: &str, field: &str) -> SecretLookup {
            self.0
                .get(&(path.to_string(), field.to_string()))
                .cloned()
                .unwrap_or(SecretLookup::Missing)
        }
    }

    fn env() -> MapEnv {
        MapEnv::new([
            ("TOKEN", "s3cr$t;&|(){}id cat x"),
            ("EMPTY", ""),
            ("HOST", "example.com"),
            ("NESTED", "{$HOST}"),
        ])
    }

    fn vault() -> Vault {
        let mut m = HashMap::new();
        m.insert(
            ("app/auth".into(), "token".into()),
            SecretLookup::Value("vault-tok".into()),
        );
        m.insert(
            ("down/x".into(), "f".into()),
            SecretLookup::Unavailable("connection refused".into()),
        );
        Vault(m)
    }

    fn r(s: &str) -> Result<String, String> {
        let v = vault();
        resolve_str(s, &env(), Some(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn env_values_are_inserted_verbatim() {
        assert_eq!(r("{$TOKEN}").unwrap(), "s3cr$t;&|(){}id cat x");
        assert_eq!(
            r("Bearer {$TOKEN}").unwrap(),
            "Bearer s3cr$t;&|(){}id cat x"
        );
        assert_eq!(r("{$EMPTY}").unwrap(), "");
        assert_eq!(r("{$EMPTY:fallback}").unwrap(), "");
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        assert_eq!(r("{$PORT:8080}").unwrap(), "8080");
        assert_eq!(r("{$PORT:}").unwrap(), "");
        // Whole-string default runs to the final brace.
        assert_eq!(r("{$X:a:b}c}").unwrap(), "a:b}c");
        assert_eq!(
            r("http://{$HOST}:{$PORT:80}/x").unwrap(),
            "http://example.com:80/x"
        );
    }

    #[test]
    fn missing_variable_is_an_error_naming_it() {
        let e = r("Bearer {$MISSING_ONE}").unwrap_err();
        assert!(e.contains("MISSING_ONE"), "{e}");
        assert!(!e.contains("Undefined variable"));
    }

    #[test]
    fn inserted_text_is_not_rescanned() {
        assert_eq!(r("{$NESTED}").unwrap(), "{$HOST}");
        assert_eq!(r("a{$NESTED}b").unwrap(), "a{$HOST}b");
    }

    #[test]
    fn non_placeholders_are_left_alone() {
        assert_eq!(r("price {$ 5}").unwrap(), "price {$ 5}");
        assert_eq!(r("{$a-b}").unwrap(), "{$a-b}");
        assert_eq!(r("open {$HOST").unwrap(), "open {$HOST");
    }

    #[test]
    fn vault_references_resolve_with_strict_defaults() {
        assert_eq!(r("{$vault:app/auth#token}").unwrap(), "vault-tok");
        assert_eq!(r("/{$vault:/app/auth/#token}/").unwrap(), "/vault-tok/");
        assert_eq!(
            r("{$vault:app/auth#token}{$HOST}").unwrap(),
            "vault-tokexample.com"
        );
        assert_eq!(r("{$vault:app/none#token:dev}").unwrap(), "dev");
        let e = r("{$vault:app/none#token}").unwrap_err();
        assert!(e.contains("app/none#token"), "{e}");
        // Unavailable never falls back to the default.
        let e = r("{$vault:down/x#f:dev}").unwrap_err();
        assert!(e.contains("down/x#f"), "{e}");
        // Without a secrets backend, the default applies; without one, error.
        assert_eq!(resolve_str("{$vault:a#b:d}", &env(), None).unwrap(), "d");
        assert!(resolve_str("{$vault:a#b}", &env(), None).is_err());
    }

    #[test]
    fn malformed_vault_reference_is_an_error() {
        for bad in [
            "{$vault:nohash}",
            "{$vault:a/../b#f}",
            "{$vault:a#f f}",
            "x {$vault:a#b",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_values_are_rejected() {
        let big = MapEnv::new([("BIG", "x".repeat(MAX_VALUE_BYTES + 1))]);
        let e = resolve_str("{$BIG}", &big, None).unwrap_err().to_string();
        assert!(e.contains("BIG") && !e.contains("xxx"), "{e}");
    }

    #[test]
    fn resolve_walks_values_not_keys_and_reports_the_path() {
        let doc = json!({"{$HOST}": {"a": ["{$HOST}", 1, true]}});
        let out = resolve(&doc, &env(), None).unwrap();
        assert_eq!(out, json!({"{$HOST}": {"a": ["example.com", 1, true]}}));
        let e = resolve(&json!({"m": {"k": "{$NOPE}"}}), &env(), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.k: ") && e.contains("NOPE"), "{e}");
    }

    #[test]
    fn depth_is_limited() {
        let mut v = json!("x");
        for _ in 0..=MAX_DEPTH {
            v = json!([v]);
        }
        assert!(resolve(&v, &env(), None).is_err());
    }
}
