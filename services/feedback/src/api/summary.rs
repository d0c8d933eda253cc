//! GetSurveySummary: counts and scores from the running counts, and from
//! the stored answers for parts of days.

use rapport_core::convert::optional_datetime;
use rapport_core::db::finish_read;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;

use super::{FeedbackApi, survey_not_found};
use crate::domain::question::is_choice;
use crate::domain::summary::{question_summaries, split_range};
use crate::store::counts::{self, Totals};
use crate::store::survey::Lock;
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

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let survey = crate::store::survey::get(&mut tx, survey_id, Lock::None)
            .await?
            .ok_or_else(|| survey_not_found(survey_id))?;
        let with_choices = survey.survey.questions.iter().any(|q| is_choice(q.kind()));
        // Whole days come from the running counts, the rest of the range
        // from the responses themselves.
        let split = split_range(start, end);
        let mut totals = match split.days {
            Some((from, to)) => counts::read(&mut tx, survey_id, from, to).await?,
            None => Totals::default(),
        };
        for (edge_start, edge_end) in split.edges {
            totals.completed +=
                response::completed_count(&mut tx, survey_id, edge_start, edge_end).await?;
            let (invited, invited_completed) =
                invitation::counts(&mut tx, survey_id, edge_start, edge_end).await?;
            totals.invited += invited;
            totals.invited_completed += invited_completed;
            let (scores, picks) =
                response::answer_counts(&mut tx, survey_id, edge_start, edge_end, with_choices)
                    .await?;
            totals.scores.extend(scores);
            totals.picks.extend(picks);
        }
        let partial_count = response::partial_count(&mut tx, survey_id, start, end).await?;
        finish_read(tx);
        Ok(GetSurveySummaryResponse {
            summary: Some(SurveySummary {
                survey_id: survey_id.to_string(),
                completed_count: totals.completed,
                partial_count,
                invited_count: totals.invited,
                invitations_completed_count: totals.invited_completed,
                response_rate: (totals.invited > 0)
                    .then(|| totals.invited_completed as f64 / totals.invited as f64),
                questions: question_summaries(
                    &survey.survey,
                    totals.completed,
                    &totals.scores,
                    &totals.picks,
                ),
            }),
        })
    }
}
