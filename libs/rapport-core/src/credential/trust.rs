//! Which credentials a service accepts: the trust list (each issuer, its
//! public keys and the scopes it may grant), and the verifier that checks a
//! credential against it and against the service's own name, the audience.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rapport_proto::common::v1::ErrorReason as Common;
use serde::Deserialize;

use super::identity::{Claims, key_id};
use super::{Grant, Scope};
use crate::error::{ApiError, ApiResult};

/// The longest life a credential may claim: one that leaks is of no use
/// within minutes.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Clock difference tolerated between issuer and verifier, in seconds.
const LEEWAY_SECS: u64 = 5;
/// Credentials remembered once verified: the gateway reuses one per API
/// key for a while, so a service checks a signature once, not per call.
const VERIFIED_CACHE_ENTRIES: u64 = 4096;

/// One issuer as the trust list names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerEntry {
    issuer: String,
    /// Public keys (the JWK `x`: base64url of 32 bytes); two during a
    /// rotation.
    keys: Vec<String>,
    /// The scopes its credentials may carry.
    grants: Vec<String>,
}

struct TrustedKey {
    issuer: String,
    decoding: DecodingKey,
    grants: Vec<Scope>,
}

/// Who may sign the credentials a service accepts, by key id: a JSON list
/// of `{"issuer": "feedback", "keys": ["<public key>"], "grants":
/// ["contacts:read"]}` (`RAPPORT_TRUSTED_ISSUERS`).
#[derive(Clone)]
pub struct TrustList {
    keys: HashMap<String, Arc<TrustedKey>>,
}

impl std::fmt::Debug for TrustList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<&str> = self.keys.values().map(|k| k.issuer.as_str()).collect();
        issuers.sort_unstable();
        issuers.dedup();
        f.debug_struct("TrustList")
            .field("issuers", &issuers)
            .finish()
    }
}

impl std::str::FromStr for TrustList {
    type Err = anyhow::Error;

    fn from_str(json: &str) -> anyhow::Result<Self> {
        let entries: Vec<IssuerEntry> = serde_json::from_str(json)
            .context("the trust list is a JSON list of {issuer, keys, grants}")?;
        anyhow::ensure!(!entries.is_empty(), "the trust list names no issuer");
        let mut keys = HashMap::new();
        for entry in entries {
            let issuer = entry.issuer;
            anyhow::ensure!(
                !issuer.is_empty()
                    && issuer
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-'),
                "issuer {issuer:?}: a name is lowercase letters, '_' and '-'"
            );
            anyhow::ensure!(!entry.keys.is_empty(), "issuer {issuer} has no key");
            let grants = entry
                .grants
                .iter()
                .map(|grant| grant.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("issuer {issuer}: {e}"))?;
            for public_key in entry.keys {
                let bytes = URL_SAFE_NO_PAD
                    .decode(&public_key)
                    .ok()
                    .filter(|bytes| bytes.len() == 32)
                    .with_context(|| {
                        format!("issuer {issuer}: {public_key:?} is not an Ed25519 public key (base64url of 32 bytes)")
                    })?;
                let trusted = TrustedKey {
                    issuer: issuer.clone(),
                    decoding: DecodingKey::from_ed_der(&bytes),
                    grants: grants.clone(),
                };
                let listed_twice = keys
                    .insert(key_id(&public_key), Arc::new(trusted))
                    .is_some();
                anyhow::ensure!(!listed_twice, "the key {public_key} is listed twice");
            }
        }
        Ok(Self { keys })
    }
}

/// A credential that verified, remembered until it expires.
struct Verified {
    grant: Arc<Grant>,
    expires: u64,
}

/// Checks the credentials of calls to one service (the audience).
pub struct Verifier {
    keys: HashMap<String, (Arc<TrustedKey>, Validation)>,
    verified: moka::sync::Cache<String, Arc<Verified>>,
}

impl Verifier {
    pub fn new(audience: &str, trust: &TrustList) -> Self {
        let keys = trust
            .keys
            .iter()
            .map(|(id, key)| {
                let mut validation = Validation::new(Algorithm::EdDSA);
                validation.set_issuer(&[&key.issuer]);
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
                validation.leeway = LEEWAY_SECS;
                (id.clone(), (key.clone(), validation))
            })
            .collect();
        Self {
            keys,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .time_to_live(MAX_LIFETIME)
                .build(),
        }
    }

