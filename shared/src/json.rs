//! JSON helpers shared by the cloud and the connector: strict payload decoding (§2.4) and
//! ASCII-only serialization for SSE `data:` lines (§5.2).

use serde::Serialize;
use serde_json::Value;
use std::io;

/// Maximum nesting depth of a JSON payload (§2.3 step 9).
pub const MAX_DEPTH: usize = 50;
/// Maximum characters of one JSON string value.
pub const MAX_STRING_CHARS: usize = 1_048_576;

/// Why a body is not an acceptable JSON payload; `Display` is the 400 `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    Encoding,
    Malformed,
    TooDeep(usize),
    StringTooLong(usize),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Encoding => f.write_str("Invalid character encoding"),
            JsonError::Malformed => f.write_str("Malformed JSON payload"),
            JsonError::TooDeep(n) => {
                write!(f, "JSON too deeply nested: {n} levels (max: {MAX_DEPTH})")
            }
            JsonError::StringTooLong(n) => {
                write!(
                    f,
                    "String too long: {n} characters (max: {MAX_STRING_CHARS})"
                )
            }
        }
    }
}

impl std::error::Error for JsonError {}

/// Decodes `body` by the `charset` of `content_type` (UTF-8 by default), removing a BOM.
pub fn decode_text(body: &[u8], content_type: Option<&str>) -> Result<String, JsonError> {
    let charset = content_type
        .and_then(|ct| {
            ct.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("charset"))
                    .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
            })
        })
        .unwrap_or_else(|| "utf-8".into());
    match charset.as_str() {
        "utf-16" => {
            if let Some(rest) = body.strip_prefix(&[0xFF, 0xFE]) {
                utf16(rest, false)
            } else if let Some(rest) = body.strip_prefix(&[0xFE, 0xFF]) {
                utf16(rest, true)
            } else {
                utf16(body, true)
            }
        }
        "utf-16le" => utf16(body.strip_prefix(&[0xFF, 0xFE]).unwrap_or(body), false),
        "utf-16be" => utf16(body.strip_prefix(&[0xFE, 0xFF]).unwrap_or(body), true),
        "iso-8859-1" | "latin-1" | "latin1" => Ok(body.iter().map(|&b| b as char).collect()),
        "windows-1252" | "cp1252" => body.iter().map(|&b| cp1252(b)).collect(),
        "us-ascii" | "ascii" => {
            if body.is_ascii() {
                Ok(body.iter().map(|&b| b as char).collect())
            } else {
                Err(JsonError::Encoding)
            }
        }
        _ => {
            let b = body.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(body);
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| JsonError::Encoding)
        }
    }
}

fn utf16(body: &[u8], big_endian: bool) -> Result<String, JsonError> {
    if !body.len().is_multiple_of(2) {
        return Err(JsonError::Encoding);
    }
    let units = body.chunks_exact(2).map(|c| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    });
    let s: Result<String, _> = char::decode_utf16(units).collect();
    let s = s.map_err(|_| JsonError::Encoding)?;
    Ok(s.strip_prefix('\u{FEFF}').map(str::to_owned).unwrap_or(s))
}

fn cp1252(b: u8) -> Result<char, JsonError> {
    const HIGH: [u32; 32] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
        0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC,
        0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => match HIGH[(b - 0x80) as usize] {
            0 => Err(JsonError::Encoding),
            c => char::from_u32(c).ok_or(JsonError::Encoding),
        },
        _ => Ok(b as char),
    }
}

/// Deepest value of a JSON text, counting the root as depth 0 (§2.4). Scans tokens without
/// recursion, so arbitrarily deep input cannot exhaust the stack. String contents are
/// skipped with `memchr` (to the next `"` or `\\`), not byte by byte: ingress runs this over
/// every JSON body, and bodies are mostly string bytes.
pub fn max_depth(text: &str) -> usize {
    let b = text.as_bytes();
    let mut open = 0usize;
    let mut max = 0usize;
    let mut in_scalar = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                max = max.max(open);
                // To the closing quote; an escape takes the byte after it. Unterminated: done.
                i += 1;
                loop {
                    let Some(k) = b
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return max;
                    };
                    i += k;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'[' | b'{' => {
                max = max.max(open);
                open += 1;
                in_scalar = false;
            }
            b']' | b'}' => {
                open = open.saturating_sub(1);
                in_scalar = false;
            }
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
            _ => {
                if !in_scalar {
                    max = max.max(open);
                    in_scalar = true;
                }
            }
        }
        i += 1;
    }
    max
}

