//! A process's identity: its name and the Ed25519 key that signs the
//! credentials of the calls it makes.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Grant, Scope};

/// What a credential says, as its JWT claims.
#[derive(Serialize, Deserialize)]
pub(super) struct Claims {
    /// The issuer: the name of the identity that signed it.
    pub iss: String,
    /// The audience: the one service that may accept it.
    pub aud: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<uuid::Uuid>,
    pub scp: Vec<String>,
    pub iat: u64,
    pub exp: u64,
}

/// A name and a private key: signs credentials as that name.
pub struct Identity {
    name: String,
    key_id: String,
    public_key: String,
    encoding: EncodingKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// `name`'s identity from its private key (PKCS#8 PEM, as
    /// `rapportctl identity new` writes it).
    pub fn from_pem(name: &str, pem: &str) -> anyhow::Result<Self> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .ok()
            .context("the identity key is not an Ed25519 private key in PKCS#8 PEM")?;
        Ok(Self::from_key(name, &key))
    }

    /// `name`'s identity with a key made from `seed`: each seed is one key.
    #[cfg(test)]
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Self {
        Self::from_key(name, &SigningKey::from_bytes(&seed))
    }

    /// A new random private key, as PKCS#8 PEM.
    pub fn generate_key() -> anyhow::Result<String> {
        let mut seed = [0; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let pem = SigningKey::from_bytes(&seed)
            .to_pkcs8_pem(LineEnding::LF)
            .ok()
            .context("encoding the new key")?;
        Ok(pem.to_string())
    }

    fn from_key(name: &str, key: &SigningKey) -> Self {
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let public_key = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        Self {
            name: name.to_owned(),
            key_id: key_id(&public_key),
            public_key,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
        }
    }

    /// The name credentials are issued under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key (the JWK `x`: base64url of its 32 bytes), as a trust
    /// list names it.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// A credential for a call to `audience` with `grant`, valid for `ttl`.
    pub fn mint(&self, audience: &str, grant: &Grant, ttl: Duration) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: self.name.clone(),
            aud: audience.to_owned(),
            sub: grant.principal.clone(),
            tid: grant.tenant_id,
            scp: grant.scopes.iter().map(Scope::to_string).collect(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("signing serializable claims with a valid Ed25519 key cannot fail")
    }
}

/// The id of a public key: its JWK thumbprint (RFC 7638), so both ends
/// derive it and no one configures it.
pub(super) fn key_id(public_key: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_key}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint_of_the_public_key() {
        // RFC 8037, appendix A.1 to A.3: the key and its thumbprint.
        let seed = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let identity = Identity::from_seed("rfc", seed.try_into().unwrap());
        assert_eq!(
            identity.public_key(),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(
            identity.key_id,
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_generated_key_reads_back_and_each_is_new() {
        let pem = Identity::generate_key().unwrap();
        let once = Identity::from_pem("operator", &pem).unwrap();
        let again = Identity::from_pem("operator", &pem).unwrap();
        assert_eq!(once.public_key(), again.public_key());
        let other = Identity::from_pem("operator", &Identity::generate_key().unwrap()).unwrap();
        assert_ne!(once.public_key(), other.public_key());
        assert!(Identity::from_pem("operator", "not a key").is_err());
    }
}
