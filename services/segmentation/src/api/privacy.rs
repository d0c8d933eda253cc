//! A person's right of access: what segmentation holds about a contact
//! (its memberships and their history), from one snapshot.

use futures::FutureExt as _;
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use super::SegmentationApi;
use crate::store::membership;

impl SegmentationApi {
    pub(super) async fn export_contact(
        &self,
        ctx: TenantContext,
        req: ExportContactSegmentsRequest,
    ) -> ApiResult<ApiStream<ExportContactSegmentsResponse>> {
        let mut violations = Violations::default();
        let contact = violations.parse_id("contact_id", &req.contact_id);
        violations.check()?;
        let snapshot = self.db.begin_tenant_snapshot(ctx.tenant_id).await?;
        Ok(chunked(
            snapshot,
            ContactExport {
                tenant: ctx.tenant_id,
                contact,
            },
        ))
    }
}

struct ContactExport {
    tenant: Uuid,
    contact: Uuid,
}

impl ChunkSource for ContactExport {
    /// There is one chunk: a person's memberships and history are small.
    type Cursor = ();
    type Message = ExportContactSegmentsResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _after: Option<&'a ()>,
    ) -> NextChunk<'a, Self::Message, Self::Cursor> {
        async move {
            let memberships = membership::of_contact(tx, self.tenant, self.contact, None, i64::MAX)
                .await?
                .into_iter()
                .map(|(_, membership)| membership)
                .collect();
            let history = membership::history_of_contact(tx, self.contact).await?;
            Ok(Some(Chunk {
                message: ExportContactSegmentsResponse {
                    memberships,
                    history,
                },
                next: None,
            }))
        }
        .boxed()
    }
}
