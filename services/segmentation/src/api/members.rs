//! Membership RPCs: a list's members added and removed by id, and any
//! segment's members read (paged, counted, exported) or a contact's
//! segments.

use futures::FutureExt as _;
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::db::finish_read;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{IDEMPOTENCY, SegmentationApi, archived, contact_not_found};
use crate::domain::reads::Reads;
use crate::domain::segment::Cause;
use crate::live::{self, Touched};
use crate::store::membership;
use crate::store::segment::Lock;

/// Contact ids per AddListMembers / RemoveListMembers call.
const MAX_IDS: usize = 1000;
/// Contact ids per ExportSegmentMembers message.
const EXPORT_CHUNK: i64 = 10_000;

/// Checks a list call's segment and contact ids (1 to 1,000, deduplicated).
fn read_ids(
    segment_id: &str,
    contact_ids: &[String],
    request_id: &str,
) -> ApiResult<(Uuid, Vec<Uuid>)> {
    let mut violations = Violations::default();
    let segment = violations.parse_id("segment_id", segment_id);
    if contact_ids.is_empty() || contact_ids.len() > MAX_IDS {
        violations.add("contact_ids", format!("must hold 1 to {MAX_IDS} ids"));
    }
    let mut ids: Vec<Uuid> = contact_ids
        .iter()
        .take(MAX_IDS)
        .enumerate()
        .map(|(i, id)| violations.parse_id(&format!("contact_ids[{i}]"), id))
        .collect();
    check_request_id(request_id, &mut violations);
    violations.check()?;
    ids.sort_unstable();
    ids.dedup();
    Ok((segment, ids))
}

