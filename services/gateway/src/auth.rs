//! API key authentication. Lookups are cached per key prefix for at most
//! the configured TTL (under a second), so a revoked key, an expired key or
//! a suspended tenant is refused within that bound on every replica, while
//! the database sees one lookup per key per TTL however busy the key is.
//! Each lookup also signs the key's internal credential for every service
//! behind the gateway (each credential names its one audience).
//!
//! What authentication costs is limited before it is spent: a client
//! address may make only so many calls that need a lookup (a prefix not in
//! the cache) or fail, unknown prefixes are remembered like known ones, and
//! only a few lookups run at once; one more fails at once rather than
//! queueing for the database. A flood of made-up keys thus costs the
//! database a few queries per second, and the keys in use stay cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::HeaderValue;
use moka::future::Cache;
use rapport_core::credential::{Grant, Identity, Outbound, Scope};
use rapport_core::db::Database;
use rapport_core::error::is_connection_loss;
use rapport_core::{ApiError, ApiResult, Clock};
use rapport_proto::gateway::v1::ErrorReason;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::domain::api_key;
use crate::domain::client::Client;
use crate::domain::rate_limit::{Quota, RateLimiter};
use crate::store;

/// A verified caller and what the gateway forwards for it.
pub struct Caller {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub key_prefix: String,
    pub grant: Grant,
    /// The internal credential for each service, minted at lookup.
    credentials: HashMap<String, HeaderValue>,
    pub tenant_quota: Quota,
}

impl Caller {
    /// The credential of this caller's calls to `service`.
    pub fn credential(&self, service: &str) -> Option<&HeaderValue> {
        self.credentials.get(service)
    }
}

/// What a lookup found for a prefix; cached, misses included.
struct KeyEntry {
    secret_hash: Vec<u8>,
    revoked: bool,
    expire_time: Option<DateTime<Utc>>,
    tenant_active: bool,
    caller: Arc<Caller>,
}

/// Why a key could not be looked up.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("every lookup slot is taken")]
    Busy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How authentication is bounded.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// How long a lookup (found or not) is trusted.
    pub cache_ttl: Duration,
    /// Per client address: calls that need a lookup or fail.
    pub unauthenticated: Quota,
    /// Lookups running at once.
    pub max_lookups: usize,
}

pub struct Authenticator {
    db: Database,
    identity: Arc<Identity>,
    /// The services behind the gateway: each key's credentials name them.
    audiences: Vec<String>,
    clock: Clock,
    cache: Cache<String, Option<Arc<KeyEntry>>>,
    default_quota: Quota,
    /// The credential of public calls, by service.
    public: HashMap<String, Outbound>,
    unauthenticated: Quota,
    clients: RateLimiter<Client>,
    lookups: Semaphore,
}

/// How long a caller is asked to wait when keys cannot be checked.
const AUTH_RETRY_AFTER: Duration = Duration::from_millis(500);

/// The longest a lookup waits for a slot: enough to ride out a burst of
/// honest first calls, short enough that a flood is refused at once.
const LOOKUP_WAIT: Duration = Duration::from_millis(25);

