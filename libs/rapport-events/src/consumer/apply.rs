//! Applying a batch: set-based in the transaction that moves the cursor;
//! when that fails, event by event in savepoints, setting aside as a dead
//! letter the one that keeps failing; and replaying dead letters after a
//! fix.

use prost::Message as _;
use rapport_core::db::set_local;
use rapport_core::error::is_connection_loss;
use rapport_proto::events::v1::EventEnvelope;
use sqlx::{AssertSqlSafe, PgConnection};
use tracing::Instrument as _;

use super::{ATTEMPTS, Consumer, Handler, MAX_LINKS, by_tenant};

/// What applying a batch did: the cursor it left, and how many of its
/// events it applied (not those already applied, nor dead letters).
struct Applied {
    cursor: i64,
    events: u64,
}

impl Applied {
    fn nothing(cursor: i64) -> Self {
        Self { cursor, events: 0 }
    }
}

impl<H: Handler> Consumer<H> {
    /// Applies `events` (in feed order) once, in one transaction that also
    /// moves the cursor to `through` (at or past the last event), skipping
    /// any at or before the cursor (a redelivery). When the batch fails,
    /// it is applied again event by event, and an event that keeps failing
    /// is set aside as a dead letter. Returns the new cursor; the events
    /// applied are counted (`rapport.events.consumer.applied`).
    pub(super) async fn apply(
        &self,
        events: &[EventEnvelope],
        through: i64,
    ) -> anyhow::Result<i64> {
        let span = tracing::info_span!(
            "process",
            otel.name = %format!("process {}", self.subscription.producer),
            otel.kind = "consumer",
            messaging.system = "rapport",
            messaging.operation.type = "process",
            messaging.destination.name = self.subscription.producer,
            messaging.consumer.group.name = self.subscription.consumer,
            messaging.batch.message_count = events.len(),
        );
        // One span per batch, linked to the calls that caused its events:
        // each of those traces shows the work its change set off, and a
        // busy consumer's own trace stays one span per batch.
        for event in events.iter().take(MAX_LINKS) {
            if !event.traceparent.is_empty() {
                rapport_core::telemetry::link_traceparent(&span, &event.traceparent);
            }
        }
        let applied = self.apply_traced(events, through).instrument(span).await?;
        self.applied.add(applied.events, &self.attributes);
        Ok(applied.cursor)
    }

    async fn apply_traced(
        &self,
        events: &[EventEnvelope],
        through: i64,
    ) -> anyhow::Result<Applied> {
        let through = events.iter().map(|e| e.position).fold(through, i64::max);
        match self.apply_batch(events, through).await {
            Ok(applied) => Ok(applied),
            Err(error) if lost_connection(&error) => Err(error),
            Err(error) => {
                tracing::warn!(
                    consumer = self.subscription.consumer,
                    error = format!("{error:#}"),
                    "a batch failed; applying its events one by one"
                );
                self.apply_one_by_one(events, through).await
            }
        }
    }

    async fn apply_batch(&self, events: &[EventEnvelope], through: i64) -> anyhow::Result<Applied> {
        let mut tx = rapport_core::db::begin(&self.pool).await?;
        let cursor = self.lock_cursor(&mut tx).await?;
        if through <= cursor {
            return Ok(Applied::nothing(cursor));
        }
        let fresh: Vec<EventEnvelope> = events
            .iter()
            .filter(|event| event.position > cursor)
            .cloned()
            .collect();
        let count = fresh.len() as u64;
        for (tenant, run) in by_tenant(fresh, |event| event.tenant_id.clone()) {
            set_local(&mut tx, &[("app.tenant_id", &tenant)]).await?;
            self.handler.apply(&mut tx, &run).await?;
        }
        self.move_cursor(&mut tx, through).await?;
        tx.commit().await?;
        Ok(Applied {
            cursor: through,
            events: count,
        })
    }

    async fn apply_one_by_one(
        &self,
        events: &[EventEnvelope],
        through: i64,
    ) -> anyhow::Result<Applied> {
        let mut tx = rapport_core::db::begin(&self.pool).await?;
        let cursor = self.lock_cursor(&mut tx).await?;
        if through <= cursor {
            return Ok(Applied::nothing(cursor));
        }
        let mut count = 0;
        for event in events.iter().filter(|event| event.position > cursor) {
            let mut last_error = None;
            for _ in 0..ATTEMPTS {
                match self.apply_in_savepoint(&mut tx, event).await {
                    Ok(()) => {
                        last_error = None;
                        break;
                    }
                    Err(error) if lost_connection(&error) => return Err(error),
                    Err(error) => last_error = Some(error),
                }
            }
            match last_error {
                Some(error) => self.dead_letter(&mut tx, event, &error).await?,
                None => count += 1,
            }
        }
        self.move_cursor(&mut tx, through).await?;
        tx.commit().await?;
        Ok(Applied {
            cursor: through,
            events: count,
        })
    }

