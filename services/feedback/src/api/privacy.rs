//! A person's right of access: everything feedback stores about a contact.

use futures::FutureExt as _;
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::export_contact_feedback_response::Part;
use rapport_proto::feedback::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use super::FeedbackApi;
use crate::store::{invitation, response};

/// Entries per ExportContactFeedback message.
const EXPORT_PAGE: i64 = 200;

impl FeedbackApi {
    pub(super) async fn export_contact(
        &self,
        ctx: TenantContext,
        req: ExportContactFeedbackRequest,
    ) -> ApiResult<ApiStream<ExportContactFeedbackResponse>> {
        let mut violations = Violations::default();
        let contact = violations.parse_id("contact_id", &req.contact_id);
        violations.check()?;
        let snapshot = self.db.begin_tenant_snapshot(ctx.tenant_id).await?;
        Ok(chunked(snapshot, ContactExport { contact }))
    }
}

/// Where the export is: in the invitations, then in the responses.
#[derive(Debug, Clone, Copy)]
enum Section {
    Invitations(Option<Uuid>),
    Responses(Option<Uuid>),
}

struct ContactExport {
    contact: Uuid,
}

impl ContactExport {
    async fn page(
        &self,
        tx: &mut PgConnection,
        section: Section,
    ) -> ApiResult<(Option<Part>, Option<Section>)> {
        let full = |n: usize| n as i64 == EXPORT_PAGE;
        Ok(match section {
            Section::Invitations(after) => {
                let page = invitation::of_contact(tx, self.contact, after, EXPORT_PAGE).await?;
                let next = match page.last() {
                    Some(last) if full(page.len()) => Section::Invitations(Some(last.id)),
                    _ => Section::Responses(None),
                };
                let part = (!page.is_empty()).then(|| {
                    Part::Invitations(InvitationChunk {
                        // The token is a secret of the respondent's: never exported.
                        invitations: page.iter().map(|i| i.to_proto(String::new())).collect(),
                    })
                });
                (part, Some(next))
            }
            Section::Responses(after) => {
                let page = response::of_contact(tx, self.contact, after, EXPORT_PAGE).await?;
                let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
                let mut answers = response::answers(tx, &ids).await?;
                let next = match page.last() {
                    Some(last) if full(page.len()) => Some(Section::Responses(Some(last.id))),
                    _ => None,
                };
                let part = (!page.is_empty()).then(|| {
                    Part::Responses(ResponseChunk {
                        responses: page
                            .iter()
                            .map(|r| r.to_proto(answers.remove(&r.id).unwrap_or_default()))
                            .collect(),
                    })
                });
                (part, next)
            }
        })
    }
}

impl ChunkSource for ContactExport {
    type Cursor = Section;
    type Message = ExportContactFeedbackResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a Section>,
    ) -> NextChunk<'a, ExportContactFeedbackResponse, Section> {
        async move {
            let mut section = after.copied().unwrap_or(Section::Invitations(None));
            // Empty sections are passed over: each message carries something.
            loop {
                match self.page(tx, section).await? {
                    (Some(part), next) => {
                        return Ok(Some(Chunk {
                            message: ExportContactFeedbackResponse { part: Some(part) },
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
