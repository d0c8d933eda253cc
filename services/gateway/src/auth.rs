//! API key authentication. Lookups are cached per key prefix for at most
//! the configured TTL (under a second), so a revoked key, an expired key or
//! a suspended tenant is refused within that bound on every replica, while
//! the database sees one lookup per key per TTL however busy the key is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::HeaderValue;
use moka::future::Cache;
use rapport_core::credential::{CredentialKey, Grant, Scope};
use rapport_core::db::Database;
use rapport_core::error::is_connection_loss;
use rapport_core::{ApiError, ApiResult, Clock};
use rapport_proto::gateway::v1::ErrorReason;
use uuid::Uuid;

use crate::domain::api_key;
use crate::domain::rate_limit::Quota;
use crate::store;

/// A verified caller and what the gateway forwards for it.
pub struct Caller {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub key_prefix: String,
    pub grant: Grant,
    /// The internal credential the services verify, minted at lookup.
    pub credential: HeaderValue,
    pub tenant_quota: Quota,
}

/// What a lookup found for a prefix; cached, misses included.
struct KeyEntry {
    secret_hash: Vec<u8>,
    revoked: bool,
    expire_time: Option<DateTime<Utc>>,
    tenant_active: bool,
    caller: Arc<Caller>,
}

pub struct Authenticator {
    db: Database,
    key: CredentialKey,
    clock: Clock,
    cache: Cache<String, Option<Arc<KeyEntry>>>,
    default_quota: Quota,
    /// The credential of public calls and when it was minted; re-minted
    /// well before it expires.
    public: std::sync::Mutex<(Instant, HeaderValue)>,
}

/// How long a caller is asked to wait when keys cannot be checked.
const AUTH_RETRY_AFTER: Duration = Duration::from_millis(500);

/// Lifetime of minted credentials: well beyond the cache TTL, well short of
/// anything worth stealing.
const CREDENTIAL_TTL: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(
        db: Database,
        key: CredentialKey,
        clock: Clock,
        cache_ttl: Duration,
        default_quota: Quota,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(cache_ttl)
            .build();
        let public = std::sync::Mutex::new((Instant::now(), mint_public(&key)));
        Self {
            db,
            key,
            clock,
            cache,
            default_quota,
            public,
        }
    }

    /// The credential forwarded with public calls: no tenant, no scope.
    pub fn public_credential(&self) -> HeaderValue {
        let mut public = self
            .public
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if public.0.elapsed() > CREDENTIAL_TTL / 2 {
            *public = (Instant::now(), mint_public(&self.key));
        }
        public.1.clone()
    }

    /// The caller behind the `authorization: Bearer <api key>` header.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> ApiResult<Arc<Caller>> {
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
        let prefix = api_key::prefix_of(presented).ok_or_else(|| {
            ApiError::unauthenticated(ErrorReason::ApiKeyInvalid, "the API key is not valid")
        })?;
        let entry = self
            .cache
            .try_get_with(prefix.to_owned(), self.load(prefix))
            .await
            .map_err(|error| {
                // The database is saturated or went away: a retry may succeed.
                if matches!(*error, sqlx::Error::PoolTimedOut) || is_connection_loss(&error) {
                    ApiError::unavailable(
                        ErrorReason::AuthBusy,
                        "cannot check API keys right now; retry with backoff",
                        AUTH_RETRY_AFTER,
                    )
                } else {
                    ApiError::internal(anyhow::anyhow!("looking up an API key: {error}"))
                }
            })?;
        let entry = entry
            .filter(|entry| api_key::verify(presented, &entry.secret_hash))
            .ok_or_else(|| {
                ApiError::unauthenticated(ErrorReason::ApiKeyInvalid, "the API key is not valid")
            })?;
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
        let credential = HeaderValue::from_str(&self.key.mint(&grant, CREDENTIAL_TTL))
            .expect("a JWT is a valid header value");
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
                credential,
                tenant_quota,
            }),
        })))
    }
}

fn mint_public(key: &CredentialKey) -> HeaderValue {
    let grant = Grant {
        tenant_id: None,
        principal: "public".to_owned(),
        scopes: Vec::new(),
    };
    HeaderValue::from_str(&key.mint(&grant, CREDENTIAL_TTL)).expect("a JWT is a valid header value")
}

fn positive_or(value: i32, default: u32) -> u32 {
    u32::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(default)
}
