//! Response RPCs for the tenant: get, list, tag and export (the public
//! SubmitResponse is in `submit.rs`).

use rapport_core::api::{ApiStream, non_empty};
use rapport_core::convert::optional_datetime;
use rapport_core::db::finish_read;
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use super::{FeedbackApi, survey_not_found};
use crate::domain::survey::is_theme_tag;
use crate::export;
use crate::store::response::{self as store, ResponseFilter};
use crate::store::survey::Lock;

/// Most tags added or removed in one TagResponse call.
const MAX_TAG_CHANGES: usize = 20;
/// Most tags a response holds.
const MAX_TAGS: usize = 50;

impl FeedbackApi {
    pub(super) async fn get_response(
        &self,
        ctx: &TenantContext,
        req: GetResponseRequest,
    ) -> ApiResult<GetResponseResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let response = store::get(&mut tx, id)
            .await?
            .ok_or_else(|| response_not_found(id))?;
        let mut answers = store::answers(&mut tx, &[id]).await?;
        finish_read(tx);
        Ok(GetResponseResponse {
            response: Some(response.to_proto(answers.remove(&id).unwrap_or_default())),
        })
    }

    pub(super) async fn list_responses(
        &self,
        ctx: &TenantContext,
        req: ListResponsesRequest,
    ) -> ApiResult<ListResponsesResponse> {
        let mut violations = Violations::default();
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &ListResponsesRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            },
            &mut violations,
        );
        let optional_id = |field: &str, value: &str, violations: &mut Violations| {
            (!value.is_empty()).then(|| violations.parse_id(field, value))
        };
        let status = match ResponseStatus::try_from(req.status) {
            Ok(ResponseStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                violations.add("status", "is not a known response status");
                None
            }
        };
        if let (Some(min), Some(max)) = (req.min_score, req.max_score)
            && min > max
        {
            violations.add("min_score", "must not exceed max_score");
        }
        let filter = ResponseFilter {
            survey_id: optional_id("survey_id", &req.survey_id, &mut violations),
            contact_id: optional_id("contact_id", &req.contact_id, &mut violations),
            touchpoint: non_empty(req.touchpoint),
            start_time: optional_datetime(req.start_time.as_ref(), "start_time", &mut violations),
            end_time: optional_datetime(req.end_time.as_ref(), "end_time", &mut violations),
            min_score: req.min_score,
            max_score: req.max_score,
            has_comment: req.has_comment,
            status,
        };
        violations.check()?;

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let responses = store::list(&mut tx, &filter, page.after, page.fetch()).await?;
        let ids: Vec<Uuid> = responses.iter().map(|r| r.id).collect();
        let mut answers = store::answers(&mut tx, &ids).await?;
        finish_read(tx);
        let (responses, next_page_token) = page.finish(
            responses
                .iter()
                .map(|r| (r.id, r.to_proto(answers.remove(&r.id).unwrap_or_default())))
                .collect(),
        );
        Ok(ListResponsesResponse {
            responses,
            next_page_token,
        })
    }

    pub(super) async fn tag(
        &self,
        ctx: &TenantContext,
        req: TagResponseRequest,
    ) -> ApiResult<TagResponseResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        if req.add_tags.is_empty() && req.remove_tags.is_empty() {
            violations.add("add_tags", "name a tag to add or remove");
        }
        for (field, tags) in [
            ("add_tags", &req.add_tags),
            ("remove_tags", &req.remove_tags),
        ] {
            if tags.len() > MAX_TAG_CHANGES {
                violations.add(field, format!("at most {MAX_TAG_CHANGES} tags per call"));
            }
            for (i, tag) in tags.iter().enumerate() {
                if !is_theme_tag(tag) {
                    violations.add(
                        format!("{field}[{i}]"),
                        "must be 1 to 64 lowercase letters, digits, '-' or '_', such as \"pricing\"",
                    );
                }
            }
        }
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let response = store::retag(&mut tx, id, &req.add_tags, &req.remove_tags)
            .await?
            .ok_or_else(|| response_not_found(id))?;
        if response.tags.len() > MAX_TAGS {
            // Dropping the transaction undoes the change.
            return Err(ApiError::invalid_field(
                "add_tags",
                format!("a response holds at most {MAX_TAGS} tags"),
            ));
        }
        let mut answers = store::answers(&mut tx, &[id]).await?;
        tx.commit().await?;
        Ok(TagResponseResponse {
            response: Some(response.to_proto(answers.remove(&id).unwrap_or_default())),
        })
    }

    pub(super) async fn export(
        &self,
        ctx: TenantContext,
        req: ExportResponsesRequest,
    ) -> ApiResult<ApiStream<ExportResponsesResponse>> {
        let mut violations = Violations::default();
        let survey_id = violations.parse_id("survey_id", &req.survey_id);
        violations.check()?;
        // One snapshot for the whole export; the survey is read before the
        // stream starts, so a bad id fails the call itself.
        let mut tx = self.db.begin_tenant_snapshot(ctx.tenant_id).await?;
        let survey = crate::store::survey::get(&mut tx, survey_id, Lock::None)
            .await?
            .ok_or_else(|| survey_not_found(survey_id))?;
        Ok(export::csv_stream(tx, survey.survey, req.completed_only))
    }
}

fn response_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::ResponseNotFound,
        format!("response {id} does not exist"),
    )
}
