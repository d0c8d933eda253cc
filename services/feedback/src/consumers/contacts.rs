//! Follows the contacts change feed: an erased contact's personal data
//! leaves its responses (scores stay, anonymous, for the aggregate KPIs),
//! and a merged contact's responses move to the survivor. The SQL lives in
//! `store::contact_changes`.

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_core::Clock;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{Handler, Subscription, payload, snapshot_payload};
use rapport_events::snapshot::kind;
use rapport_proto::EventPayload as _;
use rapport_proto::contacts::v1::{ContactErased, ContactMerged};
use rapport_proto::events::v1::{EventEnvelope, SnapshotItem};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::contact_changes;

/// What feedback follows of the contacts feed, and where its cursor is.
pub const SUBSCRIPTION: Subscription = Subscription {
    consumer: "feedback.contacts",
    producer: "contacts",
    schema: "feedback",
    types: &[ContactErased::EVENT_TYPE, ContactMerged::EVENT_TYPE],
};

pub struct ContactChanges {
    pub clock: Clock,
}

/// A change to apply, in feed order.
enum Change {
    Erase(Vec<Uuid>, DateTime<Utc>),
    Merge { duplicate: Uuid, survivor: Uuid },
}

impl ContactChanges {
    /// Applies `changes` of `tenant` in order, erasures that follow one
    /// another together.
    async fn apply_changes(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        changes: Vec<Change>,
    ) -> anyhow::Result<()> {
        let mut erased: Vec<Uuid> = Vec::new();
        let mut when = self.clock.now();
        for change in changes {
            match change {
                Change::Erase(ids, at) => {
                    erased.extend(ids);
                    when = at;
                }
                Change::Merge {
                    duplicate,
                    survivor,
                } => {
                    if !erased.is_empty() {
                        contact_changes::erase(tx, tenant, &std::mem::take(&mut erased), when)
                            .await?;
                    }
                    contact_changes::merge(tx, duplicate, survivor).await?;
                }
            }
        }
        if !erased.is_empty() {
            contact_changes::erase(tx, tenant, &erased, when).await?;
        }
        Ok(())
    }
}

/// Every id an erasure names: the contact's and those merged into it.
fn erased_ids(erased: &ContactErased) -> anyhow::Result<Vec<Uuid>> {
    std::iter::once(&erased.contact_id)
        .chain(&erased.merged_ids)
        .map(|id| Ok(Uuid::parse_str(id)?))
        .collect()
}

fn merge(merged: &ContactMerged) -> anyhow::Result<Change> {
    Ok(Change::Merge {
        duplicate: Uuid::parse_str(&merged.duplicate_id)?,
        survivor: Uuid::parse_str(&merged.survivor_id)?,
    })
}

impl Handler for ContactChanges {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = events.first() else {
                return Ok(());
            };
            let tenant = Uuid::parse_str(&first.tenant_id)?;
            let mut changes = Vec::with_capacity(events.len());
            for event in events {
                if let Some(erased) = payload::<ContactErased>(event)? {
                    let at = event.occur_time.as_ref().and_then(to_datetime);
                    changes.push(Change::Erase(
                        erased_ids(&erased)?,
                        at.unwrap_or_else(|| self.clock.now()),
                    ));
                } else if let Some(merged) = payload::<ContactMerged>(event)? {
                    changes.push(merge(&merged)?);
                }
            }
            self.apply_changes(tx, tenant, changes).await
        }
        .boxed()
    }

    /// Erasures and merges that happened before this consumer started.
    fn snapshot_kinds(&self) -> Vec<String> {
        vec![kind::<ContactErased>(), kind::<ContactMerged>()]
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        items: &'a [SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = items.first() else {
                return Ok(());
            };
            let tenant = Uuid::parse_str(&first.tenant_id)?;
            let now = self.clock.now();
            let mut changes = Vec::with_capacity(items.len());
            for item in items {
                if let Some(erased) = snapshot_payload::<ContactErased>(item)? {
                    changes.push(Change::Erase(erased_ids(&erased)?, now));
                } else if let Some(merged) = snapshot_payload::<ContactMerged>(item)? {
                    changes.push(merge(&merged)?);
                }
            }
            self.apply_changes(tx, tenant, changes).await
        }
        .boxed()
    }
}
