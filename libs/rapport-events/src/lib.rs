//! Events between services (DESIGN.md, "Data"): a producer writes its
//! events to an outbox table in the same transaction as the change; a
//! sequencer gives committed events their feed positions; the producer
//! serves them as a resumable change feed (`rapport.events.v1`); consumers
//! apply them with their cursor in the same transaction, so delivery is at
//! least once and the effect exactly once.
//!
//! Why positions are given after commit: transactions commit out of order,
//! so a position taken inside a transaction could become visible after a
//! reader had already moved past it. Here only committed events get
//! positions, in contiguous blocks by one sequencer at a time, so a reader
//! following `position > cursor` never skips one.
//!
//! A producer's schema holds, for an outbox named `<schema>.outbox`:
//! ```sql
//! CREATE TABLE <schema>.outbox (
//!     tenant_id uuid NOT NULL, event_id uuid NOT NULL, position bigint,
//!     type text NOT NULL, aggregate_id uuid NOT NULL,
//!     occur_time timestamptz NOT NULL, payload bytea NOT NULL,
//!     txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
//!     PRIMARY KEY (tenant_id, event_id));
//! CREATE UNIQUE INDEX ON <schema>.outbox (position) WHERE position IS NOT NULL;
//! CREATE INDEX ON <schema>.outbox (txid) WHERE position IS NULL;
//! CREATE TABLE <schema>.outbox_state (
//!     singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
//!     last_position bigint NOT NULL, pruned_through bigint NOT NULL);
//! INSERT INTO <schema>.outbox_state VALUES (true, 0, 0);
//! ```
//! with row-level security that shows a tenant its own rows, and every row
//! when `app.feed` is `on` (the sequencer and the feed).

pub mod consumer;
pub mod feed;
pub mod outbox;
pub mod sequencer;

pub use outbox::{Outbox, OutboxEvent};
