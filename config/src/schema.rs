//! `json_schema` (CONFIG §2.6): compiled once at load; only local references are resolved.

use jsonschema::{Retrieve, Uri};
use serde_json::Value;
use std::fmt;

/// Maximum messages returned for a failing payload.
pub const MAX_ERRORS: usize = 10;

/// Refuses every external reference, whatever features of `jsonschema` other crates enable:
/// a webhook definition must never make the service fetch URLs or read files.
struct NoRemote;

impl Retrieve for NoRemote {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("remote reference {} is not allowed", uri.as_str()).into())
    }
}

/// A compiled JSON Schema.
pub struct Schema {
    validator: jsonschema::Validator,
    /// The schema as configured.
    pub source: Value,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("source", &self.source)
            .finish()
    }
}

/// A `json_schema` that does not compile; the reason is cut to 300 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {0}")]
pub struct InvalidSchema(pub String);

impl Schema {
    /// Compiles `schema` (draft from `$schema`, default 2020-12). `Err` = invalid schema.
    pub fn compile(schema: &Value) -> Result<Schema, InvalidSchema> {
        let mut opts = jsonschema::options().with_retriever(NoRemote);
        if schema.get("$schema").is_none() {
            opts = opts.with_draft(jsonschema::Draft::Draft202012);
        }
        let validator = opts.build(schema).map_err(|e| {
            let mut msg = e.to_string();
            // Keep reports short; schemas are not secrets but can be large.
            if msg.len() > 300 {
                let mut cut = 300;
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                msg.truncate(cut);
                msg.push('…');
            }
            InvalidSchema(msg)
        })?;
        Ok(Schema {
            validator,
            source: schema.clone(),
        })
    }

    /// `Err` holds up to [`MAX_ERRORS`] messages `"<instance path>: <reason>"`.
    pub fn validate(&self, payload: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(payload)
            .take(MAX_ERRORS)
            .map(|e| {
                let path = e.instance_path.as_str();
                let path = if path.is_empty() { "/" } else { path };
                format!("{path}: {e}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_and_reports_paths() {
        let s = Schema::compile(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}
        }))
        .unwrap();
        assert!(s.validate(&json!({"id": 1})).is_ok());
        let errs = s.validate(&json!({"id": "x", "tags": [1]})).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().any(|e| e.starts_with("/id: ")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("/tags/0: ")), "{errs:?}");
        let errs = s.validate(&json!(5)).unwrap_err();
        assert!(errs[0].starts_with("/: "), "{errs:?}");
    }

    #[test]
    fn at_most_ten_errors() {
        let s = Schema::compile(&json!({"type": "array", "items": {"type": "string"}})).unwrap();
        let errs = s
            .validate(&json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))
            .unwrap_err();
        assert_eq!(errs.len(), MAX_ERRORS);
    }

    #[test]
    fn invalid_schema_is_rejected() {
        assert!(Schema::compile(&json!({"type": "no-such-type"})).is_err());
        assert!(Schema::compile(&json!({"minLength": -1})).is_err());
    }

    #[test]
    fn local_refs_resolve_remote_refs_do_not() {
        let s = Schema::compile(&json!({
            "$defs": {"pos": {"type": "integer", "minimum": 1}},
            "properties": {"n": {"$ref": "#/$defs/pos"}}
        }))
        .unwrap();
        assert!(s.validate(&json!({"n": 0})).is_err());
        assert!(s.validate(&json!({"n": 3})).is_ok());
        let e = Schema::compile(&json!({"$ref": "https://example.com/schema.json"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid JSON Schema"), "{e}");
        assert!(Schema::compile(&json!({"$ref": "file:///etc/passwd"})).is_err());
    }

    #[test]
    fn draft_comes_from_dollar_schema() {
        // Draft-04 exclusiveMaximum is a boolean; in 2020-12 it must be a number.
        let d4 = json!({"$schema": "http://json-schema.org/draft-04/schema#",
                        "maximum": 5, "exclusiveMaximum": true});
        let s = Schema::compile(&d4).unwrap();
        assert!(s.validate(&json!(5)).is_err());
        assert!(s.validate(&json!(4)).is_ok());
        assert!(Schema::compile(&json!({"maximum": 5, "exclusiveMaximum": true})).is_err());
    }
}
