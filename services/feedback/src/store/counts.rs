//! The running counts behind survey summaries (migration 0003): a few rows
//! per survey and day, added to as responses complete and invitations go
//! out, so that a summary does not read every answer.

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::summary::{ChoicePick, ScoreCount};

/// Completed responses, by completion day.
pub const COMPLETED: &str = "#completed";
/// Invitations to contacts, by the day they were made.
pub const INVITED: &str = "#invited";
/// Of those, the completed ones (by the day the invitation was made).
pub const INVITED_COMPLETED: &str = "#invited_completed";
/// `score` of a count without a score: an unscored answer, a choice pick,
/// or a `#` metric.
pub const NO_SCORE: i16 = -1;
/// Rows per key that writers spread over (see the migration).
const SLOTS: u8 = 8;

/// One addition to a count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Increment {
    pub day: NaiveDate,
    pub metric: String,
    pub score: i16,
    pub choice_id: String,
    pub by: i64,
}

impl Increment {
    pub fn metric(day: NaiveDate, metric: &str, by: i64) -> Self {
        Self {
            day,
            metric: metric.to_owned(),
            score: NO_SCORE,
            choice_id: String::new(),
            by,
        }
    }
}

/// Adds `increments` to `survey`'s counts. Rows are written in key order,
/// so two transactions never wait on each other's rows in a cycle.
pub async fn add(
    tx: &mut PgConnection,
    tenant: Uuid,
    survey: Uuid,
    mut increments: Vec<Increment>,
) -> sqlx::Result<()> {
    if increments.is_empty() {
        return Ok(());
    }
    increments.sort();
    let mut slot = [0_u8];
    getrandom::fill(&mut slot).expect("the operating system provides randomness");
    let days: Vec<NaiveDate> = increments.iter().map(|i| i.day).collect();
    let metrics: Vec<&str> = increments.iter().map(|i| i.metric.as_str()).collect();
    let scores: Vec<i16> = increments.iter().map(|i| i.score).collect();
    let choices: Vec<&str> = increments.iter().map(|i| i.choice_id.as_str()).collect();
    let by: Vec<i64> = increments.iter().map(|i| i.by).collect();
    sqlx::query(
        "INSERT INTO feedback.survey_counts \
             (tenant_id, survey_id, day, metric, score, choice_id, slot, count) \
         SELECT $1, $2, t.day, t.metric, t.score, t.choice_id, $3, t.by \
         FROM unnest($4::date[], $5::text[], $6::int2[], $7::text[], $8::int8[]) \
             WITH ORDINALITY AS t(day, metric, score, choice_id, by, n) \
         ORDER BY t.n \
         ON CONFLICT (tenant_id, survey_id, day, metric, score, choice_id, slot) \
         DO UPDATE SET count = survey_counts.count + EXCLUDED.count",
    )
    .bind(tenant)
    .bind(survey)
    .bind(i16::from(slot[0] % SLOTS))
    .bind(days)
    .bind(metrics)
    .bind(scores)
    .bind(choices)
    .bind(by)
    .execute(tx)
    .await?;
    Ok(())
}

/// What a summary adds up.
#[derive(Debug, Default)]
pub struct Totals {
    pub completed: i64,
    pub invited: i64,
    pub invited_completed: i64,
    pub scores: Vec<ScoreCount>,
    pub picks: Vec<ChoicePick>,
}

/// `survey`'s counts over the days `from..to` (unbounded where `None`).
pub async fn read(
    tx: &mut PgConnection,
    survey: Uuid,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> sqlx::Result<Totals> {
    let rows: Vec<(String, i16, String, i64)> = sqlx::query_as(
        "SELECT metric, score, choice_id, sum(count)::int8 FROM feedback.survey_counts \
         WHERE survey_id = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day < $3) \
         GROUP BY metric, score, choice_id",
    )
    .bind(survey)
    .bind(from)
    .bind(to)
    .fetch_all(tx)
    .await?;
    let mut totals = Totals::default();
    for (metric, score, choice_id, count) in rows {
        match metric.as_str() {
            COMPLETED => totals.completed += count,
            INVITED => totals.invited += count,
            INVITED_COMPLETED => totals.invited_completed += count,
            _ if !choice_id.is_empty() => totals.picks.push(ChoicePick {
                question_id: metric,
                choice_id,
                count,
            }),
            _ => totals.scores.push(ScoreCount {
                question_id: metric,
                score: (score != NO_SCORE).then_some(i32::from(score)),
                count,
            }),
        }
    }
    Ok(totals)
}
