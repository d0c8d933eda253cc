//! The identities of a test stack and the trust list they share. Each key
//! is derived from its name, so a test and every process it starts agree on
//! them without passing keys around; no test key is a secret.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use jsonwebtoken::EncodingKey;
use rapport_core::credential::{Grant, Identity};
use sha2::{Digest as _, Sha256};

/// Who signs in a test stack, and what each may grant: the gateway and
/// `operator` (tests acting as a tool: test controls, dead letters)
/// anything; `feedback` reads contacts and `segmentation` contacts and
/// feedback, as in production; `consumer` (the
/// tests' own feed consumers) reads any feed; `contacts` calls no one.
const ISSUERS: &[(&str, &[&str])] = &[
    ("gateway", &["*:write"]),
    ("operator", &["*:write"]),
    ("contacts", &[]),
    ("feedback", &["contacts:read"]),
    ("segmentation", &["contacts:read", "feedback:read"]),
    ("consumer", &["*:read"]),
];

fn signing_key(name: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("rapport-test-identity/{name}")).into();
    SigningKey::from_bytes(&seed)
}

/// The private key (PKCS#8 PEM) of `name` in tests.
pub fn identity_key(name: &str) -> String {
    signing_key(name)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes")
        .to_string()
}

/// The identity of `name` in tests.
pub fn identity(name: &str) -> Arc<Identity> {
    Arc::new(Identity::from_pem(name, &identity_key(name)).expect("a test key reads back"))
}

/// The trust list every test process verifies with
/// (`RAPPORT_TRUSTED_ISSUERS`).
pub fn trusted_issuers() -> String {
    let list: Vec<serde_json::Value> = ISSUERS
        .iter()
        .map(|(name, grants)| {
            serde_json::json!({
                "issuer": name,
                "keys": [identity(name).public_key()],
                "grants": grants,
            })
        })
        .collect();
    serde_json::to_string(&list).expect("JSON values serialize")
}

/// A credential with any `claims` (a JSON object), signed by `name`'s test
/// key under that key's id: for tests of what a service refuses.
pub fn sign_claims(name: &str, claims: &serde_json::Value) -> String {
    // The key id is the one the identity itself puts in its credentials.
    let anonymous = Grant {
        tenant_id: None,
        principal: String::new(),
        scopes: Vec::new(),
    };
    let minted = identity(name).mint("any", &anonymous, Duration::from_secs(1));
    let mut header =
        jsonwebtoken::decode_header(&minted).expect("a minted credential has a header");
    header.typ = Some("JWT".to_owned());
    let der = signing_key(name)
        .to_pkcs8_der()
        .expect("an Ed25519 key always encodes");
    let key = EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).expect("JSON claims sign")
}
