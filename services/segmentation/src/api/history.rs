//! Membership history: who entered and left which segment, when, by which
//! rule version and why, newest first.

use rapport_core::db::finish_read;
use rapport_core::pagination::Page;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;

use super::SegmentationApi;
use crate::store::membership;
use crate::store::segment::Lock;

impl SegmentationApi {
    pub(super) async fn history(
        &self,
        ctx: &TenantContext,
        req: ListMembershipHistoryRequest,
    ) -> ApiResult<ListMembershipHistoryResponse> {
        let mut violations = Violations::default();
        let optional_id = |violations: &mut Violations, field: &str, id: &str| {
            (!id.is_empty()).then(|| violations.parse_id(field, id))
        };
        let segment = optional_id(&mut violations, "segment_id", &req.segment_id);
        let contact = optional_id(&mut violations, "contact_id", &req.contact_id);
        if segment.is_none() && contact.is_none() {
            violations.add("segment_id", "is required unless contact_id is given");
        }
        let page: Page<i64> = Page::read(
            req.page_size,
            &req.page_token,
            &ListMembershipHistoryRequest {
                page_size: 0,
                page_token: String::new(),
                ..req
            },
            &mut violations,
        );
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        if let Some(segment) = segment {
            // An unknown segment is NOT_FOUND, not an empty history.
            self.segment(&mut tx, segment, Lock::None).await?;
        }
        let changes =
            membership::history(&mut tx, segment, contact, page.after, page.fetch()).await?;
        finish_read(tx);
        let (changes, next_page_token) = page.finish(changes);
        Ok(ListMembershipHistoryResponse {
            changes,
            next_page_token,
        })
    }
}
