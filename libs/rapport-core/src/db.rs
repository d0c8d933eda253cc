//! PostgreSQL: the service's pool, its migrations, and tenant transactions.
//!
//! Row-level security isolates tenants: every tenant-owned table has a
//! policy comparing `tenant_id` with the `app.tenant_id` setting, which
//! [`begin_tenant`] sets for one transaction only (never for the pooled
//! session). Without the setting the policy errors instead of matching all
//! rows. Services log in as a role that owns no table and has no BYPASSRLS,
//! which [`connect`] checks.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::config::DatabaseConfig;

/// Applies the migrations (when configured to), then opens the service's
/// pool and checks that row-level security binds its role.
pub async fn connect(config: &DatabaseConfig, migrator: &Migrator) -> anyhow::Result<PgPool> {
    if let Some(url) = &config.migrate_database_url {
        migrate(url, migrator).await?;
    }
    let options: PgConnectOptions = config
        .database_url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        // A ping per acquire would add a round trip to every call; a broken
        // connection fails its query instead, and is replaced.
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL with DATABASE_URL")?;
    ensure_row_security_applies(&pool).await?;
    Ok(pool)
}

/// `--migrate-only`: applies the migrations with the configured migration URL.
pub async fn migrate_only(config: &DatabaseConfig, migrator: &Migrator) -> anyhow::Result<()> {
    let url = config
        .migrate_database_url
        .as_deref()
        .context("--migrate-only needs RAPPORT_MIGRATE_DATABASE_URL")?;
    migrate(url, migrator).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Runs `migrator` with a schema owner's URL, then closes that connection.
pub async fn migrate(url: &str, migrator: &Migrator) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to PostgreSQL with the migration URL")?;
    migrator.run(&pool).await.context("applying migrations")?;
    pool.close().await;
    Ok(())
}

/// Refuses a role that row-level security does not bind, since every
/// tenant boundary in Rapport rests on it.
async fn ensure_row_security_applies(pool: &PgPool) -> anyhow::Result<()> {
    let (role, superuser, bypass): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .context("reading the database role")?;
    anyhow::ensure!(
        !superuser && !bypass,
        "DATABASE_URL logs in as {role:?}, which bypasses row-level security; \
         use the service's own role (see README, \"Database roles\")"
    );
    // An owner could switch row-level security off on its tables.
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(pool)
    .await
    .context("reading the tables the database role owns")?;
    anyhow::ensure!(
        owned == 0,
        "DATABASE_URL logs in as {role:?}, which owns tables and could turn row-level security off; \
         use the service's own role (see README, \"Database roles\")"
    );
    Ok(())
}

/// Begins a transaction in which row-level security shows only `tenant`'s rows.
///
/// `BEGIN` and the tenant setting travel in one round trip. Inlining the id
/// is safe: a `Uuid` prints as hex digits and dashes only.
pub async fn begin_tenant(
    pool: &PgPool,
    tenant: Uuid,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(tenant_begin_statement(tenant)).await
}

/// Begins a read-only transaction for `tenant`: a write in it fails.
/// End it with [`finish_read`].
pub async fn begin_tenant_read(
    pool: &PgPool,
    tenant: Uuid,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(AssertSqlSafe(format!(
        "BEGIN READ ONLY; SELECT set_config('app.tenant_id', '{tenant}', true)"
    )))
    .await
}

/// Ends a read-only transaction without waiting for the server. The
/// transaction wrote nothing, so rolling it back equals committing it; sqlx
/// queues the ROLLBACK and sends it with the check it makes when the
/// connection returns to the pool, which saves a round trip per read.
pub fn finish_read(tx: Transaction<'static, Postgres>) {
    drop(tx);
}

/// Begins a transaction with `settings` (name, value) applied to it only,
/// for schemas whose policies read settings other than the tenant.
///
/// Settings made of plain characters (letters, digits, `_ . : -`: flags,
/// key prefixes, hex digests) travel with `BEGIN` in one round trip;
/// anything else is bound as a parameter in a second one.
pub async fn begin_with_settings(
    pool: &PgPool,
    settings: &[(&str, &str)],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let plain = |text: &str| {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    };
    if !settings
        .iter()
        .all(|(name, value)| plain(name) && plain(value))
    {
        let mut tx = pool.begin().await?;
        set_local(&mut tx, settings).await?;
        return Ok(tx);
    }
    let calls: Vec<String> = settings
        .iter()
        .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
        .collect();
    pool.begin_with(AssertSqlSafe(format!("BEGIN; SELECT {}", calls.join(", "))))
        .await
}

/// Applies `settings` (name, value) until the end of the current transaction.
pub async fn set_local(
    conn: &mut sqlx::PgConnection,
    settings: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    let (names, values): (Vec<&str>, Vec<&str>) = settings.iter().copied().unzip();
    sqlx::query("SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)")
        .bind(names)
        .bind(values)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`begin_tenant`] on a connection of the caller's own.
pub async fn begin_tenant_on(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    use sqlx::Connection as _;
    conn.begin_with(tenant_begin_statement(tenant)).await
}

fn tenant_begin_statement(tenant: Uuid) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)"
    ))
}

/// Whether `error` is a violation of the unique constraint or index `name`.
pub fn is_unique_violation(error: &sqlx::Error, name: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(name))
}