    async fn apply_in_savepoint(
        &self,
        tx: &mut PgConnection,
        event: &EventEnvelope,
    ) -> anyhow::Result<()> {
        sqlx::query("SAVEPOINT one_event").execute(&mut *tx).await?;
        let applied = async {
            set_local(tx, &[("app.tenant_id", &event.tenant_id)]).await?;
            self.handler.apply(tx, std::slice::from_ref(event)).await
        }
        .await;
        let end = if applied.is_ok() {
            "RELEASE SAVEPOINT one_event"
        } else {
            "ROLLBACK TO SAVEPOINT one_event"
        };
        sqlx::query(end).execute(&mut *tx).await?;
        applied
    }

    async fn dead_letter(
        &self,
        tx: &mut PgConnection,
        event: &EventEnvelope,
        error: &anyhow::Error,
    ) -> anyhow::Result<()> {
        tracing::error!(
            consumer = self.subscription.consumer,
            position = event.position,
            event_id = %event.event_id,
            r#type = %event.r#type,
            error = format!("{error:#}"),
            "could not apply an event; set aside as a dead letter"
        );
        self.dead_lettered.add(1, &self.attributes);
        // Dead letters are not tenant data: no tenant applies to them.
        set_local(tx, &[("app.tenant_id", "")]).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (consumer, position, envelope, error, attempts, dead_time) \
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (consumer, position) DO NOTHING",
            self.subscription.dead_letters()
        )))
        .bind(self.subscription.consumer)
        .bind(event.position)
        .bind(event.encode_to_vec())
        .bind(format!("{error:#}"))
        .bind(ATTEMPTS as i32)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn lock_cursor(&self, tx: &mut PgConnection) -> sqlx::Result<i64> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE consumer = $1 FOR UPDATE",
            self.subscription.cursors()
        )))
        .bind(self.subscription.consumer)
        .fetch_one(tx)
        .await
    }

    async fn move_cursor(&self, tx: &mut PgConnection, through: i64) -> anyhow::Result<()> {
        // The cursor row is not tenant data: no event's tenant applies to it.
        set_local(tx, &[("app.tenant_id", "")]).await?;
        let moved = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET position = $2 WHERE consumer = $1",
            self.subscription.cursors()
        )))
        .bind(self.subscription.consumer)
        .bind(through)
        .execute(tx)
        .await?
        .rows_affected();
        anyhow::ensure!(
            moved == 1,
            "the cursor of {} did not move; nothing applied",
            self.subscription.consumer
        );
        Ok(())
    }

    /// Applies the dead letters again, oldest first: those that apply are
    /// removed, the others keep their new error. Returns (replayed, failed).
    pub async fn replay_dead_letters(&self) -> anyhow::Result<(u32, u32)> {
        let letters: Vec<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT position, envelope FROM {} WHERE consumer = $1 ORDER BY position",
            self.subscription.dead_letters()
        )))
        .bind(self.subscription.consumer)
        .fetch_all(&self.pool)
        .await?;
        let (mut replayed, mut failed) = (0, 0);
        for (position, envelope) in letters {
            let event = EventEnvelope::decode(envelope.as_slice())?;
            let mut tx = rapport_core::db::begin(&self.pool).await?;
            let applied = self.apply_in_savepoint(&mut tx, &event).await;
            set_local(&mut tx, &[("app.tenant_id", "")]).await?;
            let table = self.subscription.dead_letters();
            match &applied {
                Ok(()) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE consumer = $1 AND position = $2"
                    )))
                    .bind(self.subscription.consumer)
                    .bind(position)
                    .execute(&mut *tx)
                    .await?;
                }
                Err(error) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {table} SET error = $3, attempts = attempts + 1, dead_time = now() \
                         WHERE consumer = $1 AND position = $2"
                    )))
                    .bind(self.subscription.consumer)
                    .bind(position)
                    .bind(format!("{error:#}"))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            match applied {
                Ok(()) => replayed += 1,
                Err(_) => failed += 1,
            }
        }
        Ok((replayed, failed))
    }
}

/// Whether `error` is the database connection going away: the batch is
/// retried on a new session rather than its events set aside.
fn lost_connection(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .is_some_and(is_connection_loss)
}
