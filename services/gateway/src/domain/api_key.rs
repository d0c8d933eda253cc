//! API keys: `rk_<12 hex>.<43 base64url>`. The part before the dot is the
//! public prefix, stored in clear to find the key; the whole key has 256
//! bits of secret, so a SHA-256 of it is a safe verifier (no slow hash is
//! needed for random secrets). Verification compares in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

const PREFIX_TAG: &str = "rk_";
const PREFIX_HEX_LEN: usize = 12;
const SECRET_BYTES: usize = 32;

/// A new key: what the caller is shown once, and what is stored.
pub struct NewKey {
    pub prefix: String,
    pub secret: String,
    pub hash: Vec<u8>,
}

pub fn generate() -> NewKey {
    let mut random = [0_u8; PREFIX_HEX_LEN / 2 + SECRET_BYTES];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    let (prefix_bytes, secret_bytes) = random.split_at(PREFIX_HEX_LEN / 2);
    let prefix = format!("{PREFIX_TAG}{}", hex(prefix_bytes));
    let secret = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(secret_bytes));
    let hash = hash(&secret);
    NewKey {
        prefix,
        secret,
        hash,
    }
}

/// The public prefix of a presented key, if it has our shape.
pub fn prefix_of(key: &str) -> Option<&str> {
    let (prefix, secret) = key.split_once('.')?;
    let hex_part = prefix.strip_prefix(PREFIX_TAG)?;
    let shaped = hex_part.len() == PREFIX_HEX_LEN
        && hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some(prefix)
}

pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Whether `presented` is the key whose hash is `stored`, in constant time.
pub fn verify(presented: &str, stored: &[u8]) -> bool {
    hash(presented).ct_eq(stored).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_a_findable_prefix_and_verify() {
        let key = generate();
        assert_eq!(prefix_of(&key.secret), Some(key.prefix.as_str()));
        assert!(key.prefix.starts_with("rk_") && key.prefix.len() == 15);
        assert!(verify(&key.secret, &key.hash));
        assert_ne!(generate().secret, key.secret);
    }

    #[test]
    fn a_changed_secret_does_not_verify() {
        let key = generate();
        let mut forged = key.secret.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(prefix_of(&forged), Some(key.prefix.as_str()));
        assert!(!verify(&forged, &key.hash));
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "",
            "rk_",
            "rk_0123456789ab",
            "xx_0123456789ab.secret",
            "rk_0123456789AB.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "rk_0123456789ab.short",
        ] {
            assert_eq!(prefix_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_whole_key() {
        // sha256("abc"), a published test vector.
        assert_eq!(
            hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
