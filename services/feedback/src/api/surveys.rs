//! Survey RPCs: create, get, update, list, activate and close.

use rapport_core::api::{etag, field_mask, non_empty};
use rapport_core::db::finish_read;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use super::{FeedbackApi, IDEMPOTENCY, survey_not_found};
use crate::domain::survey as rules;
use crate::domain::token::{self, TokenKind};
use crate::store::survey::{self as store, AnonymousLink, Lock, SurveyFilter};

/// Fields UpdateSurvey may change.
const UPDATABLE: &[&str] = &[
    "name",
    "touchpoint",
    "channel",
    "languages",
    "title",
    "questions",
    "fatigue_days",
    "anonymous_link_enabled",
    "invitation_ttl_days",
    "anonymous_link_hourly_limit",
];

impl FeedbackApi {
    pub(super) async fn create_survey(
        &self,
        ctx: &TenantContext,
        req: CreateSurveyRequest,
    ) -> ApiResult<CreateSurveyResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let mut survey = req.survey.clone().unwrap_or_default();
        if req.survey.is_none() {
            violations.add("survey", "is required");
        } else {
            rules::validate(&survey, "survey", &mut violations);
        }
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;
        rules::normalize(&mut survey);

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateSurvey",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let link = survey
            .anonymous_link_enabled
            .then(|| token::generate(TokenKind::AnonymousLink));
        let stored = store::insert(
            &mut tx,
            ctx.tenant_id,
            Uuid::now_v7(),
            &survey,
            AnonymousLink {
                token: link.as_ref().map(|(token, _)| token.as_str()),
                hash: link.as_ref().map(|(_, hash)| hash.as_str()),
            },
            now,
        )
        .await?;
        let response = CreateSurveyResponse {
            survey: Some(stored.survey),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &[stored.id], now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn get_survey(
        &self,
        ctx: &TenantContext,
        req: GetSurveyRequest,
    ) -> ApiResult<GetSurveyResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let stored = store::get(&mut tx, id, Lock::None)
            .await?
            .ok_or_else(|| survey_not_found(id))?;
        finish_read(tx);
        Ok(GetSurveyResponse {
            survey: Some(stored.survey),
        })
    }

    pub(super) async fn update_survey(
        &self,
        ctx: &TenantContext,
        req: UpdateSurveyRequest,
    ) -> ApiResult<UpdateSurveyResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let patch = req.survey.unwrap_or_default();
        let id = violations.parse_id("survey.id", &patch.id);
        let paths = field_mask::paths(req.update_mask.as_ref(), &patch, UPDATABLE, &mut violations);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = store::get(&mut tx, id, Lock::Update)
            .await?
            .ok_or_else(|| survey_not_found(id))?;
        etag::check(
            &req.etag,
            &existing.survey.etag,
            format_args!("survey {id}"),
        )?;
        let mut updated = existing.survey.clone();
        field_mask::apply(&mut updated, &patch, &paths);
        let mut violations = Violations::default();
        rules::validate(&updated, "survey", &mut violations);
        violations.check()?;
        rules::normalize(&mut updated);
        if updated.questions != existing.survey.questions
            && store::has_responses(&mut tx, id).await?
            && let Some(reason) = rules::meaning_change(&existing.survey, &updated)
        {
            return Err(ApiError::failed_precondition(
                ErrorReason::SurveyHasResponses,
                format!("{reason}; create a new survey for a different question"),
            ));
        }
        let new_link = (updated.anonymous_link_enabled != existing.survey.anonymous_link_enabled)
            .then(|| {
                updated
                    .anonymous_link_enabled
                    .then(|| token::generate(TokenKind::AnonymousLink))
            });
        let link = new_link.as_ref().map(|link| AnonymousLink {
            token: link.as_ref().map(|(token, _)| token.as_str()),
            hash: link.as_ref().map(|(_, hash)| hash.as_str()),
        });
        let stored = store::update(&mut tx, id, &updated, link, now).await?;
        tx.commit().await?;
        Ok(UpdateSurveyResponse {
            survey: Some(stored.survey),
        })
    }

    pub(super) async fn list_surveys(
        &self,
        ctx: &TenantContext,
        req: ListSurveysRequest,
    ) -> ApiResult<ListSurveysResponse> {
        let mut violations = Violations::default();
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &ListSurveysRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            },
            &mut violations,
        );
        let status = match SurveyStatus::try_from(req.status) {
            Ok(SurveyStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                violations.add("status", "is not a known survey status");
                None
            }
        };
        violations.check()?;
        let filter = SurveyFilter {
            status,
            touchpoint: non_empty(req.touchpoint),
        };
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let surveys = store::list(&mut tx, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let (surveys, next_page_token) =
            page.finish(surveys.into_iter().map(|s| (s.id, s.survey)).collect());
        Ok(ListSurveysResponse {
            surveys,
            next_page_token,
        })
    }

    /// Activates or closes a survey. Repeating the current status is a
    /// no-op; a draft cannot be closed and an empty survey cannot open.
    pub(super) async fn change_status(
        &self,
        ctx: &TenantContext,
        id: &str,
        target: SurveyStatus,
    ) -> ApiResult<Survey> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", id);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = store::get(&mut tx, id, Lock::Update)
            .await?
            .ok_or_else(|| survey_not_found(id))?;
        if existing.status() == target {
            return Ok(existing.survey);
        }
        match target {
            SurveyStatus::Active if existing.survey.questions.is_empty() => {
                return Err(ApiError::failed_precondition(
                    ErrorReason::SurveyHasNoQuestions,
                    format!("survey {id} has no questions; add some before activating it"),
                ));
            }
            SurveyStatus::Closed if existing.status() == SurveyStatus::Draft => {
                return Err(ApiError::failed_precondition(
                    ErrorReason::SurveyNotActive,
                    format!("survey {id} is a draft; only an active survey can be closed"),
                ));
            }
            _ => {}
        }
        let stored = store::set_status(&mut tx, ctx.tenant_id, id, target, now).await?;
        tx.commit().await?;
        Ok(stored.survey)
    }
}