/// Lifetime of minted credentials: well beyond the cache TTL, well short of
/// anything worth stealing.
const CREDENTIAL_TTL: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(
        db: Database,
        identity: Arc<Identity>,
        audiences: Vec<String>,
        clock: Clock,
        default_quota: Quota,
        limits: AuthLimits,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(limits.cache_ttl)
            .build();
        // Public calls carry no tenant and no scope: the service finds
        // the tenant from the token in the request.
        let anonymous = Grant {
            tenant_id: None,
            principal: "public".to_owned(),
            scopes: Vec::new(),
        };
        let public = audiences
            .iter()
            .map(|service| {
                let outbound = Outbound::new(identity.clone(), service, anonymous.clone());
                (service.clone(), outbound)
            })
            .collect();
        Self {
            db,
            identity,
            audiences,
            clock,
            cache,
            default_quota,
            public,
            unauthenticated: limits.unauthenticated,
            clients: RateLimiter::default(),
            lookups: Semaphore::new(limits.max_lookups.max(1)),
        }
    }

    /// The credential forwarded with public calls to `service`.
    pub fn public_credential(&self, service: &str) -> Option<HeaderValue> {
        self.public.get(service).map(Outbound::token)
    }

    /// The caller behind the `authorization: Bearer <api key>` header of a
    /// call from `client`.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client: Client,
    ) -> ApiResult<Arc<Caller>> {
        let mut charged = false;
        let result = self.check(headers, client, &mut charged).await;
        if result.is_err() && !charged {
            // A failure costs the client a token of its allowance too, so
            // guessing secrets is as slow as guessing prefixes.
            let _ = self
                .clients
                .check(client, self.unauthenticated, Instant::now());
        }
        result
    }

    async fn check(
        &self,
        headers: &http::HeaderMap,
        client: Client,
        charged: &mut bool,
    ) -> ApiResult<Arc<Caller>> {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    ErrorReason::ApiKeyMissing,
                    "send an API key as `authorization: Bearer <key>`",
                )
            })?;
        let prefix = api_key::prefix_of(presented).ok_or_else(invalid_key)?;
        let entry = match self.cache.get(prefix).await {
            Some(entry) => entry,
            None => {
                *charged = true;
                if let Err(wait) = self
                    .clients
                    .check(client, self.unauthenticated, Instant::now())
                {
                    return Err(ApiError::resource_exhausted(
                        ErrorReason::ClientRateLimited,
                        "too many calls from this address needed a key looked up or failed; retry after the delay",
                        wait,
                    ));
                }
                self.cache
                    .try_get_with(prefix.to_owned(), self.load_bounded(prefix))
                    .await
                    .map_err(|error| lookup_failed(&error))?
            }
        };
        let entry = entry
            .filter(|entry| api_key::verify(presented, &entry.secret_hash))
            .ok_or_else(invalid_key)?;
        if entry.revoked {
            return Err(ApiError::unauthenticated(
                ErrorReason::ApiKeyRevoked,
                "the API key was revoked",
            ));
        }
        if entry
            .expire_time
            .is_some_and(|expiry| expiry <= self.clock.now())
        {
            return Err(ApiError::unauthenticated(
                ErrorReason::ApiKeyExpired,
                "the API key has expired",
            ));
        }
        if !entry.tenant_active {
            return Err(ApiError::permission_denied(
                ErrorReason::TenantSuspended,
                "the tenant is suspended",
            ));
        }
        Ok(entry.caller.clone())
    }

    /// [`Authenticator::load`] in one of the few lookup slots.
    async fn load_bounded(&self, prefix: &str) -> Result<Option<Arc<KeyEntry>>, LookupError> {
        let _slot = tokio::time::timeout(LOOKUP_WAIT, self.lookups.acquire())
            .await
            .map_err(|_| LookupError::Busy)?
            .expect("the lookup semaphore is never closed");
        Ok(self.load(prefix).await?)
    }

    async fn load(&self, prefix: &str) -> Result<Option<Arc<KeyEntry>>, sqlx::Error> {
        let Some((key, tenant)) = store::find_key(&self.db, prefix).await? else {
            return Ok(None);
        };
        // Scopes were checked when the key was made; one that no longer
        // parses grants nothing rather than failing every call.
        let scopes: Vec<Scope> = key.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        let grant = Grant {
            tenant_id: Some(key.tenant_id),
            principal: format!("key:{}", key.id),
            scopes,
        };
        let credentials = self
            .audiences
            .iter()
            .map(|service| {
                let token = self.identity.mint(service, &grant, CREDENTIAL_TTL);
                let value = HeaderValue::from_str(&token).expect("a JWT is a valid header value");
                (service.clone(), value)
            })
            .collect();
        let tenant_quota = Quota {
            per_second: positive_or(tenant.rate_limit_per_second, self.default_quota.per_second),
            burst: positive_or(tenant.rate_limit_burst, self.default_quota.burst),
        };
        Ok(Some(Arc::new(KeyEntry {
            secret_hash: key.secret_hash,
            revoked: key.revoke_time.is_some(),
            expire_time: key.expire_time,
            tenant_active: tenant.is_active(),
            caller: Arc::new(Caller {
                tenant_id: key.tenant_id,
                key_id: key.id,
                key_prefix: key.prefix,
                grant,
                credentials,
                tenant_quota,
            }),
        })))
    }
}

fn invalid_key() -> ApiError {
    ApiError::unauthenticated(ErrorReason::ApiKeyInvalid, "the API key is not valid")
}

/// UNAVAILABLE when keys cannot be checked now (every slot taken, the
/// database saturated or gone), which a retry may mend.
fn lookup_failed(error: &LookupError) -> ApiError {
    let busy = match error {
        LookupError::Busy => true,
        LookupError::Database(error) => {
            matches!(error, sqlx::Error::PoolTimedOut) || is_connection_loss(error)
        }
    };
    if busy {
        ApiError::unavailable(
            ErrorReason::AuthBusy,
            "cannot check API keys right now; retry with backoff",
            AUTH_RETRY_AFTER,
        )
    } else {
        ApiError::internal(anyhow::anyhow!("looking up an API key: {error}"))
    }
}

fn positive_or(value: i32, default: u32) -> u32 {
    u32::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(default)
}
