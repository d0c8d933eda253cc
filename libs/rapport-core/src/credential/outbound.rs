//! The credential of the calls a process makes to one service with one
//! grant: minted when first needed and again once half its life is gone,
//! so a long-running caller (a feed consumer, a tool, a test) never sends
//! an expired one and never signs per call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tonic::metadata::MetadataValue;

use uuid::Uuid;

use super::{CREDENTIAL_HEADER, Grant, Identity, Scope};

/// How long an outbound credential is valid.
const LIFETIME: Duration = Duration::from_secs(60);

/// Calls to `audience` as `grant`, signed by `identity`; also a tonic
/// interceptor that adds the credential to every call.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Arc<Identity>,
    audience: String,
    grant: Grant,
    current: Mutex<Option<(Instant, HeaderValue)>>,
}

impl Outbound {
    pub fn new(identity: Arc<Identity>, audience: &str, grant: Grant) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity,
                audience: audience.to_owned(),
                grant,
                current: Mutex::new(None),
            }),
        }
    }

    /// The credential to send now.
    pub fn token(&self) -> HeaderValue {
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*current {
            Some((minted, token)) if minted.elapsed() < LIFETIME / 2 => token.clone(),
            _ => {
                let token = self
                    .inner
                    .identity
                    .mint(&self.inner.audience, &self.inner.grant, LIFETIME)
                    .parse::<HeaderValue>()
                    .expect("a JWT is a valid header value");
                *current = Some((Instant::now(), token.clone()));
                token
            }
        }
    }
}

impl tonic::service::Interceptor for Outbound {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let token = MetadataValue::try_from(self.token().as_bytes())
            .expect("a JWT is a valid metadata value");
        request.metadata_mut().insert(CREDENTIAL_HEADER, token);
        Ok(request)
    }
}

/// Most tenants whose credentials are kept at once.
const TENANTS_KEPT: u64 = 10_000;

/// Calls to `audience` on behalf of the tenant of the call or event that
/// caused them: a service asking another about the tenant's data. One
/// [`Outbound`] per tenant, made when first needed.
#[derive(Clone)]
pub struct TenantOutbound {
    identity: Arc<Identity>,
    audience: String,
    scopes: Vec<Scope>,
    by_tenant: moka::sync::Cache<Uuid, Outbound>,
}

impl TenantOutbound {
    /// Calls to `audience` with `scopes`, as the service `identity` names.
    pub fn new(identity: Arc<Identity>, audience: &str, scopes: Vec<Scope>) -> Self {
        Self {
            identity,
            audience: audience.to_owned(),
            scopes,
            by_tenant: moka::sync::Cache::builder()
                .max_capacity(TENANTS_KEPT)
                .time_to_idle(LIFETIME * 10)
                .build(),
        }
    }

    /// The credential of calls for `tenant`.
    pub fn for_tenant(&self, tenant: Uuid) -> Outbound {
        self.by_tenant.get_with(tenant, || {
            let grant = Grant {
                tenant_id: Some(tenant),
                principal: format!("service:{}", self.identity.name()),
                scopes: self.scopes.clone(),
            };
            Outbound::new(self.identity.clone(), &self.audience, grant)
        })
    }
}
