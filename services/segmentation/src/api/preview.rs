//! PreviewRule: the size and a sample of an unsaved rule, within a time
//! budget, else a flagged estimate.

use std::time::{Duration, Instant};

use rapport_core::db::finish_read;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::segmentation::v1::*;
use sqlx::Connection as _;
use uuid::Uuid;

use super::{SegmentationApi, check_references};
use crate::domain::estimate::estimate;
use crate::domain::rule::Rule as TypedRule;
use crate::domain::validate;
use crate::store::evaluate;

const DEFAULT_BUDGET: Duration = Duration::from_secs(2);
const MIN_BUDGET: Duration = Duration::from_millis(100);
const MAX_BUDGET: Duration = Duration::from_secs(30);
const DEFAULT_SAMPLE: i64 = 10;
const MAX_SAMPLE: i32 = 100;
/// What the exact count leaves of the budget for an estimate, should it
/// run out: a quarter, and at least this.
const MIN_ESTIMATE_RESERVE: Duration = Duration::from_millis(50);
/// The least an estimate is given, whatever is left of the budget: it
/// evaluates the rule for a bounded sample, so its cost barely grows with
/// the tenant, and an answer a little late beats no answer.
const MIN_ESTIMATE_TIME: Duration = Duration::from_secs(1);

/// PostgreSQL's code for a statement cancelled by its timeout.
fn timed_out(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "57014")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl SegmentationApi {
    pub(super) async fn preview(
        &self,
        ctx: &TenantContext,
        req: PreviewRuleRequest,
    ) -> ApiResult<PreviewRuleResponse> {
        let started = Instant::now();
        let now = self.clock.now();
        let models = self.models_for_reading(ctx, req.rule.as_ref()).await?;
        let mut violations = Violations::default();
        let rule = match &req.rule {
            Some(rule) => validate::validate(rule, "rule", &models, &mut violations),
            None => {
                violations.add("rule", "is required");
                None
            }
        };
        if !(0..=MAX_SAMPLE).contains(&req.sample_size) {
            violations.add("sample_size", format!("must be 0 to {MAX_SAMPLE}"));
        }
        let budget = match &req.time_budget {
            None => DEFAULT_BUDGET,
            Some(budget) => match Duration::try_from(*budget) {
                Ok(budget) if (MIN_BUDGET..=MAX_BUDGET).contains(&budget) => budget,
                _ => {
                    violations.add("time_budget", "must be from 100 ms to 30 s");
                    DEFAULT_BUDGET
                }
            },
        };
        violations.check()?;
        let Some(rule) = rule else {
            return Err(ApiError::internal(anyhow::anyhow!(
                "a valid rule has a tree"
            )));
        };
        let sample_size = match req.sample_size {
            0 => DEFAULT_SAMPLE,
            n => i64::from(n),
        };
        // The call's own deadline bounds the budget too.
        let budget = rapport_core::deadline::remaining().map_or(budget, |left| left.min(budget));

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        check_references(&mut tx, &rule, "rule", None).await?;
        let exact_until = budget.saturating_sub((budget / 4).max(MIN_ESTIMATE_RESERVE));
        let exact = {
            let mut attempt = tx.begin().await?;
            let left = exact_until.saturating_sub(started.elapsed());
            evaluate::limit_statements(&mut attempt, millis(left)).await?;
            let outcome = async {
                let total = evaluate::contact_count(&mut attempt, ctx.tenant_id).await?;
                let (count, sample) = evaluate::count_and_sample(
                    &mut attempt,
                    ctx.tenant_id,
                    &rule,
                    now,
                    sample_size,
                )
                .await?;
                Ok::<_, sqlx::Error>((total, sample, count))
            }
            .await;
            match outcome {
                Ok(found) => {
                    attempt.commit().await?;
                    Some(found)
                }
                Err(error) if timed_out(&error) => {
                    attempt.rollback().await?;
                    None
                }
                Err(error) => return Err(error.into()),
            }
        };
        let response = match exact {
            Some((total, sample, count)) => PreviewRuleResponse {
                count,
                estimated: false,
                count_low: count,
                count_high: count,
                sample_contact_ids: sample.iter().map(Uuid::to_string).collect(),
                contact_count: total,
            },
            None => {
                self.estimate(&mut tx, ctx.tenant_id, &rule, now, budget, started)
                    .await?
            }
        };
        finish_read(tx);
        Ok(response)
    }

    /// The estimate for a preview whose exact count ran out of time, with
    /// what is left of the budget (at least [`MIN_ESTIMATE_TIME`]).
    async fn estimate(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: Uuid,
        rule: &TypedRule,
        now: chrono::DateTime<chrono::Utc>,
        budget: Duration,
        started: Instant,
    ) -> ApiResult<PreviewRuleResponse> {
        let left = budget
            .saturating_sub(started.elapsed())
            .max(MIN_ESTIMATE_TIME);
        evaluate::limit_statements(tx, millis(left)).await?;
        let outcome = async {
            let total = evaluate::contact_count(tx, tenant).await?;
            let (matched, sampled) = evaluate::sampled_share(tx, tenant, rule, now, total).await?;
            Ok::<_, sqlx::Error>((total, matched, sampled))
        }
        .await;
        let (total, matched, sampled) = match outcome {
            Ok(found) => found,
            Err(error) if timed_out(&error) => {
                return Err(ApiError::deadline_exceeded(
                    "neither the count nor an estimate fitted in the time budget; allow more time",
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let estimate = estimate(matched, sampled, total);
        Ok(PreviewRuleResponse {
            count: estimate.count,
            estimated: true,
            count_low: estimate.low,
            count_high: estimate.high,
            sample_contact_ids: Vec::new(),
            contact_count: total,
        })
    }
}
