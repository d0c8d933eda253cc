//! Whether a call may go on, and with which credential: a key holder's
//! call is authenticated, in scope, within its key's and tenant's rates
//! and its tenant's calls in flight; a public call (a customer answering a
//! survey) is within its client address's rate and its token's, and the
//! calls in flight all public calls share.

use std::time::{Duration, Instant};

use rapport_core::ApiError;
use rapport_core::credential::Access;
use rapport_core::shares::TenantShares;
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::gateway::v1::ErrorReason;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;
use uuid::Uuid;

use crate::auth::{Authenticator, Caller};
use crate::domain::client::Client;
use crate::domain::rate_limit::{Quota, RateLimiter};

/// Who public calls are logged as.
const PUBLIC_PRINCIPAL: &str = "public";
/// The in-flight pool all public calls share.
const PUBLIC_POOL: Uuid = Uuid::nil();
/// How long a caller over its calls in flight is asked to wait.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_millis(100);

/// What a token bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    Key(Uuid),
    Tenant(Uuid),
    /// Public calls from one client address.
    PublicClient(Client),
    /// Public calls with one token (its SHA-256: no token is kept).
    Token([u8; 32]),
}

/// The rates and pools calls are admitted within.
pub struct Admissions {
    pub authenticator: Authenticator,
    pub key_quota: Quota,
    /// Public calls per client address.
    pub public_quota: Quota,
    /// Public calls per token.
    pub token_quota: Quota,
    /// Calls in flight per tenant, and for all public calls together.
    pub in_flight: TenantShares,
    limiter: RateLimiter<Bucket>,
}

/// What an admitted call forwards with, and the slot it holds.
pub struct Admission {
    pub credential: http::HeaderValue,
    /// For the access log: the tenant id, or `-` for public calls.
    pub tenant_label: String,
    pub principal: String,
    pub slot: OwnedSemaphorePermit,
}

impl Admissions {
    pub fn new(
        authenticator: Authenticator,
        key_quota: Quota,
        public_quota: Quota,
        token_quota: Quota,
        in_flight: TenantShares,
    ) -> Self {
        Self {
            authenticator,
            key_quota,
            public_quota,
            token_quota,
            in_flight,
            limiter: RateLimiter::default(),
        }
    }

    /// Admits a call from `client` with an API key to `service`, which
    /// needs `access`.
    pub async fn key_holder(
        &self,
        headers: &http::HeaderMap,
        client: Client,
        service: &str,
        access: Access,
    ) -> Result<Admission, Status> {
        let caller = self.authenticator.authenticate(headers, client).await?;
        if !caller.grant.allows(service, access) {
            let needed = match access {
                Access::Read => "read",
                Access::Write => "write",
            };
            return Err(ApiError::permission_denied(
                Common::MissingScope,
                format!("this API key lacks the scope {service}:{needed}"),
            )
            .into());
        }
        self.within_rates(&caller)?;
        let credential = caller
            .credential(service)
            .cloned()
            .ok_or_else(|| not_configured(service))?;
        let slot = self
            .in_flight
            .try_acquire(caller.tenant_id)
            .ok_or_else(|| {
                ApiError::resource_exhausted(
                    ErrorReason::TenantConcurrencyLimited,
                    "the tenant has too many calls in flight; retry after the delay",
                    IN_FLIGHT_RETRY_AFTER,
                )
            })?;
        Ok(Admission {
            credential,
            tenant_label: caller.tenant_id.to_string(),
            principal: caller.key_prefix.clone(),
            slot,
        })
    }

    /// Admits a public call from `client` to `service`, answering for
    /// `token` when the method names one: no key, so no tenant; each
    /// client address and each token has a rate of its own, so that one
    /// client cannot crowd out everyone's respondents.
    pub fn public(
        &self,
        client: Client,
        token: Option<&[u8]>,
        service: &str,
    ) -> Result<Admission, Status> {
        let now = Instant::now();
        if let Err(wait) = self
            .limiter
            .check(Bucket::PublicClient(client), self.public_quota, now)
        {
            return Err(ApiError::resource_exhausted(
                ErrorReason::PublicRateLimited,
                "too many public calls from this address right now; retry after the delay",
                wait,
            )
            .into());
        }
        if let Some(token) = token {
            let bucket = Bucket::Token(Sha256::digest(token).into());
            if let Err(wait) = self.limiter.check(bucket, self.token_quota, now) {
                return Err(ApiError::resource_exhausted(
                    ErrorReason::TokenRateLimited,
                    "too many calls with this token right now; retry after the delay",
                    wait,
                )
                .into());
            }
        }
        let credential = self
            .authenticator
            .public_credential(service)
            .ok_or_else(|| not_configured(service))?;
        let slot = self.in_flight.try_acquire(PUBLIC_POOL).ok_or_else(|| {
            ApiError::resource_exhausted(
                ErrorReason::PublicConcurrencyLimited,
                "too many public calls in flight; retry after the delay",
                IN_FLIGHT_RETRY_AFTER,
            )
        })?;
        Ok(Admission {
            credential,
            tenant_label: "-".to_owned(),
            principal: PUBLIC_PRINCIPAL.to_owned(),
            slot,
        })
    }

    /// The key's and then the tenant's token bucket: a key over its own
    /// quota is refused before it can drain its tenant's.
    fn within_rates(&self, caller: &Caller) -> Result<(), Status> {
        let now = Instant::now();
        if let Err(wait) = self
            .limiter
            .check(Bucket::Key(caller.key_id), self.key_quota, now)
        {
            return Err(ApiError::resource_exhausted(
                ErrorReason::ApiKeyRateLimited,
                "this API key's rate limit is reached; retry after the delay",
                wait,
            )
            .into());
        }
        if let Err(wait) =
            self.limiter
                .check(Bucket::Tenant(caller.tenant_id), caller.tenant_quota, now)
        {
            return Err(ApiError::resource_exhausted(
                ErrorReason::TenantRateLimited,
                "the tenant's rate limit is reached; retry after the delay",
                wait,
            )
            .into());
        }
        Ok(())
    }
}

/// UNAVAILABLE for a service this gateway has no upstream for.
pub fn not_configured(service: &str) -> ApiError {
    ApiError::unavailable(
        ErrorReason::ServiceNotConfigured,
        format!("the {service} service is not available on this gateway"),
        crate::upstream::RETRY_AFTER,
    )
}