/// Checks a `data_type: json` body with every rule of [`parse_payload`] without building the
/// value (no allocation per node): for ingress paths that store the raw bytes and need no
/// schema or masking. Accepts and refuses exactly what [`parse_payload`] does.
pub fn check_payload(body: &[u8], content_type: Option<&str>) -> Result<(), JsonError> {
    let plain_utf8 = content_type.is_none_or(|ct| {
        !ct.split(';').skip(1).any(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        })
    });
    let owned;
    let text: &str = if plain_utf8 {
        let b = body.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(body);
        std::str::from_utf8(b).map_err(|_| JsonError::Encoding)?
    } else {
        owned = decode_text(body, content_type)?;
        &owned
    };
    let depth = max_depth(text);
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep(depth));
    }
    let longest = std::cell::Cell::new(0usize);
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::DeserializeSeed::deserialize(Check(&longest), &mut de)
        .and_then(|()| de.end())
        .map_err(|_| JsonError::Malformed)?;
    match longest.get() {
        n if n > MAX_STRING_CHARS => Err(JsonError::StringTooLong(n)),
        _ => Ok(()),
    }
}

/// Visits a JSON value, remembering the longest string value (keys are not counted, as in
/// [`parse_payload`]).
struct Check<'a>(&'a std::cell::Cell<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Check<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let n = v.chars().count();
        if n > self.0.get() {
            self.0.set(n);
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            match key {
                // `arbitrary_precision` hands a number over as a one-entry map; its text is
                // not a string value.
                KeyKind::Number => map.next_value::<serde::de::IgnoredAny>().map(drop)?,
                KeyKind::Other => map.next_value_seed(Check(self.0))?,
            }
        }
        Ok(())
    }
}

/// Tells serde_json's private number token from an object key.
struct Key;

enum KeyKind {
    Number,
    Other,
}

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = KeyKind;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<KeyKind, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = KeyKind;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyKind, E> {
        Ok(if v == "$serde_json::private::Number" {
            KeyKind::Number
        } else {
            KeyKind::Other
        })
    }
}

/// Parses a `data_type: json` body with every rule of §2.4 and the limits of §2.3 step 9.
pub fn parse_payload(body: &[u8], content_type: Option<&str>) -> Result<Value, JsonError> {
    let text = decode_text(body, content_type)?;
    let depth = max_depth(&text);
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep(depth));
    }
    let value: Value = serde_json::from_str(&text).map_err(|_| JsonError::Malformed)?;
    if let Some(n) = longest_string(&value)
        && n > MAX_STRING_CHARS
    {
        return Err(JsonError::StringTooLong(n));
    }
    Ok(value)
}

fn longest_string(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => a.iter().filter_map(longest_string).max(),
        Value::Object(o) => o.values().filter_map(longest_string).max(),
        _ => None,
    }
}

/// The wire `payload` view of a body (§3.2): parsed JSON, else UTF-8 text, else null.
pub fn payload_of(body: &[u8], content_type: Option<&str>) -> Value {
    if let Ok(v) = parse_payload(body, content_type) {
        return v;
    }
    match std::str::from_utf8(body) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::Null,
    }
}

