//! Respondent tokens: what SubmitResponse takes instead of an API key.
//!
//! `fbi_<43 base64url>` answers one invitation (and continues an anonymous
//! response); `fba_<43 base64url>` is a survey's anonymous link. Each has
//! 256 random bits, so a SHA-256 of the token is a safe lookup key: the
//! invitations table holds only the hash (the CreateInvitations reply kept
//! for retries holds the tokens for a day), and finding a row by hash leaks
//! nothing a timing attack could use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43;

/// What a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Invitation,
    AnonymousLink,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            TokenKind::Invitation => "fbi_",
            TokenKind::AnonymousLink => "fba_",
        }
    }
}

/// A new token and the hash to store for it.
pub fn generate(kind: TokenKind) -> (String, String) {
    let mut secret = [0_u8; SECRET_BYTES];
    getrandom::fill(&mut secret).expect("the operating system provides randomness");
    let token = format!("{}{}", kind.tag(), URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&token);
    (token, hash)
}

/// The lookup key of a token: its SHA-256 in lowercase hex.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kind of a presented token, if it has the shape of one.
pub fn kind_of(token: &str) -> Option<TokenKind> {
    [TokenKind::Invitation, TokenKind::AnonymousLink]
        .into_iter()
        .find(|kind| {
            token.strip_prefix(kind.tag()).is_some_and(|secret| {
                secret.len() == SECRET_CHARS
                    && secret
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_their_kind_and_hash() {
        let (token, stored) = generate(TokenKind::Invitation);
        assert_eq!(kind_of(&token), Some(TokenKind::Invitation));
        assert_eq!(hash(&token), stored);
        let (link, _) = generate(TokenKind::AnonymousLink);
        assert_eq!(kind_of(&link), Some(TokenKind::AnonymousLink));
        assert_ne!(generate(TokenKind::Invitation).0, token);
    }

    #[test]
    fn malformed_tokens_have_no_kind() {
        assert_eq!(kind_of(""), None);
        assert_eq!(kind_of("fbi_short"), None);
        assert_eq!(kind_of(&format!("rk_{}", "a".repeat(43))), None);
        assert_eq!(kind_of(&format!("fbi_{}!", "a".repeat(42))), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        // printf abc | sha256sum
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
