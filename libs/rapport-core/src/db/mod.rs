//! PostgreSQL: the service's pool, its migrations, and tenant transactions.
//!
//! Row-level security isolates tenants: every tenant-owned table has a
//! policy comparing `tenant_id` with the `app.tenant_id` setting, which
//! [`Database::begin_tenant`] sets for one transaction only (never for the
//! pooled session). Without the setting the policy errors instead of matching all
//! rows. Services log in as a role that owns no table and has no BYPASSRLS,
//! which [`connect`] checks.

mod observed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::shares::TenantShares;
use observed::{PoolMetrics, TxSpan, pool_name};
pub use observed::{StatementCounting, statement_events};

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

/// A service's database: its pool, each tenant's share of its connections,
/// and the call's deadline carried down to PostgreSQL.
///
/// A transaction begun for a call waits for a connection (and a unit of
/// its tenant's share) no longer than the call's remaining deadline, and
/// sets `statement_timeout` and `lock_timeout` to it, so that a call that
/// expired or was cancelled frees its connection instead of holding it
/// behind a lock. One tenant never holds more than its share of the
/// connections, so another tenant's calls always find one.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    shares: Arc<TenantShares>,
    /// The longest a call may take: the bound for work without a deadline.
    ceiling: Duration,
    metrics: Arc<PoolMetrics>,
}

/// A transaction of a call, with the tenant's share it holds and its span.
pub struct Tx {
    tx: Transaction<'static, Postgres>,
    _share: Option<OwnedSemaphorePermit>,
    span: TxSpan,
}

impl std::ops::Deref for Tx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.span.committed = true;
        Ok(())
    }
}

