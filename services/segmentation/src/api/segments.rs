//! Segment RPCs: create, get, update, list, delete (archive), undelete and
//! build.

use rapport_core::api::{etag, field_mask};
use rapport_core::db::finish_read;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;
use uuid::Uuid;

use super::{IDEMPOTENCY, SegmentationApi, archived, check_references, named_models};
use crate::domain::segment as rules;
use crate::store::segment::{self as store, Change, Lock, References, SegmentFilter};

/// Fields UpdateSegment may change.
const UPDATABLE: &[&str] = &["name", "description", "rule"];

impl SegmentationApi {
    pub(super) async fn create(
        &self,
        ctx: &TenantContext,
        req: CreateSegmentRequest,
    ) -> ApiResult<CreateSegmentResponse> {
        let now = self.clock.now();
        let segment = req.segment.clone().unwrap_or_default();
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let models = named_models(&mut tx, segment.rule.as_ref()).await?;
        let mut violations = Violations::default();
        let rule = if req.segment.is_none() {
            violations.add("segment", "is required");
            None
        } else {
            rules::validate(&segment, "segment", &models, &mut violations)
        };
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;

        let id = Uuid::now_v7();
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateSegment",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let references = match &rule {
            Some(rule) => {
                check_references(&mut tx, rule, "segment.rule", Some(id)).await?;
                References::of(rule)
            }
            None => References::default(),
        };
        let stored = store::insert(&mut tx, ctx.tenant_id, id, &segment, &references, now).await?;
        let response = CreateSegmentResponse {
            segment: Some(stored),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &[id], now)
            .await?;
        tx.commit().await?;
        self.builds.notify_one();
        Ok(response)
    }

    pub(super) async fn get(
        &self,
        ctx: &TenantContext,
        req: GetSegmentRequest,
    ) -> ApiResult<GetSegmentResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let segment = self.segment(&mut tx, id, Lock::None).await?;
        finish_read(tx);
        Ok(GetSegmentResponse {
            segment: Some(segment),
        })
    }

    pub(super) async fn update(
        &self,
        ctx: &TenantContext,
        req: UpdateSegmentRequest,
    ) -> ApiResult<UpdateSegmentResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let patch = req.segment.unwrap_or_default();
        let id = violations.parse_id("segment.id", &patch.id);
        let paths = field_mask::paths(req.update_mask.as_ref(), &patch, UPDATABLE, &mut violations);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = self.segment(&mut tx, id, Lock::Update).await?;
        etag::check(&req.etag, &existing.etag, format_args!("segment {id}"))?;
        let mut updated = existing.clone();
        field_mask::apply(&mut updated, &patch, &paths);
        let models = named_models(&mut tx, updated.rule.as_ref()).await?;
        let mut violations = Violations::default();
        let rule = rules::validate(&updated, "segment", &models, &mut violations);
        violations.check()?;
        let rule_changed = updated.rule != existing.rule;
        if rule_changed && archived(&existing) {
            return Err(ApiError::failed_precondition(
                ErrorReason::SegmentArchived,
                format!("segment {id} is archived; undelete it before changing its rule"),
            ));
        }
        let references = match (&rule, rule_changed) {
            (Some(rule), true) => {
                check_references(&mut tx, rule, "segment.rule", Some(id)).await?;
                References::of(rule)
            }
            _ => References::default(),
        };
        let new_rule = updated.rule.as_ref().filter(|_| rule_changed);
        let stored = store::update(
            &mut tx,
            ctx.tenant_id,
            id,
            Change {
                name: &updated.name,
                description: &updated.description,
                rule: new_rule.map(|rule| (rule, &references)),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        if rule_changed {
            self.builds.notify_one();
        }
        Ok(UpdateSegmentResponse {
            segment: Some(stored),
        })
    }

    pub(super) async fn list(
        &self,
        ctx: &TenantContext,
        req: ListSegmentsRequest,
    ) -> ApiResult<ListSegmentsResponse> {
        let mut violations = Violations::default();
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &ListSegmentsRequest {
                page_size: 0,
                page_token: String::new(),
                ..req
            },
            &mut violations,
        );
        let kind = match SegmentKind::try_from(req.kind) {
            Ok(SegmentKind::Unspecified) => None,
            Ok(kind) => Some(kind),
            Err(_) => {
                violations.add("kind", "is not a known segment kind");
                None
            }
        };
        violations.check()?;
        let filter = SegmentFilter {
            kind,
            show_archived: req.show_archived,
        };
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let segments = store::list(&mut tx, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let (segments, next_page_token) = page.finish(segments);
        Ok(ListSegmentsResponse {
            segments,
            next_page_token,
        })
    }

    pub(super) async fn delete(
        &self,
        ctx: &TenantContext,
        req: DeleteSegmentRequest,
    ) -> ApiResult<DeleteSegmentResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = self.segment(&mut tx, id, Lock::Update).await?;
        etag::check(&req.etag, &existing.etag, format_args!("segment {id}"))?;
        if archived(&existing) {
            return Ok(DeleteSegmentResponse {
                segment: Some(existing),
            });
        }
        let users = store::referenced_by(&mut tx, id).await?;
        if !users.is_empty() {
            let names: Vec<String> = users.iter().map(Uuid::to_string).collect();
            return Err(ApiError::failed_precondition(
                ErrorReason::SegmentInUse,
                format!(
                    "segment {id} is named by the rules of segments {}; change those rules first",
                    names.join(", ")
                ),
            ));
        }
        let stored = store::archive(&mut tx, id, now, now + self.retention).await?;
        tx.commit().await?;
        Ok(DeleteSegmentResponse {
            segment: Some(stored),
        })
    }

    pub(super) async fn undelete(
        &self,
        ctx: &TenantContext,
        req: UndeleteSegmentRequest,
    ) -> ApiResult<UndeleteSegmentResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = self.segment(&mut tx, id, Lock::Update).await?;
        if !archived(&existing) {
            return Ok(UndeleteSegmentResponse {
                segment: Some(existing),
            });
        }
        let stored = store::undelete(&mut tx, ctx.tenant_id, id, now).await?;
        tx.commit().await?;
        self.builds.notify_one();
        Ok(UndeleteSegmentResponse {
            segment: Some(stored),
        })
    }

    pub(super) async fn build(
        &self,
        ctx: &TenantContext,
        req: BuildSegmentRequest,
    ) -> ApiResult<BuildSegmentResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = self.segment(&mut tx, id, Lock::Update).await?;
        if existing.kind() != SegmentKind::Dynamic {
            return Err(ApiError::failed_precondition(
                ErrorReason::WrongSegmentKind,
                format!("segment {id} is a list; only dynamic segments are built"),
            ));
        }
        if archived(&existing) {
            return Err(ApiError::failed_precondition(
                ErrorReason::SegmentArchived,
                format!("segment {id} is archived; undelete it first"),
            ));
        }
        let stored = store::request_build(&mut tx, ctx.tenant_id, id, now).await?;
        tx.commit().await?;
        self.builds.notify_one();
        Ok(BuildSegmentResponse {
            segment: Some(stored),
        })
    }
}
