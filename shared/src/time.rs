//! Timestamps: RFC 3339 in UTC with six fractional digits and `+00:00` (§1.4).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant that serializes as `2026-02-09T10:15:02.004512+00:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ts_rs::TS)]
#[ts(type = "string")]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Microseconds since the Unix epoch (the stored precision).
    pub fn micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn from_micros(us: i64) -> Self {
        Self(Utc.timestamp_micros(us).single().unwrap_or_default())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self::from_micros(ms.saturating_mul(1000))
    }

    pub fn plus_seconds(&self, secs: f64) -> Self {
        Self::from_micros(self.micros().saturating_add((secs * 1_000_000.0) as i64))
    }

    /// Unix seconds as a float (used only by `GET /health`).
    pub fn unix_seconds_f64(&self) -> f64 {
        self.micros() as f64 / 1_000_000.0
    }

    pub fn to_rfc3339(&self) -> String {
        self.0
            .to_rfc3339_opts(SecondsFormat::Micros, false)
            .replace('Z', "+00:00")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_digits_and_utc_offset() {
        let t = Timestamp::from_micros(1_770_631_502_004_512);
        assert_eq!(t.to_rfc3339(), "2026-02-09T10:05:02.004512+00:00");
        let back: Timestamp = serde_json::from_str(&format!("\"{t}\"")).unwrap();
        assert_eq!(back, t);
    }
}