/// A pooled connection of a call outside any transaction, with its
/// tenant's share.
pub struct Conn {
    conn: PoolConnection<Postgres>,
    _share: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Database {
    /// `pool` shared so that each tenant holds at most `per_tenant` of its
    /// connections; calls without a deadline are bounded by `ceiling`.
    pub fn new(pool: PgPool, per_tenant: usize, ceiling: Duration) -> Self {
        Self {
            metrics: Arc::new(PoolMetrics::new(&pool)),
            pool,
            shares: Arc::new(TenantShares::new(per_tenant)),
            ceiling,
        }
    }

    /// The pool itself, for work that is no call's (background tasks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What the current call may still spend: its remaining deadline, at
    /// most the ceiling.
    fn budget(&self) -> Duration {
        crate::deadline::within(self.ceiling)
    }

    /// Begins a transaction in which row-level security shows only
    /// `tenant`'s rows.
    pub async fn begin_tenant(&self, tenant: Uuid) -> Result<Tx, sqlx::Error> {
        self.begin(
            Some(tenant),
            "BEGIN",
            &[("app.tenant_id", &tenant.to_string())],
        )
        .await
    }

    /// Begins a read-only transaction for `tenant`: a write in it fails.
    /// End it with [`finish_read`].
    pub async fn begin_tenant_read(&self, tenant: Uuid) -> Result<Tx, sqlx::Error> {
        self.begin(
            Some(tenant),
            "BEGIN READ ONLY",
            &[("app.tenant_id", &tenant.to_string())],
        )
        .await
    }

    /// Begins a read-only snapshot of `tenant`'s data: every read in it sees
    /// the data as of its first statement (an export that is consistent
    /// however long it takes to stream).
    pub async fn begin_tenant_snapshot(&self, tenant: Uuid) -> Result<Tx, sqlx::Error> {
        self.begin(
            Some(tenant),
            SNAPSHOT,
            &[("app.tenant_id", &tenant.to_string())],
        )
        .await
    }

    /// Begins a transaction with `settings` (name, value) applied to it
    /// only, for work not yet tied to a tenant (a survey token's lookup, an
    /// operator's call).
    pub async fn begin_with_settings(&self, settings: &[(&str, &str)]) -> Result<Tx, sqlx::Error> {
        self.begin(None, "BEGIN", settings).await
    }

    /// A connection for `tenant` outside any transaction, for a single
    /// statement that sets its own tenant (one round trip).
    pub async fn acquire(&self, tenant: Uuid) -> Result<Conn, sqlx::Error> {
        let budget = self.budget();
        tokio::time::timeout(budget, async {
            let share = self.share(tenant, budget).await?;
            let conn = self.pool.acquire().await?;
            Ok(Conn {
                conn,
                _share: share,
            })
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn share(
        &self,
        tenant: Uuid,
        budget: Duration,
    ) -> Result<OwnedSemaphorePermit, sqlx::Error> {
        self.shares
            .acquire(tenant, budget)
            .await
            .ok_or(sqlx::Error::PoolTimedOut)
    }

    async fn begin(
        &self,
        tenant: Option<Uuid>,
        begin: &str,
        settings: &[(&str, &str)],
    ) -> Result<Tx, sqlx::Error> {
        let budget = self.budget();
        // PostgreSQL reads 0 as "no timeout": a spent budget is 1 ms.
        let millis = budget
            .as_millis()
            .clamp(1, u128::from(u32::MAX))
            .to_string();
        let mut all = settings.to_vec();
        all.extend([
            ("statement_timeout", millis.as_str()),
            ("lock_timeout", millis.as_str()),
        ]);
        let span = TxSpan::begin();
        let waiting = Instant::now();
        tokio::time::timeout(budget, async {
            let share = match tenant {
                Some(tenant) => Some(self.share(tenant, budget).await?),
                None => None,
            };
            // The share goes with the transaction's task: a call abandoned
            // while its transaction begins keeps the tenant's count until
            // the connection is free again.
            let (tx, share) = begin_holding(&self.pool, begin, &all, share).await?;
            self.metrics
                .wait_time
                .record(waiting.elapsed().as_secs_f64(), &[pool_name()]);
            Ok(Tx {
                tx,
                _share: share,
                span,
            })
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }
}

/// Ends a read-only transaction without waiting for the server. The
/// transaction wrote nothing, so rolling it back equals committing it; sqlx
/// queues the ROLLBACK and sends it with the check it makes when the
/// connection returns to the pool, which saves a round trip per read.
pub fn finish_read(tx: Tx) {
    drop(tx);
}

/// Begins a transaction on `pool` for work that is no call's (a feed
/// consumer's batch), safe to abandon while it begins (see [`begin_with`]).
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_with(pool, "BEGIN", &[]).await
}

/// Begins a transaction on `pool` with `settings` (name, value) applied to
/// it only, for work that is no call's: the sequencer, the feed, consumers.
pub async fn begin_with_settings(
    pool: &PgPool,
    settings: &[(&str, &str)],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_with(pool, "BEGIN", settings).await
}

/// [`begin_with_settings`] for a read-only snapshot: every read in it sees
/// the data as of its first statement (REPEATABLE READ).
pub async fn begin_snapshot_with_settings(
    pool: &PgPool,
    settings: &[(&str, &str)],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_with(pool, SNAPSHOT, settings).await
}

const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// `begin` (`BEGIN` or `BEGIN READ ONLY`) with `settings` applied to the
/// transaction. Settings made of plain characters (letters, digits,
/// `_ . : -`: flags, ids, key prefixes, hex digests, milliseconds) travel
/// with it in one round trip; anything else is bound as a parameter in a
/// second one.
///
/// The transaction begins on a task of its own. A BEGIN abandoned in
/// flight (its call cancelled, its deadline passed) would hand the
/// connection back to the pool inside a transaction sqlx does not know of
/// (sqlx 0.9 undoes an abandoned BEGIN only when nested in another):
/// the next call's BEGIN would be ignored, and its tenant setting rolled
/// back under it by the abandoned one's ROLLBACK. On its own task, the
/// transaction is always either handed over or dropped whole, which rolls
/// it back.
async fn begin_with(
    pool: &PgPool,
    begin: &str,
    settings: &[(&str, &str)],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let (tx, ()) = begin_holding(pool, begin, settings, ()).await?;
    Ok(tx)
}

/// [`begin_with`], holding `held` (a tenant's share of the pool) on the
/// transaction's task and handing it back with the transaction.
async fn begin_holding<H: Send + 'static>(
    pool: &PgPool,
    begin: &str,
    settings: &[(&str, &str)],
    held: H,
) -> Result<(Transaction<'static, Postgres>, H), sqlx::Error> {
    let plain = |text: &str| {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    };
    let (statement, bound): (String, Vec<(String, String)>) = if settings.is_empty() {
        (begin.to_owned(), Vec::new())
    } else if settings
        .iter()
        .all(|(name, value)| plain(name) && plain(value))
    {
        let calls: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
            .collect();
        (format!("{begin}; SELECT {}", calls.join(", ")), Vec::new())
    } else {
        let owned = settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        (begin.to_owned(), owned)
    };
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut tx = pool.begin_with(AssertSqlSafe(statement)).await?;
        if !bound.is_empty() {
            let bound: Vec<(&str, &str)> = bound
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            set_local(&mut tx, &bound).await?;
        }
        Ok((tx, held))
    })
    .await
    .map_err(|error| sqlx::Error::Protocol(format!("beginning a transaction: {error}")))?
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

/// Whether `error` is a violation of the unique constraint or index `name`.
pub fn is_unique_violation(error: &sqlx::Error, name: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(name))
}
