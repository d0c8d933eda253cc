//! The snapshot of the contacts feed a new consumer starts from, kind by
//! kind (a kind is its payload's message): every tenant's contacts with
//! their histories (`ContactSnapshot`), their timelines (`Event`), the ids
//! merged into survivors (`ContactMerged`), and the ids erased for good
//! (`ContactErased`).

use std::collections::HashMap;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_events::snapshot::{SnapshotKey, SnapshotSource, item, kind};
use rapport_proto::contacts::v1 as pb;
use rapport_proto::events::v1::SnapshotItem;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::history::{self, History};
use crate::store::{contact, privacy, timeline};

pub struct ContactsSnapshot;

impl SnapshotSource for ContactsSnapshot {
    fn kinds(&self) -> Vec<String> {
        vec![
            kind::<pb::ContactSnapshot>(),
            kind::<pb::Event>(),
            kind::<pb::ContactMerged>(),
            kind::<pb::ContactErased>(),
        ]
    }

    fn page<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        requested: &'a str,
        after: Option<SnapshotKey>,
        limit: i64,
    ) -> BoxFuture<'a, sqlx::Result<Vec<(SnapshotKey, SnapshotItem)>>> {
        async move {
            let (contact, event, merge, erasure) = (
                kind::<pb::ContactSnapshot>(),
                kind::<pb::Event>(),
                kind::<pb::ContactMerged>(),
                kind::<pb::ContactErased>(),
            );
            Ok(match requested {
                k if k == contact => contacts(tx, after, limit).await?,
                k if k == event => timeline::snapshot_page(tx, after, limit)
                    .await?
                    .into_iter()
                    .map(|(tenant, event)| {
                        let id = Uuid::parse_str(&event.id).unwrap_or_default();
                        ((tenant, id), item(tenant, &event))
                    })
                    .collect(),
                k if k == merge => privacy::merges_snapshot_page(tx, after, limit)
                    .await?
                    .into_iter()
                    .map(|(tenant, merged, survivor)| {
                        let merge = pb::ContactMerged {
                            survivor_id: survivor.to_string(),
                            duplicate_id: merged.to_string(),
                        };
                        ((tenant, merged), item(tenant, &merge))
                    })
                    .collect(),
                k if k == erasure => privacy::erasures_snapshot_page(tx, after, limit)
                    .await?
                    .into_iter()
                    .map(|(tenant, erased)| {
                        let erasure = pb::ContactErased {
                            contact_id: erased.to_string(),
                            merged_ids: Vec::new(),
                        };
                        ((tenant, erased), item(tenant, &erasure))
                    })
                    .collect(),
                _ => Vec::new(),
            })
        }
        .boxed()
    }
}

/// A page of contacts, each with its histories.
async fn contacts(
    tx: &mut PgConnection,
    after: Option<SnapshotKey>,
    limit: i64,
) -> sqlx::Result<Vec<(SnapshotKey, SnapshotItem)>> {
    let page = contact::snapshot_page(tx, after, limit).await?;
    let ids: Vec<Uuid> = page.iter().map(|(_, c)| c.id).collect();
    let mut lifecycle: HashMap<Uuid, Vec<pb::LifecycleChange>> = HashMap::new();
    for (id, entry) in history::of_contacts(tx, History::Lifecycle, &ids).await? {
        lifecycle
            .entry(id)
            .or_default()
            .push(entry.to_lifecycle_change());
    }
    let mut consent: HashMap<Uuid, Vec<pb::ConsentChange>> = HashMap::new();
    for (id, entry) in history::of_contacts(tx, History::Consent, &ids).await? {
        consent
            .entry(id)
            .or_default()
            .push(entry.to_consent_change());
    }
    Ok(page
        .into_iter()
        .map(|(tenant, stored)| {
            let snapshot = pb::ContactSnapshot {
                contact: Some(stored.to_proto()),
                lifecycle_history: lifecycle.remove(&stored.id).unwrap_or_default(),
                consent_history: consent.remove(&stored.id).unwrap_or_default(),
            };
            ((tenant, stored.id), item(tenant, &snapshot))
        })
        .collect())
}
