//! Secrets and identifiers of self-service objects. Every one comes from the OS random
//! generator; keys and tokens are stored only as SHA-256 digests.

use base64::Engine as _;
use connect_protocol::hosted::{ACCOUNT_ID_PREFIX, API_KEY_PREFIX, WEBHOOK_ID_PREFIX};
use rand::RngCore as _;

/// RFC 4648 base32 alphabet, lower case (webhook ids are case-sensitive path segments).
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// `whc_` + 32 random bytes, URL-safe base64 without padding.
pub fn new_api_key() -> String {
    format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>())
    )
}

/// `acc_` + 16 hex digits.
pub fn new_account_id() -> String {
    format!("{ACCOUNT_ID_PREFIX}{}", hex::encode(random::<8>()))
}

/// `wh_` + 26 base32 characters (130 random bits).
pub fn new_webhook_id() -> String {
    let bytes = random::<26>();
    let tail: String = bytes
        .iter()
        .map(|b| BASE32[(b & 31) as usize] as char)
        .collect();
    format!("{WEBHOOK_ID_PREFIX}{tail}")
}

/// A generated account name for an open sign-up without one: `dev-` + 8 base32 characters.
pub fn new_account_name() -> String {
    let tail: String = random::<8>()
        .iter()
        .map(|b| BASE32[(b & 31) as usize] as char)
        .collect();
    format!("dev-{tail}")
}

/// Could `token` be an API key? (Only the shape: the digest decides.)
pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with(API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_protocol::hosted::is_valid_account_name;

    #[test]
    fn generated_values_have_their_documented_shapes() {
        let k = new_api_key();
        assert!(k.starts_with("whc_") && k.len() == 4 + 43, "{k}");
        let id = new_account_id();
        assert!(id.starts_with("acc_") && id.len() == 20);
        let wh = new_webhook_id();
        assert_eq!(wh.len(), 3 + 26);
        assert!(connect_protocol::ids::validate_webhook_id(&wh).is_ok());
        assert_ne!(new_webhook_id(), wh);
        assert!(is_valid_account_name(&new_account_name()));
    }
}
