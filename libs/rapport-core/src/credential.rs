//! The internal credential: a short-lived token, signed with a secret shared
//! by the gateway and the services, that says who is calling for which
//! tenant with which scopes.
//!
//! The gateway mints one per forwarded call after checking the caller's API
//! key; services verify it and never trust any other tenant header. Services
//! that call each other mint their own with a service principal.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use rapport_proto::common::v1::ErrorReason as Common;

use crate::error::{ApiError, ApiResult};

/// Metadata key that carries the credential.
pub const CREDENTIAL_HEADER: &str = "x-rapport-credential";

const ISSUER: &str = "rapport-gateway";
const AUDIENCE: &str = "rapport-services";
const MIN_SECRET_BYTES: usize = 32;

/// Read or write access to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A permission such as `contacts:read`, `contacts:write` or `*:write`.
/// Write access includes read access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    service: String,
    access: Access,
}

impl Scope {
    pub fn new(service: impl Into<String>, access: Access) -> Self {
        Self {
            service: service.into(),
            access,
        }
    }

    /// Every service, read and write: for operators and service principals.
    pub fn all() -> Self {
        Self::new("*", Access::Write)
    }

    pub fn allows(&self, service: &str, access: Access) -> bool {
        (self.service == "*" || self.service == service)
            && (self.access == Access::Write || access == Access::Read)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let access = match self.access {
            Access::Read => "read",
            Access::Write => "write",
        };
        write!(f, "{}:{access}", self.service)
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("scope {text:?} is not of the form <service>:<read|write>");
        let (service, access) = text.split_once(':').ok_or_else(invalid)?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return Err(invalid()),
        };
        let valid_service = service == "*"
            || (!service.is_empty()
                && service.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if !valid_service {
            return Err(invalid());
        }
        Ok(Self::new(service, access))
    }
}

/// What a credential grants: the verified identity of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The tenant the call acts for; `None` for calls across all tenants
    /// (operators, the change feed).
    pub tenant_id: Option<Uuid>,
    /// Who is calling: an API key id, an operator, or a service name.
    pub principal: String,
    pub scopes: Vec<Scope>,
}

impl Grant {
    pub fn allows(&self, service: &str, access: Access) -> bool {
        self.scopes
            .iter()
            .any(|scope| scope.allows(service, access))
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tid: Option<Uuid>,
    scp: Vec<String>,
    iat: u64,
    exp: u64,
}

/// Signs and verifies credentials (HMAC-SHA256).
#[derive(Clone)]
pub struct CredentialKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl CredentialKey {
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "the credential secret must be at least {MIN_SECRET_BYTES} bytes"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            inner: Arc::new(KeyInner {
                encoding: EncodingKey::from_secret(secret.as_bytes()),
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                validation,
            }),
        })
    }

    /// A credential for `grant`, valid for `ttl`.
    pub fn mint(&self, grant: &Grant, ttl: Duration) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: grant.principal.clone(),
            tid: grant.tenant_id,
            scp: grant.scopes.iter().map(Scope::to_string).collect(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .expect("HS256 signing of serializable claims cannot fail")
    }

    /// The grant of a valid credential, or UNAUTHENTICATED.
    pub fn verify(&self, token: &str) -> ApiResult<Grant> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|error| {
                    tracing::debug!(%error, "rejected internal credential");
                    ApiError::unauthenticated(
                        Common::InvalidCredential,
                        "the internal credential is invalid or expired",
                    )
                })?;
        let claims = data.claims;
        let scopes = claims
            .scp
            .iter()
            .map(|scope| scope.parse())
            .collect::<Result<Vec<Scope>, _>>()
            .map_err(|_| {
                ApiError::unauthenticated(
                    Common::InvalidCredential,
                    "the internal credential has a malformed scope",
                )
            })?;
        Ok(Grant {
            tenant_id: claims.tid,
            principal: claims.sub,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-123";

    fn grant() -> Grant {
        Grant {
            tenant_id: Some(Uuid::now_v7()),
            principal: "key:abc".into(),
            scopes: vec![Scope::new("contacts", Access::Read)],
        }
    }

    #[test]
    fn minted_credential_verifies_to_the_same_grant() {
        let key = CredentialKey::new(SECRET).unwrap();
        let grant = grant();
        let token = key.mint(&grant, Duration::from_secs(60));
        assert_eq!(key.verify(&token).unwrap(), grant);
    }

    #[test]
    fn credential_signed_with_another_secret_is_rejected() {
        let other = CredentialKey::new("another-secret-that-is-long-enough-456").unwrap();
        let token = other.mint(&grant(), Duration::from_secs(60));
        let key = CredentialKey::new(SECRET).unwrap();
        assert_eq!(
            key.verify(&token).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn tampered_credential_is_rejected() {
        let key = CredentialKey::new(SECRET).unwrap();
        let token = key.mint(&grant(), Duration::from_secs(60));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = key.mint(
            &Grant {
                scopes: vec![Scope::all()],
                ..grant()
            },
            Duration::from_secs(60),
        );
        parts[1] = forged_claims.split('.').nth(1).unwrap();
        assert!(key.verify(&parts.join(".")).is_err());
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(CredentialKey::new("short").is_err());
    }

    #[test]
    fn write_scope_includes_read_and_wildcard_covers_every_service() {
        let write: Scope = "contacts:write".parse().unwrap();
        assert!(write.allows("contacts", Access::Read));
        assert!(write.allows("contacts", Access::Write));
        assert!(!write.allows("feedback", Access::Read));
        let read: Scope = "contacts:read".parse().unwrap();
        assert!(!read.allows("contacts", Access::Write));
        assert!(Scope::all().allows("feedback", Access::Write));
        assert!("contacts:admin".parse::<Scope>().is_err());
        assert!("Contacts:read".parse::<Scope>().is_err());
    }
}
