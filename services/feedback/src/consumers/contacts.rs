//! Follows the contacts change feed: an erased contact's personal data
//! leaves its responses (scores stay, anonymous, for the aggregate KPIs),
//! and a merged contact's responses move to the survivor. The SQL lives in
//! `store::contact_changes`.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_core::Clock;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{Handler, Subscription};
use rapport_proto::EventPayload as _;
use rapport_proto::contacts::v1::{ContactErased, ContactMerged};
use rapport_proto::events::v1::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::contact_changes;

/// What feedback follows of the contacts feed, and where its cursor is.
pub const SUBSCRIPTION: Subscription = Subscription {
    consumer: "feedback.contacts",
    producer: "contacts",
    cursor_table: "feedback.feed_cursors",
    types: &[ContactErased::EVENT_TYPE, ContactMerged::EVENT_TYPE],
};

pub struct ContactChanges {
    pub clock: Clock,
}

impl Handler for ContactChanges {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let tenant = Uuid::parse_str(&event.tenant_id)?;
            let payload = event.payload.clone().unwrap_or_default();
            match event.r#type.as_str() {
                ContactErased::EVENT_TYPE => {
                    let erased: ContactErased = payload.to_msg()?;
                    let when = event
                        .occur_time
                        .as_ref()
                        .and_then(to_datetime)
                        .unwrap_or_else(|| self.clock.now());
                    contact_changes::erase(tx, tenant, Uuid::parse_str(&erased.contact_id)?, when)
                        .await
                }
                ContactMerged::EVENT_TYPE => {
                    let merged: ContactMerged = payload.to_msg()?;
                    contact_changes::merge(
                        tx,
                        Uuid::parse_str(&merged.duplicate_id)?,
                        Uuid::parse_str(&merged.survivor_id)?,
                    )
                    .await
                }
                _ => Ok(()),
            }
        }
        .boxed()
    }
}