/// Judges again, for `contacts`, the segments whose rules name `list`.
async fn judge_dependents(
    tx: &mut PgConnection,
    tenant: Uuid,
    list: Uuid,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let mut touched = Touched::default();
    for contact in contacts {
        touched.touch(*contact, Reads::segment(list));
    }
    live::judge_again(tx, tenant, &touched, Cause::Event, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}

impl SegmentationApi {
    /// Locks list `id` for a change of its members.
    async fn list_for_change(&self, tx: &mut PgConnection, id: Uuid) -> ApiResult<()> {
        let segment = self.segment(tx, id, Lock::Update).await?;
        if segment.kind() != SegmentKind::List {
            return Err(ApiError::failed_precondition(
                ErrorReason::WrongSegmentKind,
                format!("segment {id} is dynamic: its rule decides its members"),
            ));
        }
        if archived(&segment) {
            return Err(ApiError::failed_precondition(
                ErrorReason::SegmentArchived,
                format!("segment {id} is archived; undelete it first"),
            ));
        }
        Ok(())
    }

    pub(super) async fn add_members(
        &self,
        ctx: &TenantContext,
        req: AddListMembersRequest,
    ) -> ApiResult<AddListMembersResponse> {
        let now = self.clock.now();
        let (segment, ids) = read_ids(&req.segment_id, &req.contact_ids, &req.request_id)?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        live::take_turn(&mut tx, ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "AddListMembers",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        self.list_for_change(&mut tx, segment).await?;
        let known = membership::known_contacts(&mut tx, &ids).await?;
        let added = membership::add_to_list(&mut tx, ctx.tenant_id, segment, &known, now)
            .await
            .map_err(ApiError::internal)?;
        judge_dependents(&mut tx, ctx.tenant_id, segment, &known, now).await?;
        let response = AddListMembersResponse {
            added_count: i32::try_from(added).unwrap_or(i32::MAX),
            unchanged_count: i32::try_from(known.len() - added).unwrap_or(0),
            unknown_contact_ids: ids
                .iter()
                .filter(|id| known.binary_search(id).is_err())
                .map(Uuid::to_string)
                .collect(),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &ids, now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn remove_members(
        &self,
        ctx: &TenantContext,
        req: RemoveListMembersRequest,
    ) -> ApiResult<RemoveListMembersResponse> {
        let now = self.clock.now();
        let (segment, ids) = read_ids(&req.segment_id, &req.contact_ids, &req.request_id)?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        live::take_turn(&mut tx, ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "RemoveListMembers",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        self.list_for_change(&mut tx, segment).await?;
        let removed = membership::remove_from_list(&mut tx, ctx.tenant_id, segment, &ids, now)
            .await
            .map_err(ApiError::internal)?;
        judge_dependents(&mut tx, ctx.tenant_id, segment, &ids, now).await?;
        let response = RemoveListMembersResponse {
            removed_count: i32::try_from(removed).unwrap_or(i32::MAX),
            unchanged_count: i32::try_from(ids.len() - removed).unwrap_or(0),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &ids, now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn members(
        &self,
        ctx: &TenantContext,
        req: ListSegmentMembersRequest,
    ) -> ApiResult<ListSegmentMembersResponse> {
        let mut violations = Violations::default();
        let segment = violations.parse_id("segment_id", &req.segment_id);
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &ListSegmentMembersRequest {
                page_size: 0,
                page_token: String::new(),
                ..req
            },
            &mut violations,
        );
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        self.segment(&mut tx, segment, Lock::None).await?;
        let members =
            membership::members(&mut tx, ctx.tenant_id, segment, page.after, page.fetch()).await?;
        finish_read(tx);
        let (members, next_page_token) = page.finish(members);
        Ok(ListSegmentMembersResponse {
            members,
            next_page_token,
        })
    }

    pub(super) async fn count(
        &self,
        ctx: &TenantContext,
        req: CountSegmentRequest,
    ) -> ApiResult<CountSegmentResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("segment_id", &req.segment_id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let segment = self.segment(&mut tx, id, Lock::None).await?;
        finish_read(tx);
        Ok(CountSegmentResponse {
            member_count: segment.member_count,
        })
    }

    pub(super) async fn contact_segments(
        &self,
        ctx: &TenantContext,
        req: ListContactSegmentsRequest,
    ) -> ApiResult<ListContactSegmentsResponse> {
        let mut violations = Violations::default();
        let contact = violations.parse_id("contact_id", &req.contact_id);
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &req.contact_id,
            &mut violations,
        );
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        if membership::known_contacts(&mut tx, &[contact])
            .await?
            .is_empty()
        {
            return Err(contact_not_found(contact));
        }
        let rows =
            membership::of_contact(&mut tx, ctx.tenant_id, contact, page.after, page.fetch())
                .await?;
        finish_read(tx);
        let (memberships, next_page_token) = page.finish(rows);
        Ok(ListContactSegmentsResponse {
            memberships,
            next_page_token,
        })
    }

    pub(super) async fn export(
        &self,
        ctx: TenantContext,
        req: ExportSegmentMembersRequest,
    ) -> ApiResult<ApiStream<ExportSegmentMembersResponse>> {
        let mut violations = Violations::default();
        let segment = violations.parse_id("segment_id", &req.segment_id);
        violations.check()?;
        let mut snapshot = self.db.begin_tenant_snapshot(ctx.tenant_id).await?;
        self.segment(&mut snapshot, segment, Lock::None).await?;
        Ok(chunked(
            snapshot,
            MemberExport {
                tenant: ctx.tenant_id,
                segment,
            },
        ))
    }
}

/// A segment's member ids, a chunk at a time, in contact id order.
struct MemberExport {
    tenant: Uuid,
    segment: Uuid,
}

impl ChunkSource for MemberExport {
    type Cursor = Uuid;
    type Message = ExportSegmentMembersResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a Uuid>,
    ) -> NextChunk<'a, Self::Message, Self::Cursor> {
        async move {
            let ids =
                membership::member_ids(tx, self.tenant, self.segment, after.copied(), EXPORT_CHUNK)
                    .await?;
            let Some(last) = ids.last().copied() else {
                return Ok(None);
            };
            let next = (ids.len() as i64 == EXPORT_CHUNK).then_some(last);
            Ok(Some(Chunk {
                message: ExportSegmentMembersResponse {
                    contact_ids: ids.iter().map(Uuid::to_string).collect(),
                },
                next,
            }))
        }
        .boxed()
    }
}
