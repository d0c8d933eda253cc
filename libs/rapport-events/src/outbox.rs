//! Writing events in the transaction of the change that caused them.

use chrono::{DateTime, Utc};
use prost::Name;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

/// One producer's outbox.
#[derive(Debug, Clone, Copy)]
pub struct Outbox {
    /// The producing service, such as `contacts`.
    pub producer: &'static str,
    /// Its schema, which holds `outbox` and `outbox_state`.
    pub schema: &'static str,
}

/// An event to write: its payload is the producer's own message.
pub struct OutboxEvent {
    pub kind: &'static str,
    pub aggregate_id: Uuid,
    pub payload: prost_types::Any,
}

impl OutboxEvent {
    pub fn new<M: Name>(kind: &'static str, aggregate_id: Uuid, payload: &M) -> Self {
        let payload =
            prost_types::Any::from_msg(payload).expect("encoding a message into a Vec cannot fail");
        Self {
            kind,
            aggregate_id,
            payload,
        }
    }
}

impl Outbox {
    pub(crate) fn table(&self) -> String {
        format!("{}.outbox", self.schema)
    }

    pub(crate) fn state_table(&self) -> String {
        format!("{}.outbox_state", self.schema)
    }

    /// The channel that wakes the sequencer when events commit.
    pub(crate) fn outbox_channel(&self) -> String {
        format!("{}_outbox", self.schema)
    }

    /// The channel that wakes feed readers when positions are given.
    pub(crate) fn feed_channel(&self) -> String {
        format!("{}_feed", self.schema)
    }

    /// Writes `events` of `tenant` inside the caller's transaction: they
    /// exist if and only if the transaction commits.
    pub async fn write(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        events: Vec<OutboxEvent>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut aggregates = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            ids.push(Uuid::now_v7());
            kinds.push(event.kind);
            aggregates.push(event.aggregate_id);
            payloads.push(prost::Message::encode_to_vec(&event.payload));
        }
        // One statement: the rows, and the notification that wakes the
        // sequencer, delivered at commit and only then.
        sqlx::query(AssertSqlSafe(format!(
            "WITH written AS ( \
                 INSERT INTO {} (tenant_id, event_id, type, aggregate_id, occur_time, payload) \
                 SELECT $1, e.id, e.kind, e.aggregate, $5, e.payload \
                 FROM unnest($2::uuid[], $3::text[], $4::uuid[], $6::bytea[]) AS e(id, kind, aggregate, payload)) \
             SELECT pg_notify($7, '')",
            self.table()
        )))
        .bind(tenant)
        .bind(ids)
        .bind(kinds)
        .bind(aggregates)
        .bind(now)
        .bind(payloads)
        .bind(self.outbox_channel())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Empties the payloads of the events about `aggregate_ids`, so that no
    /// personal data of an erased resource stays in the retained feed.
    pub async fn redact(&self, tx: &mut PgConnection, aggregate_ids: &[Uuid]) -> sqlx::Result<u64> {
        let empty = prost::Message::encode_to_vec(&prost_types::Any::default());
        let result = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET payload = $2 WHERE aggregate_id = ANY($1)",
            self.table()
        )))
        .bind(aggregate_ids)
        .bind(empty)
        .execute(tx)
        .await?;
        Ok(result.rows_affected())
    }
}
