//! Gives committed outbox events their feed positions, and prunes events
//! past their retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;
use rapport_core::Clock;
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// Most events positioned in one transaction.
const BLOCK: i64 = 5000;
/// How often to look for events even without a notification: a safety net
/// for a missed wake-up, not the normal path.
const POLL: Duration = Duration::from_millis(500);

/// Where a pass starts looking, by the id of the transaction that wrote an
/// event: every transaction below it had ended before an earlier complete
/// pass took its snapshot, so all of their events are positioned. Zero
/// (look at everything) until a pass completes.
#[derive(Debug, Clone, Copy, Default)]
struct Horizon(i64);

/// Positions every committed, unpositioned event, in blocks. Returns how
/// many it positioned and the newest position.
///
/// The `outbox_state` row lock makes one sequencer run at a time across all
/// replicas, and each block continues where the last committed one ended,
/// so positions have no gaps and become visible in order.
async fn sequence_once(
    pool: &PgPool,
    outbox: &Outbox,
    horizon: &mut Horizon,
) -> sqlx::Result<(i64, i64)> {
    let mut total = 0;
    loop {
        let mut tx = rapport_core::db::begin_with_settings(pool, &[("app.feed", "on")]).await?;
        // The oldest transaction still running, read before the scan below
        // takes its own snapshot: the scan sees every event of the
        // transactions under it.
        let (base, next_horizon): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT last_position, pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             FROM {} FOR UPDATE",
            outbox.state_table()
        )))
        .fetch_one(&mut *tx)
        .await?;
        let (assigned, newest): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "WITH next AS ( \
                 SELECT tenant_id, event_id, row_number() OVER (ORDER BY event_id) AS n \
                 FROM {table} WHERE position IS NULL AND txid >= $3::text::xid8 \
                 ORDER BY event_id LIMIT $2), \
             done AS ( \
                 UPDATE {table} o SET position = $1 + next.n FROM next \
                 WHERE o.tenant_id = next.tenant_id AND o.event_id = next.event_id RETURNING o.position) \
             SELECT count(*), max(position) FROM done",
            table = outbox.table()
        )))
        .bind(base)
        .bind(BLOCK)
        .bind(horizon.0)
        .fetch_one(&mut *tx)
        .await?;
        let Some(head) = newest else {
            tx.rollback().await?;
            *horizon = Horizon(next_horizon);
            return Ok((total, base));
        };
        // The highest position given, not base + count: a row that vanished
        // between the two may leave a hole, never a position given twice.
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET last_position = $1",
            outbox.state_table()
        )))
        .bind(head)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(outbox.feed_channel())
            .bind(head.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += assigned;
        // A full block may have left events behind: the horizon moves only
        // after a pass that took everything it saw.
        if assigned < BLOCK {
            *horizon = Horizon(next_horizon);
            return Ok((total, head));
        }
    }
}

/// Runs the sequencer until `stop`: woken by producers' commits, with a
/// slow poll as a safety net; prunes events older than `retention` (by
/// `clock`) now and then. Every step is a transaction of its own, so
/// stopping it anywhere loses nothing.
pub async fn run(
    pool: PgPool,
    outbox: Outbox,
    retention: Duration,
    clock: Clock,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    // Once per run: the SDK keeps an observable gauge's callback for good.
    let backlog = Backlog::new(&outbox);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            result = session(&pool, &outbox, retention, &clock, &backlog) => if let Err(error) = result {
                tracing::warn!(%error, producer = outbox.producer, "sequencer failed; retrying");
            },
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
        }
    }
}

async fn session(
    pool: &PgPool,
    outbox: &Outbox,
    retention: Duration,
    clock: &Clock,
    backlog: &Backlog,
) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&outbox.outbox_channel()).await?;
    let mut last_prune = tokio::time::Instant::now();
    let mut last_count = tokio::time::Instant::now();
    let mut horizon = Horizon::default();
    loop {
        sequence_once(pool, outbox, &mut horizon).await?;
        if last_prune.elapsed() >= Duration::from_secs(60) {
            prune(pool, outbox, retention, clock.now()).await?;
            last_prune = tokio::time::Instant::now();
        }
        if last_count.elapsed() >= BACKLOG_EVERY {
            backlog.count(pool, outbox).await?;
            last_count = tokio::time::Instant::now();
        }
        // Many commits may arrive at once; one pass positions them all.
        if let Ok(notification) = tokio::time::timeout(POLL, listener.recv()).await {
            notification?;
        }
    }
}

/// How often the outbox backlog is counted.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// The events written and committed but not yet given a position, as the
/// gauge `rapport.outbox.backlog`: it grows when the sequencer falls
/// behind the writes.
struct Backlog {
    events: Arc<AtomicI64>,
    _gauge: ObservableGauge<i64>,
}

impl Backlog {
    fn new(outbox: &Outbox) -> Self {
        let events = Arc::new(AtomicI64::new(0));
        let observed = events.clone();
        let producer = [KeyValue::new("producer", outbox.producer)];
        let gauge = opentelemetry::global::meter("rapport-events")
            .i64_observable_gauge("rapport.outbox.backlog")
            .with_unit("{event}")
            .with_description("Events committed to the outbox and not yet given a feed position")
            .with_callback(move |observer| {
                observer.observe(observed.load(Ordering::Relaxed), &producer);
            })
            .build();
        Self {
            events,
            _gauge: gauge,
        }
    }

    /// Counts the unpositioned events (a partial index holds only them).
    async fn count(&self, pool: &PgPool, outbox: &Outbox) -> sqlx::Result<()> {
        let mut tx = rapport_core::db::begin_with_settings(pool, &[("app.feed", "on")]).await?;
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE position IS NULL",
            outbox.table()
        )))
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        self.events.store(count, Ordering::Relaxed);
        Ok(())
    }
}

/// Deletes positioned events older than `retention` at `now` and records
/// the newest position pruned, so that a subscription from before it is
/// refused rather than silently missing events.
pub async fn prune(
    pool: &PgPool,
    outbox: &Outbox,
    retention: Duration,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut tx = rapport_core::db::begin_with_settings(pool, &[("app.feed", "on")]).await?;
    let (count, newest): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM {} WHERE position IS NOT NULL AND occur_time < $1 RETURNING position) \
         SELECT count(*), max(position) FROM gone",
        outbox.table()
    )))
    .bind(cutoff)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(newest) = newest {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET pruned_through = greatest(pruned_through, $1)",
            outbox.state_table()
        )))
        .bind(newest)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if count > 0 {
        tracing::info!(
            producer = outbox.producer,
            count,
            "pruned feed events past retention"
        );
    }
    Ok(u64::try_from(count).unwrap_or_default())
}
