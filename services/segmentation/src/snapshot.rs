//! The snapshot of the segmentation feed a new consumer starts from:
//! every tenant's current memberships, one item per contact.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_events::snapshot::{SnapshotKey, SnapshotSource, item, kind};
use rapport_proto::events::v1::SnapshotItem;
use rapport_proto::segmentation::v1::ContactMemberships;
use sqlx::PgConnection;

use crate::store::membership;

pub struct SegmentationSnapshot;

impl SnapshotSource for SegmentationSnapshot {
    fn kinds(&self) -> Vec<String> {
        vec![kind::<ContactMemberships>()]
    }

    fn page<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        requested: &'a str,
        after: Option<SnapshotKey>,
        limit: i64,
    ) -> BoxFuture<'a, sqlx::Result<Vec<(SnapshotKey, SnapshotItem)>>> {
        async move {
            if requested != kind::<ContactMemberships>() {
                return Ok(Vec::new());
            }
            let page = membership::snapshot_page(tx, after, limit).await?;
            Ok(page
                .into_iter()
                .map(|((tenant, contact), memberships)| {
                    let payload = ContactMemberships {
                        contact_id: contact.to_string(),
                        memberships,
                    };
                    ((tenant, contact), item(tenant, &payload))
                })
                .collect())
        }
        .boxed()
    }
}