    /// The grant of a credential that is valid for this service, or
    /// UNAUTHENTICATED saying why not.
    pub fn verify(&self, token: &str) -> ApiResult<Arc<Grant>> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.verified.get(token)
            && now <= hit.expires + LEEWAY_SECS
        {
            return Ok(hit.grant.clone());
        }
        let verified = Arc::new(self.check(token, now)?);
        self.verified.insert(token.to_owned(), verified.clone());
        Ok(verified.grant.clone())
    }

    fn check(&self, token: &str, now: u64) -> ApiResult<Verified> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the internal credential is malformed"))?;
        let (key, validation) = header
            .kid
            .as_ref()
            .and_then(|id| self.keys.get(id))
            .ok_or_else(|| {
                invalid("the internal credential is signed with a key this service does not trust")
            })?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation)
            .map_err(|error| {
                invalid(match error.kind() {
                    ErrorKind::ExpiredSignature => "the internal credential has expired",
                    ErrorKind::InvalidAudience => "the internal credential is for another service",
                    ErrorKind::InvalidIssuer => {
                        "the internal credential names an issuer other than its key's"
                    }
                    _ => "the internal credential is invalid",
                })
            })?
            .claims;
        if claims.iat > now + LEEWAY_SECS {
            return Err(invalid("the internal credential was issued in the future"));
        }
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME.as_secs() {
            return Err(invalid(
                "the internal credential claims a lifetime over five minutes",
            ));
        }
        let mut scopes = Vec::with_capacity(claims.scp.len());
        for text in &claims.scp {
            let scope: Scope = text
                .parse()
                .map_err(|_| invalid("the internal credential has a malformed scope"))?;
            if !key.grants.iter().any(|grant| grant.covers(&scope)) {
                return Err(invalid(&format!(
                    "the internal credential claims {scope}, which {} may not grant",
                    key.issuer
                )));
            }
            scopes.push(scope);
        }
        Ok(Verified {
            grant: Arc::new(Grant {
                tenant_id: claims.tid,
                principal: claims.sub,
                scopes,
            }),
            expires: claims.exp,
        })
    }
}

