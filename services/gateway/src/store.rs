//! sqlx queries on the `gateway` schema: tenants and API keys, in operator
//! mode (admin calls) or key-lookup mode (authentication), as the schema's
//! row-level-security policies define them.

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_core::db::{Database, Tx, set_local};
use rapport_proto::gateway::v1 as pb;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub display_name: String,
    pub state: i16,
    pub rate_limit_per_second: i32,
    pub rate_limit_burst: i32,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl TenantRow {
    pub fn is_active(&self) -> bool {
        i32::from(self.state) == pb::TenantState::Active as i32
    }

    pub fn to_proto(&self) -> pb::Tenant {
        pb::Tenant {
            id: self.id.to_string(),
            display_name: self.display_name.clone(),
            state: self.state.into(),
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub display_name: String,
    pub scopes: Vec<String>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
}

impl KeyRow {
    pub fn to_proto(&self) -> pb::ApiKey {
        pb::ApiKey {
            id: self.id.to_string(),
            tenant_id: self.tenant_id.to_string(),
            display_name: self.display_name.clone(),
            prefix: self.prefix.clone(),
            scopes: self.scopes.clone(),
            expire_time: self.expire_time.map(to_timestamp),
            create_time: Some(to_timestamp(self.create_time)),
            revoke_time: self.revoke_time.map(to_timestamp),
        }
    }
}

const TENANT_COLUMNS: &str =
    "id, display_name, state, rate_limit_per_second, rate_limit_burst, create_time, update_time";

macro_rules! key_columns {
    () => {
        "tenant_id, id, prefix, secret_hash, display_name, scopes, expire_time, revoke_time, create_time"
    };
}

/// A transaction for admin calls, made after the operator key was checked.
pub async fn begin_operator(db: &Database) -> sqlx::Result<Tx> {
    db.begin_with_settings(&[("app.operator", "on")]).await
}

pub async fn create_tenant(
    conn: &mut PgConnection,
    display_name: &str,
    per_second: i32,
    burst: i32,
    now: DateTime<Utc>,
) -> sqlx::Result<TenantRow> {
    sqlx::query_as(
        "INSERT INTO gateway.tenants (id, display_name, state, rate_limit_per_second, rate_limit_burst, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         RETURNING id, display_name, state, rate_limit_per_second, rate_limit_burst, create_time, update_time",
    )
    .bind(Uuid::now_v7())
    .bind(display_name)
    .bind(pb::TenantState::Active as i16)
    .bind(per_second)
    .bind(burst)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn get_tenant(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM gateway.tenants WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list_tenants(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<TenantRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM gateway.tenants WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn set_tenant_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: pb::TenantState,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE gateway.tenants SET state = $2, update_time = $3 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(id)
    .bind(state as i16)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// The fields of a key to store.
pub struct NewKeyRow<'a> {
    pub tenant_id: Uuid,
    pub prefix: &'a str,
    pub secret_hash: &'a [u8],
    pub display_name: &'a str,
    pub scopes: &'a [String],
    pub expire_time: Option<DateTime<Utc>>,
}

pub async fn create_key(
    conn: &mut PgConnection,
    key: NewKeyRow<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<KeyRow> {
    sqlx::query_as(concat!(
        "INSERT INTO gateway.api_keys (tenant_id, id, prefix, secret_hash, display_name, scopes, expire_time, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        key_columns!()
    ))
    .bind(key.tenant_id)
    .bind(Uuid::now_v7())
    .bind(key.prefix)
    .bind(key.secret_hash)
    .bind(key.display_name)
    .bind(key.scopes)
    .bind(key.expire_time)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn list_keys(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM gateway.api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Revokes key `id` (keeping the first revocation time when repeated).
pub async fn revoke_key(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as(concat!(
        "UPDATE gateway.api_keys SET revoke_time = coalesce(revoke_time, $2) WHERE id = $1 RETURNING ",
        key_columns!()
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// The key with `prefix` and its tenant, seen in key-lookup mode: only that
/// key's row, then only its tenant's row, are visible.
pub async fn find_key(db: &Database, prefix: &str) -> sqlx::Result<Option<(KeyRow, TenantRow)>> {
    let mut tx = db
        .begin_with_settings(&[("app.key_prefix", prefix)])
        .await?;
    let key: Option<KeyRow> = sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM gateway.api_keys WHERE prefix = $1"
    ))
    .bind(prefix)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(key) = key else { return Ok(None) };
    set_local(&mut tx, &[("app.tenant_id", &key.tenant_id.to_string())]).await?;
    let tenant = get_tenant(&mut tx, key.tenant_id).await?;
    tx.commit().await?;
    Ok(tenant.map(|tenant| (key, tenant)))
}
