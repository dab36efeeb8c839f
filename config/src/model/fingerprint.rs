//! A digest of a resolved definition that equals another's exactly when the two JSON values
//! are equal (`serde_json::Value`'s `==`: object key order does not matter, numbers compare by
//! their text). A reload tells changed entries by it without keeping every definition whole.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 over a canonical, self-delimiting encoding of the value.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(v: &Value) -> Fingerprint {
    let mut h = Sha256::new();
    feed(&mut h, v);
    h.finalize().into()
}

fn feed_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update([0]),
        Value::Bool(b) => h.update([1, u8::from(*b)]),
        Value::Number(n) => {
            h.update([2]);
            feed_str(h, &n.to_string());
        }
        Value::String(s) => {
            h.update([3]);
            feed_str(h, s);
        }
        Value::Array(a) => {
            h.update([4]);
            h.update((a.len() as u64).to_le_bytes());
            for x in a {
                feed(h, x);
            }
        }
        Value::Object(m) => {
            h.update([5]);
            h.update((m.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            for k in keys {
                feed_str(h, k);
                feed(h, &m[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use serde_json::json;

    #[test]
    fn equal_values_have_equal_fingerprints_and_different_ones_differ() {
        let a = json!({"module": "log", "module-config": {"a": 1, "b": [true, null, "x"]}});
        let b = json!({"module-config": {"b": [true, null, "x"], "a": 1}, "module": "log"});
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        for other in [
            json!({"module": "log", "module-config": {"a": 2, "b": [true, null, "x"]}}),
            json!({"module": "log", "module-config": {"a": 1, "b": [null, true, "x"]}}),
            json!({"module": "log", "module-config": {"a": "1", "b": [true, null, "x"]}}),
            json!({"module": "log", "module-config": {"a": 1, "b": [true, null, "x"], "c": null}}),
            json!({"module": "log", "module-config": {"ab": 1, "b": [true, null, "x"]}}),
            json!(["module", "log"]),
        ] {
            assert_ne!(a, other);
            assert_ne!(fingerprint(&a), fingerprint(&other), "{other}");
        }
        // Strings are delimited: moving a character between adjacent strings changes it.
        assert_ne!(
            fingerprint(&json!(["ab", "c"])),
            fingerprint(&json!(["a", "bc"]))
        );
    }
}
