//! A person's rights: the export of everything stored about them, and
//! erasure.

use futures::FutureExt as _;
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::convert::to_timestamp;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::contacts::v1::export_contact_response::Part;
use rapport_proto::contacts::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ContactsApi, found};
use crate::store::contact as store;
use crate::store::history::{self, History};
use crate::store::privacy;
use crate::store::timeline::{self, TimelineCursor};

/// Entries per ExportContact message.
const EXPORT_PAGE: i64 = 500;

impl ContactsApi {
    pub(super) async fn export(
        &self,
        ctx: TenantContext,
        req: ExportContactRequest,
    ) -> ApiResult<ApiStream<ExportContactResponse>> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        // One snapshot for the whole export; the profile is read before
        // the stream starts, so a bad id fails the call itself.
        let mut tx = self.db.begin_tenant_snapshot(ctx.tenant_id).await?;
        let contact = found(store::lookup(&mut tx, id, false).await?, id)?;
        let profile = ExportContactResponse {
            part: Some(Part::Profile(ContactProfile {
                contact: Some(contact.to_proto()),
                ..Default::default()
            })),
        };
        let rest = chunked(tx, Export { contact: id });
        Ok(Box::pin(futures::StreamExt::chain(
            futures::stream::once(async { Ok(profile) }),
            rest,
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

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
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

/// What follows the profile in an export, page by page, in this order.
#[derive(Debug, Clone, Copy)]
enum Section {
    Lifecycle(Option<Uuid>),
    Consent(Option<Uuid>),
    Merges(Option<Uuid>),
    Timeline(Option<TimelineCursor>),
}

/// A contact's histories, merges and timeline, oldest first.
struct Export {
    contact: Uuid,
}

/// Where the export goes after a `page` of a section: on in the same
/// section (`more`) when the page was full, else to the section `then`.
fn after_page<C: Copy, T>(
    page: &[(C, T)],
    more: fn(Option<C>) -> Section,
    then: Section,
) -> Section {
    match page.last() {
        Some((last, _)) if page.len() as i64 == EXPORT_PAGE => more(Some(*last)),
        _ => then,
    }
}

impl Export {
    /// The page of `section` (`None` when it is empty), and where the
    /// export continues after it (`None` at the end).
    async fn page(
        &self,
        tx: &mut PgConnection,
        section: Section,
    ) -> ApiResult<(Option<Part>, Option<Section>)> {
        let id = self.contact;
        Ok(match section {
            Section::Lifecycle(after) => {
                let page =
                    history::list(tx, History::Lifecycle, id, after, EXPORT_PAGE, false).await?;
                let next = after_page(&page, Section::Lifecycle, Section::Consent(None));
                let part = (!page.is_empty()).then(|| {
                    Part::LifecycleChanges(LifecycleChanges {
                        changes: page.iter().map(|(_, e)| e.to_lifecycle_change()).collect(),
                    })
                });
                (part, Some(next))
            }
            Section::Consent(after) => {
                let page =
                    history::list(tx, History::Consent, id, after, EXPORT_PAGE, false).await?;
                let next = after_page(&page, Section::Consent, Section::Merges(None));
                let part = (!page.is_empty()).then(|| {
                    Part::ConsentChanges(ConsentChanges {
                        changes: page.iter().map(|(_, e)| e.to_consent_change()).collect(),
                    })
                });
                (part, Some(next))
            }
            Section::Merges(after) => {
                let page = privacy::merges(tx, id, after, EXPORT_PAGE).await?;
                let next = after_page(&page, Section::Merges, Section::Timeline(None));
                let part = (!page.is_empty()).then(|| {
                    Part::Merges(MergeChunk {
                        merges: page
                            .iter()
                            .map(|(merged, time)| Merge {
                                merged_id: merged.to_string(),
                                merge_time: Some(to_timestamp(*time)),
                            })
                            .collect(),
                    })
                });
                (part, Some(next))
            }
            Section::Timeline(after) => {
                let page = timeline::export_events(tx, id, after, EXPORT_PAGE).await?;
                let next = match page.last() {
                    Some((last, _)) if page.len() as i64 == EXPORT_PAGE => {
                        Some(Section::Timeline(Some(*last)))
                    }
                    _ => None,
                };
                let part = (!page.is_empty()).then(|| {
                    Part::Events(EventChunk {
                        events: page.into_iter().map(|(_, e)| e).collect(),
                    })
                });
                (part, next)
            }
        })
    }
}

impl ChunkSource for Export {
    type Cursor = Section;
    type Message = ExportContactResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a Section>,
    ) -> NextChunk<'a, ExportContactResponse, Section> {
        async move {
            let mut section = after.copied().unwrap_or(Section::Lifecycle(None));
            // Empty sections are passed over: each message carries something.
            loop {
                let (part, next) = self.page(tx, section).await?;
                match (part, next) {
                    (Some(part), next) => {
                        return Ok(Some(Chunk {
                            message: ExportContactResponse { part: Some(part) },
                            next,
                        }));
                    }
                    (None, Some(next)) => section = next,
                    (None, None) => return Ok(None),
                }
            }
        }
        .boxed()
    }
}
