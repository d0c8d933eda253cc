//! A person's rights: the export of everything stored about them, and
//! erasure.

use futures::FutureExt as _;
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::convert::to_timestamp;
use rapport_core::db::{begin_tenant, begin_tenant_read, finish_read};
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::contacts::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ContactsApi, found};
use crate::store::contact as store;
use crate::store::history::{self, History};
use crate::store::privacy;
use crate::store::timeline::{self, TimelineCursor};

/// Timeline events per ExportContact message.
const EXPORT_CHUNK: i64 = 500;

impl ContactsApi {
    pub(super) async fn export(
        &self,
        ctx: TenantContext,
        req: ExportContactRequest,
    ) -> ApiResult<ApiStream<ExportContactResponse>> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        // The profile is read up front so a bad id fails the call itself.
        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let contact = found(store::lookup(&mut tx, id, false).await?, id)?;
        let lifecycle =
            history::list(&mut tx, History::Lifecycle, id, None, i64::MAX, false).await?;
        let consent = history::list(&mut tx, History::Consent, id, None, i64::MAX, false).await?;
        finish_read(tx);
        let profile = ExportContactResponse {
            part: Some(export_contact_response::Part::Profile(ContactProfile {
                contact: Some(contact.to_proto()),
                lifecycle_history: lifecycle
                    .iter()
                    .map(|(_, e)| e.to_lifecycle_change())
                    .collect(),
                consent_history: consent.iter().map(|(_, e)| e.to_consent_change()).collect(),
            })),
        };
        let timeline = chunked(self.pool.clone(), ctx.tenant_id, Timeline { contact: id });
        Ok(Box::pin(futures::StreamExt::chain(
            futures::stream::once(async { Ok(profile) }),
            timeline,
        )))
    }

    pub(super) async fn erase(
        &self,
        ctx: &TenantContext,
        req: EraseContactRequest,
    ) -> ApiResult<EraseContactResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        found(store::lookup(&mut tx, id, true).await?, id)?;
        let erased = privacy::erase(&mut tx, ctx.tenant_id, id, now).await?;
        tx.commit().await?;
        tracing::info!(contact_id = %id, "contact erased");
        Ok(EraseContactResponse {
            id: id.to_string(),
            erased_event_count: erased.events,
            erased_history_count: erased.history,
            erase_time: Some(to_timestamp(now)),
        })
    }
}

/// A contact's timeline, oldest first, in chunks.
struct Timeline {
    contact: Uuid,
}

impl ChunkSource for Timeline {
    type Cursor = TimelineCursor;
    type Message = ExportContactResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a TimelineCursor>,
    ) -> NextChunk<'a, ExportContactResponse, TimelineCursor> {
        async move {
            let events =
                timeline::export_events(tx, self.contact, after.copied(), EXPORT_CHUNK).await?;
            let Some(&(last, _)) = events.last() else {
                return Ok(None);
            };
            let next = (events.len() as i64 == EXPORT_CHUNK).then_some(last);
            let message = ExportContactResponse {
                part: Some(export_contact_response::Part::Events(EventChunk {
                    events: events.into_iter().map(|(_, e)| e).collect(),
                })),
            };
            Ok(Some(Chunk { message, next }))
        }
        .boxed()
    }
}
