//! Typed readers for configuration values (CONFIG §2.8 "Types"): numbers and booleans may also be
//! given as strings, because placeholders always produce strings. Every error names the key and
//! never the value, which may be a secret.

use serde_json::{Map, Value};
use std::ops::RangeInclusive;

/// Collects warnings for one entry; each message is prefixed with the entry name.
#[derive(Debug)]
pub(crate) struct Warnings<'a> {
    pub entry: &'a str,
    pub list: Vec<String>,
}

impl<'a> Warnings<'a> {
    pub fn new(entry: &'a str) -> Self {
        Warnings {
            entry,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, msg: impl AsRef<str>) {
        self.list.push(format!("{}: {}", self.entry, msg.as_ref()));
    }

    /// Warns about every key of `map` not in `known`.
    pub fn unknown_keys(&mut self, map: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                self.push(format!("unknown key '{prefix}{k}' ignored"));
            }
        }
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn object<'v>(v: &'v Value, key: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{key}: must be an object, got {}", type_name(v)))
}

/// The boolean spellings accepted everywhere (CONFIG §1.1, §7.5): `true/false`, `1/0`,
/// `yes/no`, `on/off`, case-insensitive, surrounding blanks ignored. `None` for anything else.
/// Shared by this crate's readers, the cloud's flags and the connector's environment.
pub fn bool_from_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `true/false/1/0/yes/no/on/off` (case-insensitive) as strings, or a JSON boolean (§1.1).
pub(crate) fn boolean(v: &Value, key: &str) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => bool_from_text(s).ok_or_else(|| format!("{key}: must be a boolean")),
        other => Err(format!(
            "{key}: must be a boolean, got {}",
            type_name(other)
        )),
    }
}

/// A non-negative integer (JSON number or a string that parses) inside `range`.
pub(crate) fn integer(v: &Value, key: &str, range: RangeInclusive<u64>) -> Result<u64, String> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            // `3600.0` is an integer in JSON's sense; accept it when it is exact.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let n = match parsed {
        Some(n) => n,
        None => {
            let negative = match v {
                Value::Number(n) => n.as_i64().is_some_and(|i| i < 0),
                Value::String(s) => s.trim().parse::<i64>().is_ok_and(|i| i < 0),
                _ => false,
            };
            return Err(if negative {
                format!("{key}: out of range ({}..{})", range.start(), range.end())
            } else {
                format!("{key}: must be an integer")
            });
        }
    };
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{key}: out of range ({}..{})",
            range.start(),
            range.end()
        ))
    }
}

/// A string (no trimming; secrets are used verbatim).
pub(crate) fn string<'v>(v: &'v Value, key: &str) -> Result<&'v str, String> {
    v.as_str()
        .ok_or_else(|| format!("{key}: must be a string, got {}", type_name(v)))
}

/// A string that is not empty or whitespace only (the fail-closed rule of §2.4).
pub(crate) fn nonempty<'v>(v: &'v Value, key: &str) -> Result<&'v str, String> {
    let s = string(v, key)?;
    if s.trim().is_empty() {
        Err(format!("{key}: must not be empty"))
    } else {
        Ok(s)
    }
}

/// A required non-empty string member of `map`.
pub(crate) fn required<'v>(
    map: &'v Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<&'v str, String> {
    match map.get(name) {
        None | Some(Value::Null) => Err(format!("{prefix}{name}: required")),
        Some(v) => nonempty(v, &format!("{prefix}{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_accept_strings_that_parse() {
        assert_eq!(integer(&json!(5), "k", 1..=10), Ok(5));
        assert_eq!(integer(&json!("7"), "k", 1..=10), Ok(7));
        assert_eq!(integer(&json!(" 7 "), "k", 1..=10), Ok(7));
        assert_eq!(integer(&json!(7.0), "k", 1..=10), Ok(7));
        assert!(
            integer(&json!(7.5), "k", 1..=10)
                .unwrap_err()
                .contains("integer")
        );
        assert!(
            integer(&json!("x"), "k", 1..=10)
                .unwrap_err()
                .contains("integer")
        );
        assert!(
            integer(&json!(0), "k", 1..=10)
                .unwrap_err()
                .contains("range")
        );
        assert!(
            integer(&json!(-3), "k", 1..=10)
                .unwrap_err()
                .contains("range")
        );
        assert!(integer(&json!(true), "k", 1..=10).is_err());
    }

    #[test]
    fn booleans_accept_the_documented_spellings() {
        for t in [
            json!(true),
            json!("TRUE"),
            json!("1"),
            json!("yes"),
            json!("On"),
        ] {
            assert_eq!(boolean(&t, "k"), Ok(true), "{t}");
        }
        for f in [
            json!(false),
            json!("False"),
            json!("0"),
            json!("no"),
            json!("off"),
        ] {
            assert_eq!(boolean(&f, "k"), Ok(false), "{f}");
        }
        assert!(boolean(&json!("maybe"), "k").is_err());
        assert!(boolean(&json!(1), "k").is_err());
    }

    #[test]
    fn empty_strings_fail_closed() {
        assert!(nonempty(&json!(""), "k").is_err());
        assert!(nonempty(&json!("  "), "k").is_err());
        assert_eq!(nonempty(&json!(" a "), "k"), Ok(" a "));
        let m = json!({"a": null});
        assert!(
            required(m.as_object().unwrap(), "a", "x.")
                .unwrap_err()
                .starts_with("x.a")
        );
    }
}
