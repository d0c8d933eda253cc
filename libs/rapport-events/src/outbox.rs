//! Writing events in the transaction of the change that caused them.

use chrono::{DateTime, Utc};
use rapport_proto::EventPayload;
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

/// An event to write: its payload is the producer's own message, whose
/// type the contract declares (`EventPayload`).
pub struct OutboxEvent {
    pub kind: &'static str,
    pub aggregate_id: Uuid,
    pub payload: prost_types::Any,
}

impl OutboxEvent {
    pub fn new<M: EventPayload>(aggregate_id: Uuid, payload: &M) -> Self {
        let payload =
            prost_types::Any::from_msg(payload).expect("encoding a message into a Vec cannot fail");
        Self {
            kind: M::EVENT_TYPE,
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
        // sequencer, delivered at commit and only then. Each event keeps the
        // trace of the call that caused it.
        sqlx::query(AssertSqlSafe(format!(
            "WITH written AS ( \
                 INSERT INTO {} (tenant_id, event_id, type, aggregate_id, occur_time, payload, traceparent) \
                 SELECT $1, e.id, e.kind, e.aggregate, $5, e.payload, $8 \
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
        .bind(rapport_core::telemetry::current_traceparent())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Empties the payloads of the events about `aggregate_ids`, so that no
    /// personal data of an erased resource stays in the retained feed.
    /// Events that carry ids only stay whole: a consumer that has yet to
    /// apply them needs the ids to forget the person itself.
    pub async fn redact(&self, tx: &mut PgConnection, aggregate_ids: &[Uuid]) -> sqlx::Result<u64> {
        let empty = prost::Message::encode_to_vec(&prost_types::Any::default());
        let result = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET payload = $2 WHERE aggregate_id = ANY($1) AND type <> ALL($3)",
            self.table()
        )))
        .bind(aggregate_ids)
        .bind(empty)
        .bind(rapport_proto::IDS_ONLY_EVENT_TYPES)
        .execute(tx)
        .await?;
        Ok(result.rows_affected())
    }
}

/// The one definition of an outbox: what every producer's migrations must
/// leave in its schema (`schema`, used by the service role `role`). A test
/// in each producer checks its migrated schema against this.
pub fn schema_sql(schema: &str, role: &str) -> String {
    format!(
        r#"
CREATE TABLE {schema}.outbox (
    tenant_id    uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    position     bigint,
    type         text        NOT NULL,
    aggregate_id uuid        NOT NULL,
    occur_time   timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    traceparent  text,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE UNIQUE INDEX outbox_position_key ON {schema}.outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unpositioned_txid_idx ON {schema}.outbox (txid) WHERE position IS NULL;
CREATE INDEX outbox_aggregate_idx ON {schema}.outbox (tenant_id, aggregate_id);

CREATE TABLE {schema}.outbox_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position  bigint  NOT NULL,
    pruned_through bigint  NOT NULL
);
INSERT INTO {schema}.outbox_state VALUES (true, 0, 0);

ALTER TABLE {schema}.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON {schema}.outbox
    USING (current_setting('app.feed', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (current_setting('app.feed', true) = 'on'
                OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE {schema}.outbox_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.outbox_state FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON {schema}.outbox_state USING (current_setting('app.feed', true) = 'on');

GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.outbox TO {role};
GRANT SELECT, UPDATE ON {schema}.outbox_state TO {role};
"#
    )
}