/// Serializes `value` as one line of JSON with every non-ASCII character escaped as `\uXXXX`.
pub fn to_ascii_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serializing our own types into a Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8(out).unwrap_or_default()
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The byte-by-byte scan `max_depth` replaced, kept to check that it answers the same.
    /// Deepest value of a JSON text, counting the root as depth 0 (§2.4). Scans tokens without
    /// recursion, so arbitrarily deep input cannot exhaust the stack.
    fn max_depth_bytewise(text: &str) -> usize {
        let mut open = 0usize;
        let mut max = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut in_scalar = false;
        for b in text.bytes() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'[' | b'{' => {
                    max = max.max(open);
                    open += 1;
                    in_scalar = false;
                }
                b']' | b'}' => {
                    open = open.saturating_sub(1);
                    in_scalar = false;
                }
                b'"' => {
                    max = max.max(open);
                    in_string = true;
                }
                b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
                _ => {
                    if !in_scalar {
                        max = max.max(open);
                        in_scalar = true;
                    }
                }
            }
        }
        max
    }

    #[test]
    fn max_depth_answers_as_the_byte_by_byte_scan() {
        // Inputs over the characters that matter (brackets, quotes, escapes, separators,
        // scalars), valid JSON or not, from a fixed-seed generator.
        const ALPHABET: &[u8] = br#"[]{}"\\:, a1"#;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for case in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let mut s = String::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push(ALPHABET[(y >> 33) as usize % ALPHABET.len()] as char);
            }
            assert_eq!(max_depth(&s), max_depth_bytewise(&s), "case {case}: {s:?}");
        }
        for s in [
            r#"{"a":"\"}"#,
            r#""\"#,
            r#"["x\\"]"#,
            r#"[[["\"]]]"#,
            "",
            "\"\"",
        ] {
            assert_eq!(max_depth(s), max_depth_bytewise(s), "{s:?}");
        }
    }

    #[test]
    fn check_payload_accepts_and_refuses_what_parse_payload_does() {
        let long = format!(r#"{{"s":"{}"}}"#, "é".repeat(MAX_STRING_CHARS + 1));
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(MAX_STRING_CHARS + 1));
        let big_number = format!(r#"{{"n":{}}}"#, "9".repeat(MAX_STRING_CHARS + 5));
        let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                br#"{"a":[1,2.5,-3e10,true,null,"x\u00e9\n"],"b":{"c":{}}}"#.to_vec(),
                None,
            ),
            (b"\xEF\xBB\xBF{\"bom\":1}".to_vec(), None),
            (br#"  "just a string"  "#.to_vec(), None),
            (b"12345678901234567890123456789".to_vec(), None),
            (br#"{"a":1,}"#.to_vec(), None),
            (br#"{"a":1} trailing"#.to_vec(), None),
            (b"".to_vec(), None),
            (b"{\"a\":\"\xff\"}".to_vec(), None),
            (long.into_bytes(), None),
            (long_key.into_bytes(), None),
            (big_number.into_bytes(), None),
            (deep.into_bytes(), None),
            (br#"{"a":"\ud800"}"#.to_vec(), None),
            (
                vec![0xFF, 0xFE, b'{', 0, b'}', 0],
                Some("application/json; charset=utf-16"),
            ),
            (
                b"{\"l\":\"\xe9\"}".to_vec(),
                Some("application/json; charset=latin-1"),
            ),
            (
                b"{\"l\":\"\xe9\"}".to_vec(),
                Some("application/json; charset=us-ascii"),
            ),
        ];
        for (body, ct) in cases {
            let want = parse_payload(&body, ct).map(drop);
            assert_eq!(
                check_payload(&body, ct),
                want,
                "{:?}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
        }
    }

    #[test]
    fn preserves_key_order_and_number_text() {
        let v = parse_payload(br#"{"z":1,"a":12345678901234567890123,"m":0.10}"#, None).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"z":1,"a":12345678901234567890123,"m":0.10}"#
        );
    }

    #[test]
    fn rejects_non_strict_json() {
        for bad in [&b"NaN"[..], b"[1,]", b"{\"a\":1} // c", b"", b"Infinity"] {
            assert_eq!(
                parse_payload(bad, None),
                Err(JsonError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(parse_payload(b"42", None).unwrap(), serde_json::json!(42));
    }

    #[test]
    fn depth_counts_the_root_as_zero() {
        let ok = format!("{}1{}", "[".repeat(50), "]".repeat(50));
        assert_eq!(max_depth(&ok), 50);
        assert!(parse_payload(ok.as_bytes(), None).is_ok());
        let deep = format!("{}1{}", "[".repeat(51), "]".repeat(51));
        assert_eq!(
            parse_payload(deep.as_bytes(), None),
            Err(JsonError::TooDeep(51))
        );
        let huge = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_payload(huge.as_bytes(), None),
            Err(JsonError::TooDeep(_))
        ));
        assert_eq!(max_depth(r#"{"a":"[[[[","b":[]}"#), 1);
    }

    #[test]
    fn decodes_declared_charsets() {
        let latin = [b'"', 0xE9, b'"'];
        assert_eq!(
            parse_payload(&latin, Some("application/json; charset=ISO-8859-1")).unwrap(),
            serde_json::json!("é")
        );
        assert_eq!(parse_payload(&latin, None), Err(JsonError::Encoding));
        let bom = [0xEF, 0xBB, 0xBF, b'1'];
        assert_eq!(parse_payload(&bom, None).unwrap(), serde_json::json!(1));
        let utf16: Vec<u8> = "\u{FEFF}[\"ü\"]"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            parse_payload(&utf16, Some("application/json;charset=utf-16le")).unwrap(),
            serde_json::json!(["ü"])
        );
    }

    #[test]
    fn ascii_json_escapes_everything_outside_ascii() {
        let s = to_ascii_json(&serde_json::json!({"k": "é😀\n"}));
        assert_eq!(s, r#"{"k":"\u00e9\ud83d\ude00\n"}"#);
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["k"], "é😀\n");
    }
}
