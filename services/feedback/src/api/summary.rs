//! GetSurveySummary: counts and scores straight from the stored answers.

use rapport_core::convert::optional_datetime;
use rapport_core::db::{begin_tenant_read, finish_read};
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;

use super::{FeedbackApi, survey_not_found};
use crate::domain::summary::question_summaries;
use crate::domain::survey::is_choice;
use crate::store::{invitation, response};

impl FeedbackApi {
    pub(super) async fn summary(
        &self,
        ctx: &TenantContext,
        req: GetSurveySummaryRequest,
    ) -> ApiResult<GetSurveySummaryResponse> {
        let mut violations = Violations::default();
        let survey_id = violations.parse_id("survey_id", &req.survey_id);
        let start = optional_datetime(req.start_time.as_ref(), "start_time", &mut violations);
        let end = optional_datetime(req.end_time.as_ref(), "end_time", &mut violations);
        if let (Some(start), Some(end)) = (start, end)
            && start >= end
        {
            violations.add("end_time", "must be after start_time");
        }
        violations.check()?;

        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let survey = crate::store::survey::get(&mut tx, survey_id, false)
            .await?
            .ok_or_else(|| survey_not_found(survey_id))?;
        let with_choices = survey.survey.questions.iter().any(|q| is_choice(q.kind()));
        let (completed_count, partial_count) =
            response::status_counts(&mut tx, survey_id, start, end).await?;
        let (invited_count, invitations_completed_count) =
            invitation::counts(&mut tx, survey_id, start, end).await?;
        let (scores, picks) =
            response::answer_counts(&mut tx, survey_id, start, end, with_choices).await?;
        finish_read(tx);
        Ok(GetSurveySummaryResponse {
            summary: Some(SurveySummary {
                survey_id: survey_id.to_string(),
                completed_count,
                partial_count,
                invited_count,
                invitations_completed_count,
                response_rate: (invited_count > 0)
                    .then(|| invitations_completed_count as f64 / invited_count as f64),
                questions: question_summaries(&survey.survey, completed_count, &scores, &picks),
            }),
        })
    }
}