fn invalid(message: &str) -> ApiError {
    tracing::debug!(message, "refused an internal credential");
    ApiError::unauthenticated(Common::InvalidCredential, message.to_owned())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::{Access, Identity};
    use super::*;

    fn identity(name: &str, seed: u8) -> Identity {
        Identity::from_seed(name, [seed; 32])
    }

    fn trust(entries: &[(&Identity, &[&str])]) -> TrustList {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(identity, grants)| {
                serde_json::json!({
                    "issuer": identity.name(),
                    "keys": [identity.public_key()],
                    "grants": grants,
                })
            })
            .collect();
        serde_json::to_string(&list).unwrap().parse().unwrap()
    }

    fn grant(scopes: &[&str]) -> Grant {
        Grant {
            tenant_id: Some(Uuid::now_v7()),
            principal: "key:abc".into(),
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn reason_of(verifier: &Verifier, token: &str) -> String {
        verifier.verify(token).unwrap_err().to_string()
    }

    #[test]
    fn a_credential_verifies_to_the_grant_it_was_minted_for() {
        let gateway = identity("gateway", 1);
        let verifier = Verifier::new("contacts", &trust(&[(&gateway, &["*:write"])]));
        let grant = grant(&["contacts:read"]);
        let token = gateway.mint("contacts", &grant, Duration::from_secs(60));
        assert_eq!(*verifier.verify(&token).unwrap(), grant);
        // Again, from the cache.
        assert_eq!(*verifier.verify(&token).unwrap(), grant);
    }

    #[test]
    fn a_credential_for_another_service_is_refused() {
        let gateway = identity("gateway", 1);
        let trust = trust(&[(&gateway, &["*:write"])]);
        let token = gateway.mint("contacts", &grant(&["*:write"]), Duration::from_secs(60));
        let message = reason_of(&Verifier::new("feedback", &trust), &token);
        assert!(message.contains("another service"), "{message}");
    }

    #[test]
    fn a_key_signs_only_as_its_own_issuer() {
        let gateway = identity("gateway", 1);
        let feedback = identity("feedback", 2);
        let verifier = Verifier::new(
            "contacts",
            &trust(&[(&gateway, &["*:write"]), (&feedback, &["contacts:read"])]),
        );
        // Feedback's key, the gateway's name.
        let posing = Identity::from_seed("gateway", [2; 32]);
        let token = posing.mint("contacts", &grant(&["*:write"]), Duration::from_secs(60));
        let message = reason_of(&verifier, &token);
        assert!(message.contains("other than its key's"), "{message}");
    }

    #[test]
    fn an_issuer_may_grant_only_its_scopes() {
        let feedback = identity("feedback", 2);
        let verifier = Verifier::new("contacts", &trust(&[(&feedback, &["contacts:read"])]));
        let reading = feedback.mint(
            "contacts",
            &grant(&["contacts:read"]),
            Duration::from_secs(60),
        );
        assert!(
            verifier
                .verify(&reading)
                .unwrap()
                .allows("contacts", Access::Read)
        );
        let writing = feedback.mint(
            "contacts",
            &grant(&["contacts:write"]),
            Duration::from_secs(60),
        );
        let message = reason_of(&verifier, &writing);
        assert!(message.contains("feedback may not grant"), "{message}");
    }

    #[test]
    fn unknown_keys_long_lives_and_tampering_are_refused() {
        let gateway = identity("gateway", 1);
        let verifier = Verifier::new("contacts", &trust(&[(&gateway, &["*:write"])]));
        let stranger = identity("gateway", 9);
        let token = stranger.mint("contacts", &grant(&["*:write"]), Duration::from_secs(60));
        assert!(reason_of(&verifier, &token).contains("does not trust"));

        let long = gateway.mint("contacts", &grant(&["*:write"]), Duration::from_secs(3600));
        assert!(reason_of(&verifier, &long).contains("over five minutes"));

        let honest = gateway.mint(
            "contacts",
            &grant(&["contacts:read"]),
            Duration::from_secs(60),
        );
        let forged = gateway.mint("contacts", &grant(&["*:write"]), Duration::from_secs(60));
        let mut parts: Vec<&str> = honest.split('.').collect();
        parts[1] = forged.split('.').nth(1).unwrap();
        assert!(verifier.verify(&parts.join(".")).is_err());
    }

    #[test]
    fn during_a_rotation_both_keys_of_an_issuer_verify() {
        let old = identity("gateway", 1);
        let new = identity("gateway", 3);
        let list = serde_json::json!([{
            "issuer": "gateway",
            "keys": [old.public_key(), new.public_key()],
            "grants": ["*:write"],
        }]);
        let verifier = Verifier::new("contacts", &list.to_string().parse().unwrap());
        for identity in [&old, &new] {
            let token = identity.mint("contacts", &grant(&["*:write"]), Duration::from_secs(60));
            assert!(verifier.verify(&token).is_ok());
        }
    }

    #[test]
    fn a_malformed_trust_list_is_refused_with_the_reason() {
        let bad = |json: &str| format!("{:#}", json.parse::<TrustList>().unwrap_err());
        assert!(bad("[]").contains("no issuer"));
        assert!(
            bad(r#"[{"issuer": "Gateway", "keys": ["x"], "grants": []}]"#).contains("lowercase")
        );
        assert!(
            bad(r#"[{"issuer": "gateway", "keys": ["abc"], "grants": []}]"#).contains("32 bytes")
        );
        let key = identity("gateway", 1).public_key().to_owned();
        assert!(
            bad(&format!(
                r#"[{{"issuer": "gateway", "keys": ["{key}"], "grants": ["all"]}}]"#
            ))
            .contains("<service>:<read|write>")
        );
        assert!(
            bad(&format!(
                r#"[{{"issuer": "a", "keys": ["{key}"], "grants": []}}, {{"issuer": "b", "keys": ["{key}"], "grants": []}}]"#
            ))
            .contains("twice")
        );
    }
}
