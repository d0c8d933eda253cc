//! Internal credentials: short-lived tokens (JWTs signed with EdDSA) that
//! say who calls which service, for which tenant, with which scopes.
//!
//! Every process has an [`Identity`]: a name (`gateway`, a service's name,
//! a tool's such as `operator`) and an Ed25519 key only it holds. The
//! gateway signs a credential for each call it forwards, for the tenant of
//! the API key; a service signs its own for the calls it makes (feed
//! subscriptions, and calls for the tenant of the call or event that caused
//! them). Services only verify ([`Verifier`]), against one [`TrustList`]:
//! each issuer's public keys (two at once during a rotation, told apart by
//! key id) and the scopes it may grant. A credential names its audience,
//! so one seen by contacts is refused by feedback, and it lives a minute.

mod identity;
mod outbound;
mod trust;

pub use identity::Identity;
pub use outbound::{Outbound, TenantOutbound};
pub use trust::{TrustList, Verifier};

/// Metadata key that carries the credential.
pub const CREDENTIAL_HEADER: &str = "x-rapport-credential";

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

    /// Every service, read and write: for operators and the gateway.
    pub fn all() -> Self {
        Self::new("*", Access::Write)
    }

    pub fn allows(&self, service: &str, access: Access) -> bool {
        (self.service == "*" || self.service == service)
            && (self.access == Access::Write || access == Access::Read)
    }

    /// Whether everything `other` allows, this allows too.
    pub fn covers(&self, other: &Scope) -> bool {
        (self.service == "*" || self.service == other.service)
            && (self.access == Access::Write || other.access == Access::Read)
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
    pub tenant_id: Option<uuid::Uuid>,
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_scope_covers_what_it_allows_and_no_more() {
        let scope = |text: &str| text.parse::<Scope>().unwrap();
        assert!(scope("contacts:write").covers(&scope("contacts:read")));
        assert!(scope("contacts:write").covers(&scope("contacts:write")));
        assert!(!scope("contacts:read").covers(&scope("contacts:write")));
        assert!(!scope("contacts:write").covers(&scope("feedback:read")));
        assert!(!scope("contacts:write").covers(&scope("*:read")));
        assert!(Scope::all().covers(&scope("*:write")));
        assert!(scope("*:read").covers(&scope("feedback:read")));
        assert!(!scope("*:read").covers(&scope("feedback:write")));
    }
}
