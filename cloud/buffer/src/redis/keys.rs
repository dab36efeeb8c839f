//! Key names (PROTOCOL §10.3). Every per-channel key is `P:{C}:<suffix>`: the hash tag
//! `{C}` keeps one channel's keys in one cluster slot. Channel names are validated by the
//! cloud before they get here; as defence in depth every byte outside `[A-Za-z0-9._-]` is
//! percent-encoded, so no name can add a `:`, a brace or a glob character to a key.

/// `^[A-Za-z0-9_.-]{1,32}$` (CONFIG.md).
pub fn valid_prefix(p: &str) -> bool {
    (1..=32).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn encode_channel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The keys of one channel, in the order the scripts expect them in `KEYS`.
#[derive(Clone, Debug)]
pub struct ChannelKeys(pub [String; 13]);

const SUFFIXES: [&str; 13] = [
    "state", "stats", "msg", "att", "q", "loc", "delayed", "exp", "dlq", "wh", "lease", "rcv",
    "conn",
];

impl ChannelKeys {
    pub fn new(prefix: &str, channel: &str) -> Self {
        let c = encode_channel(channel);
        Self(SUFFIXES.map(|s| format!("{prefix}:{{{c}}}:{s}")))
    }

    pub fn all(&self) -> &[String] {
        &self.0
    }

    pub fn conn(&self) -> &str {
        &self.0[12]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_cannot_reach_other_keys() {
        let k = ChannelKeys::new("whc", "team-alpha");
        assert_eq!(k.0[0], "whc:{team-alpha}:state");
        assert_eq!(k.0[4], "whc:{team-alpha}:q");
        // Names the cloud would never accept still cannot change a key's structure.
        let evil = ChannelKeys::new("whc", "a}:x{b*");
        assert_eq!(evil.0[0], "whc:{a%7D%3Ax%7Bb%2A}:state");
        assert_ne!(
            ChannelKeys::new("whc", "a%7D").0[0],
            ChannelKeys::new("whc", "a}").0[0],
            "the escape character itself is escaped"
        );
    }

    /// The part of a key Redis Cluster hashes (the first non-empty `{…}`, else the key).
    fn hashed(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn every_key_of_a_channel_lives_in_one_cluster_slot() {
        for name in ["team-alpha", "a", "a}:x{b*", "{x}", "ü-name"] {
            let keys = ChannelKeys::new("whc", name);
            let tag = hashed(&keys.all()[0]);
            assert_eq!(tag, encode_channel(name), "{name}: the tag is the channel");
            assert!(
                keys.all().iter().all(|k| hashed(k) == tag),
                "{name}: keys hash differently"
            );
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(valid_prefix("whc"));
        assert!(valid_prefix("prod_eu-1.a"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a:b"));
        assert!(!valid_prefix(&"x".repeat(33)));
    }
}
