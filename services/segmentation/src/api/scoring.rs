//! Lead scoring RPCs: scoring models (create, get, list, update, delete)
//! and a contact's score with each rule's contribution.

use rapport_core::api::{etag, field_mask};
use rapport_core::convert::to_timestamp;
use rapport_core::db::finish_read;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{IDEMPOTENCY, SegmentationApi, contact_not_found};
use crate::domain::reads::Reads;
use crate::domain::rule::Rule as TypedRule;
use crate::domain::scoring::{self, describe_rule};
use crate::store::{build, facts, scoring as store};

/// Fields UpdateScoringModel may change.
const UPDATABLE: &[&str] = &["name", "description", "rules", "half_life"];

fn model_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::ScoringModelNotFound,
        format!("scoring model {id} does not exist"),
    )
}

async fn model(tx: &mut PgConnection, id: Uuid, lock: bool) -> ApiResult<ScoringModel> {
    store::get(tx, id, lock)
        .await?
        .ok_or_else(|| model_not_found(id))
}

impl SegmentationApi {
    pub(super) async fn create_model(
        &self,
        ctx: &TenantContext,
        req: CreateScoringModelRequest,
    ) -> ApiResult<CreateScoringModelResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        match &req.model {
            Some(model) => {
                scoring::validate(model, "model", &mut violations);
            }
            None => violations.add("model", "is required"),
        }
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;
        let id = Uuid::now_v7();
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateScoringModel",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let stored = store::insert(
            &mut tx,
            ctx.tenant_id,
            id,
            &req.model.clone().unwrap_or_default(),
            now,
        )
        .await?;
        let response = CreateScoringModelResponse {
            model: Some(stored),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &[id], now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn get_model(
        &self,
        ctx: &TenantContext,
        req: GetScoringModelRequest,
    ) -> ApiResult<GetScoringModelResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let model = model(&mut tx, id, false).await?;
        finish_read(tx);
        Ok(GetScoringModelResponse { model: Some(model) })
    }

    pub(super) async fn list_models(
        &self,
        ctx: &TenantContext,
        req: ListScoringModelsRequest,
    ) -> ApiResult<ListScoringModelsResponse> {
        let mut violations = Violations::default();
        let page: Page<(String, Uuid)> = Page::read(
            req.page_size,
            &req.page_token,
            &ListScoringModelsRequest {
                page_size: 0,
                page_token: String::new(),
            },
            &mut violations,
        );
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let models = store::list(&mut tx, page.after.clone(), page.fetch()).await?;
        finish_read(tx);
        let (models, next_page_token) = page.finish(models);
        Ok(ListScoringModelsResponse {
            models,
            next_page_token,
        })
    }

    pub(super) async fn update_model(
        &self,
        ctx: &TenantContext,
        req: UpdateScoringModelRequest,
    ) -> ApiResult<UpdateScoringModelResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let patch = req.model.unwrap_or_default();
        let id = violations.parse_id("model.id", &patch.id);
        let paths = field_mask::paths(req.update_mask.as_ref(), &patch, UPDATABLE, &mut violations);
        violations.check()?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = model(&mut tx, id, true).await?;
        etag::check(
            &req.etag,
            &existing.etag,
            format_args!("scoring model {id}"),
        )?;
        let mut updated = existing;
        field_mask::apply(&mut updated, &patch, &paths);
        let mut violations = Violations::default();
        scoring::validate(&updated, "model", &mut violations);
        violations.check()?;
        let stored = store::update(&mut tx, id, &updated, now).await?;
        // The segments scoring with it mean something else now.
        let users = store::used_by(&mut tx, id).await?;
        for segment in &users {
            build::request(&mut tx, ctx.tenant_id, *segment, now).await?;
        }
        tx.commit().await?;
        if !users.is_empty() {
            self.builds.notify_one();
        }
        Ok(UpdateScoringModelResponse {
            model: Some(stored),
        })
    }

    pub(super) async fn delete_model(
        &self,
        ctx: &TenantContext,
        req: DeleteScoringModelRequest,
    ) -> ApiResult<DeleteScoringModelResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        // Locked first, so a rule naming it cannot be saved meanwhile.
        model(&mut tx, id, true).await?;
        let users = store::used_by(&mut tx, id).await?;
        if !users.is_empty() {
            let names: Vec<String> = users.iter().map(Uuid::to_string).collect();
            return Err(ApiError::failed_precondition(
                ErrorReason::ScoringModelInUse,
                format!(
                    "scoring model {id} is named by the rules of segments {}; change those rules first",
                    names.join(", ")
                ),
            ));
        }
        store::delete(&mut tx, id).await?;
        tx.commit().await?;
        Ok(DeleteScoringModelResponse {})
    }

    pub(super) async fn contact_score(
        &self,
        ctx: &TenantContext,
        req: GetContactScoreRequest,
    ) -> ApiResult<GetContactScoreResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("model_id", &req.model_id);
        let contact = violations.parse_id("contact_id", &req.contact_id);
        violations.check()?;
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let stored = model(&mut tx, id, false).await?;
        let checked =
            scoring::validate(&stored, "model", &mut Violations::default()).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("scoring model {id} fails its checks"))
            })?;
        let conditions = TypedRule::AllOf(
            checked
                .rules
                .iter()
                .map(|rule| TypedRule::Leaf(rule.condition.clone()))
                .collect(),
        );
        let reads = Reads::of(&conditions);
        let mut found = facts::load(&mut tx, ctx.tenant_id, &[contact], &reads, now)
            .await
            .map_err(ApiError::from)?;
        finish_read(tx);
        let contact_facts = found
            .remove(&contact)
            .ok_or_else(|| contact_not_found(contact))?;
        let (score, contributions) = scoring::score(&checked, &contact_facts, now);
        Ok(GetContactScoreResponse {
            score,
            score_time: Some(to_timestamp(now)),
            contributions: checked
                .rules
                .iter()
                .zip(contributions)
                .enumerate()
                .map(|(i, (rule, contribution))| ScoreContribution {
                    path: format!("model.rules[{i}]"),
                    condition: describe_rule(rule),
                    points: rule.points,
                    matched: contribution.matched,
                    contributed: contribution.contributed,
                })
                .collect(),
        })
    }
}
