//! Follows the contacts change feed: an erased contact's personal data
//! leaves its responses (scores stay, anonymous, for the aggregate KPIs),
//! a merged contact's responses move to the survivor, and the live
//! contacts are noted so that invitations go to contacts only. The SQL
//! lives in `store::contact_changes` and `store::contacts`.

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_core::Clock;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{
    Handler, Subscription, forget_projection, payload, snapshot_payload,
};
use rapport_events::snapshot::kind;
use rapport_proto::EventPayload as _;
use rapport_proto::contacts::v1::{
    ContactCreated, ContactDeleted, ContactErased, ContactMerged, ContactSnapshot,
};
use rapport_proto::events::v1::{EventEnvelope, SnapshotItem};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::{contact_changes, contacts, invitation};

/// What feedback follows of the contacts feed, and where its cursor is.
pub const SUBSCRIPTION: Subscription = Subscription {
    // Named anew when feedback began to note the live contacts, so that
    // it started without a cursor and loaded them from the snapshot.
    consumer: "feedback.contacts_v2",
    producer: "contacts",
    schema: "feedback",
    types: &[
        ContactCreated::EVENT_TYPE,
        ContactDeleted::EVENT_TYPE,
        ContactErased::EVENT_TYPE,
        ContactMerged::EVENT_TYPE,
    ],
};

pub struct ContactChanges {
    pub clock: Clock,
}

/// A change to apply, in feed order.
enum Change {
    Create(Uuid),
    Delete(Uuid),
    Erase(Vec<Uuid>, DateTime<Utc>),
    Merge { duplicate: Uuid, survivor: Uuid },
}

impl ContactChanges {
    /// Applies `changes` of `tenant` in order, erasures that follow one
    /// another together. Every contact the batch removes is locked first,
    /// all at once in id order as CreateInvitations locks them, so the two
    /// never wait on each other in a cycle.
    async fn apply_changes(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        changes: Vec<Change>,
    ) -> anyhow::Result<()> {
        let removed: Vec<Uuid> = changes.iter().flat_map(Change::removes).collect();
        if !removed.is_empty() {
            invitation::lock_contacts(tx, tenant, &removed).await?;
        }
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let mut erased: Vec<Uuid> = Vec::new();
        let mut when = self.clock.now();
        for change in changes {
            match change {
                Change::Create(id) => created.push(id),
                Change::Delete(id) => deleted.push(id),
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
                    contact_changes::merge(tx, tenant, duplicate, survivor).await?;
                }
            }
        }
        if !erased.is_empty() {
            contact_changes::erase(tx, tenant, &erased, when).await?;
        }
        if !deleted.is_empty() {
            contact_changes::delete(tx, tenant, &deleted).await?;
        }
        // Ids are never reused: a contact created and removed in the same
        // batch stays gone, whichever is written first.
        if !created.is_empty() {
            contacts::add(tx, tenant, &created).await?;
        }
        Ok(())
    }
}

impl Change {
    /// The contacts this change takes away.
    fn removes(&self) -> Vec<Uuid> {
        match self {
            Change::Create(_) => Vec::new(),
            Change::Delete(id) => vec![*id],
            Change::Erase(ids, _) => ids.clone(),
            Change::Merge {
                duplicate,
                survivor,
            } => vec![*duplicate, *survivor],
        }
    }
}

/// The id of the contact a payload describes.
fn contact_id(contact: Option<&rapport_proto::contacts::v1::Contact>) -> anyhow::Result<Uuid> {
    let contact = contact.ok_or_else(|| anyhow::anyhow!("the payload holds no contact"))?;
    Ok(Uuid::parse_str(&contact.id)?)
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
                if let Some(created) = payload::<ContactCreated>(event)? {
                    changes.push(Change::Create(contact_id(created.contact.as_ref())?));
                } else if let Some(deleted) = payload::<ContactDeleted>(event)? {
                    changes.push(Change::Delete(Uuid::parse_str(&deleted.contact_id)?));
                } else if let Some(erased) = payload::<ContactErased>(event)? {
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

    /// The live contacts, and the erasures and merges that happened before
    /// this consumer started.
    fn snapshot_kinds(&self) -> Vec<String> {
        vec![
            kind::<ContactSnapshot>(),
            kind::<ContactErased>(),
            kind::<ContactMerged>(),
        ]
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
                if let Some(contact) = snapshot_payload::<ContactSnapshot>(item)? {
                    changes.push(Change::Create(contact_id(contact.contact.as_ref())?));
                } else if let Some(erased) = snapshot_payload::<ContactErased>(item)? {
                    changes.push(Change::Erase(erased_ids(&erased)?, now));
                } else if let Some(merged) = snapshot_payload::<ContactMerged>(item)? {
                    changes.push(merge(&merged)?);
                }
            }
            self.apply_changes(tx, tenant, changes).await
        }
        .boxed()
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            forget_projection(tx, &["feedback.contacts"]).await?;
            Ok(())
        }
        .boxed()
    }
}
