//! A token digest as the embedded store and the hub hold it per channel: the 32 bytes of a
//! SHA-256 when the digest is the usual 64 lowercase hex characters
//! ([`connect_protocol::ids::token_digest`]), the text otherwise. Half the size of the hex text
//! and no allocation (issue #14: a channel's token state was ~240 B in the hub and about as
//! much again in the store, most of it 64-byte strings). Comparisons are constant-time and give
//! exactly what comparing the hex texts gave.

use subtle::ConstantTimeEq;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Digest {
    Sha256([u8; 32]),
    Other(Box<str>),
}

/// The 32 bytes of 64 lowercase hex characters; `None` for anything else.
fn lower_hex_32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

impl Digest {
    pub fn new(s: &str) -> Self {
        match lower_hex_32(s) {
            Some(b) => Digest::Sha256(b),
            None => Digest::Other(s.into()),
        }
    }

    /// Is this the digest `s`? Constant-time in the digest's bytes.
    pub fn is(&self, s: &str) -> bool {
        match self {
            Digest::Sha256(mine) => {
                // A presented value that is not lowercase hex never equalled the hex text.
                let theirs = lower_hex_32(s);
                let theirs_or_zero = theirs.unwrap_or([0; 32]);
                theirs.is_some() & bool::from(mine.ct_eq(&theirs_or_zero))
            }
            Digest::Other(mine) => {
                mine.len() == s.len() && bool::from(mine.as_bytes().ct_eq(s.as_bytes()))
            }
        }
    }

    pub fn to_hex(&self) -> String {
        match self {
            Digest::Sha256(b) => hex::encode(b),
            Digest::Other(s) => s.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn compares_like_the_hex_text() {
        let a = connect_protocol::ids::token_digest("a");
        let b = connect_protocol::ids::token_digest("b");
        let d = Digest::new(&a);
        assert!(matches!(d, Digest::Sha256(_)));
        assert!(d.is(&a));
        assert!(!d.is(&b));
        assert!(
            !d.is(&a.to_uppercase()),
            "upper case never matched the hex text"
        );
        assert!(!d.is(&a[..63]));
        assert_eq!(d.to_hex(), a);
        for odd in ["", "not-a-digest", &a.to_uppercase()] {
            let o = Digest::new(odd);
            assert!(matches!(o, Digest::Other(_)));
            assert!(o.is(odd));
            assert!(!o.is(&a));
            assert_eq!(o.to_hex(), odd);
        }
    }
}
