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
//! A producer's schema holds an outbox (`<schema>.outbox` and
//! `<schema>.outbox_state`) as [`outbox::schema_sql`] defines it, with
//! row-level security that shows a tenant its own rows, and every row when
//! `app.feed` is `on` (the sequencer and the feed); each producer's tests
//! check its migrations against that one definition.

pub mod consumer;
pub mod feed;
pub mod following;
pub mod outbox;
pub mod producer;
pub mod sequencer;
pub mod snapshot;

pub use following::{ConsumerConfig, Following};
pub use outbox::{Outbox, OutboxEvent};
pub use producer::{FeedConfig, produce};
