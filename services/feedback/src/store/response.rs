//! Responses and their answers, and the counts summaries are made of.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::{Answer, ChoiceSelection, Response, ResponseStatus};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::summary::{ChoicePick, ScoreCount};

macro_rules! response_columns {
    () => {
        "id, survey_id, invitation_id, contact_id, anonymous, channel, touchpoint, language, \
         status, score, has_comment, tags, start_time, update_time, complete_time"
    };
}

#[derive(Debug, Clone, FromRow)]
pub struct StoredResponse {
    pub id: Uuid,
    pub survey_id: Uuid,
    pub invitation_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub anonymous: bool,
    pub channel: i16,
    pub touchpoint: String,
    pub language: String,
    pub status: i16,
    pub score: Option<i16>,
    pub has_comment: bool,
    pub tags: Vec<String>,
    pub start_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
}

impl StoredResponse {
    pub fn is_completed(&self) -> bool {
        self.status == ResponseStatus::Completed as i16
    }

    pub fn to_proto(&self, answers: Vec<Answer>) -> Response {
        Response {
            id: self.id.to_string(),
            survey_id: self.survey_id.to_string(),
            invitation_id: if self.anonymous {
                String::new()
            } else {
                self.invitation_id.to_string()
            },
            contact_id: self.contact_id.map(|id| id.to_string()).unwrap_or_default(),
            channel: self.channel.into(),
            touchpoint: self.touchpoint.clone(),
            language: self.language.clone(),
            status: self.status.into(),
            answers,
            score: self.score.map(i32::from),
            tags: self.tags.clone(),
            start_time: Some(to_timestamp(self.start_time)),
            update_time: Some(to_timestamp(self.update_time)),
            complete_time: self.complete_time.map(to_timestamp),
        }
    }
}

/// The response to invitation `invitation`, locked, if one was begun.
pub async fn for_invitation(
    tx: &mut PgConnection,
    invitation: Uuid,
) -> sqlx::Result<Option<StoredResponse>> {
    sqlx::query_as(concat!(
        "SELECT ",
        response_columns!(),
        " FROM feedback.responses WHERE invitation_id = $1 FOR UPDATE"
    ))
    .bind(invitation)
    .fetch_optional(tx)
    .await
}

pub async fn get(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<StoredResponse>> {
    sqlx::query_as(concat!(
        "SELECT ",
        response_columns!(),
        " FROM feedback.responses WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Removes a response's answers, before [`save`] writes them anew.
pub async fn clear_answers(tx: &mut PgConnection, response: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM feedback.answers WHERE response_id = $1")
        .bind(response)
        .execute(tx)
        .await?;
    Ok(())
}

/// Inserts or updates a response's row and inserts its answers (in survey
/// order); a response saved before has its answers cleared first.
pub async fn save(
    tx: &mut PgConnection,
    tenant: Uuid,
    response: &StoredResponse,
    answers: &[Answer],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO feedback.responses (tenant_id, id, survey_id, invitation_id, contact_id, \
             anonymous, channel, touchpoint, language, status, score, has_comment, tags, \
             start_time, update_time, complete_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET language = $9, status = $10, score = $11, \
             has_comment = $12, update_time = $15, complete_time = $16",
    )
    .bind(tenant)
    .bind(response.id)
    .bind(response.survey_id)
    .bind(response.invitation_id)
    .bind(response.contact_id)
    .bind(response.anonymous)
    .bind(response.channel)
    .bind(&response.touchpoint)
    .bind(&response.language)
    .bind(response.status)
    .bind(response.score)
    .bind(response.has_comment)
    .bind(&response.tags)
    .bind(response.start_time)
    .bind(response.update_time)
    .bind(response.complete_time)
    .execute(&mut *tx)
    .await?;
    let mut question_ids = Vec::with_capacity(answers.len());
    let mut scores = Vec::with_capacity(answers.len());
    let mut choices = Vec::with_capacity(answers.len());
    let mut texts = Vec::with_capacity(answers.len());
    for answer in answers {
        question_ids.push(answer.question_id.as_str());
        let (score, choice_ids, text) = columns(answer);
        scores.push(score);
        // PostgreSQL has no ragged arrays; choices travel as one string per
        // answer and are split back in SQL (choice ids hold no commas).
        choices.push(choice_ids.map(|ids| ids.join(",")));
        texts.push(text);
    }
    sqlx::query(
        "INSERT INTO feedback.answers (tenant_id, response_id, question_id, ordinal, survey_id, \
             score, choice_ids, text, complete_time) \
         SELECT $1, $2, a.question_id, a.n, $3, a.score, string_to_array(a.choices, ','), a.text, $4 \
         FROM unnest($5::text[], $6::int2[], $7::text[], $8::text[]) \
             WITH ORDINALITY AS a(question_id, score, choices, text, n)",
    )
    .bind(tenant)
    .bind(response.id)
    .bind(response.survey_id)
    .bind(response.complete_time)
    .bind(question_ids)
    .bind(scores)
    .bind(choices)
    .bind(texts)
    .execute(tx)
    .await?;
    Ok(())
}

fn columns(answer: &Answer) -> (Option<i16>, Option<&[String]>, Option<&str>) {
    match &answer.value {
        Some(Value::Score(score)) => (i16::try_from(*score).ok(), None, None),
        Some(Value::Choices(selection)) => (None, Some(&selection.choice_ids), None),
        Some(Value::Text(text)) => (None, None, Some(text)),
        None => (None, None, None),
    }
}

#[derive(FromRow)]
struct AnswerRow {
    response_id: Uuid,
    question_id: String,
    score: Option<i16>,
    choice_ids: Option<Vec<String>>,
    text: Option<String>,
}

/// The answers of each of `responses`, in survey order.
pub async fn answers(
    tx: &mut PgConnection,
    responses: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Vec<Answer>>> {
    let rows: Vec<AnswerRow> = sqlx::query_as(
        "SELECT response_id, question_id, score, choice_ids, text FROM feedback.answers \
         WHERE response_id = ANY($1) ORDER BY response_id, ordinal",
    )
    .bind(responses)
    .fetch_all(tx)
    .await?;
    let mut by_response: HashMap<Uuid, Vec<Answer>> = HashMap::new();
    for row in rows {
        let value = match (row.score, row.choice_ids, row.text) {
            (Some(score), _, _) => Value::Score(score.into()),
            (_, Some(choice_ids), _) => Value::Choices(ChoiceSelection { choice_ids }),
            (_, _, text) => Value::Text(text.unwrap_or_default()),
        };
        by_response
            .entry(row.response_id)
            .or_default()
            .push(Answer {
                question_id: row.question_id,
                value: Some(value),
            });
    }
    Ok(by_response)
}

/// Filters of ListResponses.
#[derive(Debug, Default)]
pub struct ResponseFilter {
    pub survey_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub touchpoint: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub min_score: Option<i32>,
    pub max_score: Option<i32>,
    pub has_comment: Option<bool>,
    pub status: Option<ResponseStatus>,
}

/// Responses newest first, before the cursor id when given.
pub async fn list(
    tx: &mut PgConnection,
    filter: &ResponseFilter,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredResponse>> {
    sqlx::query_as(concat!(
        "SELECT ",
        response_columns!(),
        " FROM feedback.responses \
          WHERE ($1::uuid IS NULL OR id < $1) \
            AND ($2::uuid IS NULL OR survey_id = $2) \
            AND ($3::uuid IS NULL OR contact_id = $3) \
            AND ($4::text IS NULL OR touchpoint = $4) \
            AND ($5::timestamptz IS NULL OR update_time >= $5) \
            AND ($6::timestamptz IS NULL OR update_time < $6) \
            AND ($7::int4 IS NULL OR score >= $7) \
            AND ($8::int4 IS NULL OR score <= $8) \
            AND ($9::bool IS NULL OR has_comment = $9) \
            AND ($10::int2 IS NULL OR status = $10) \
          ORDER BY id DESC LIMIT $11"
    ))
    .bind(before)
    .bind(filter.survey_id)
    .bind(filter.contact_id)
    .bind(&filter.touchpoint)
    .bind(filter.start_time)
    .bind(filter.end_time)
    .bind(filter.min_score)
    .bind(filter.max_score)
    .bind(filter.has_comment)
    .bind(filter.status.map(|s| s as i16))
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// A survey's responses oldest first, after the cursor id, for export.
pub async fn export_page(
    tx: &mut PgConnection,
    survey: Uuid,
    completed_only: bool,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredResponse>> {
    sqlx::query_as(concat!(
        "SELECT ",
        response_columns!(),
        " FROM feedback.responses \
          WHERE survey_id = $1 AND ($2::uuid IS NULL OR id > $2) \
            AND (NOT $3 OR status = $4) \
          ORDER BY id LIMIT $5"
    ))
    .bind(survey)
    .bind(after)
    .bind(completed_only)
    .bind(ResponseStatus::Completed as i16)
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Adds and removes tags; returns the response after the change.
pub async fn retag(
    tx: &mut PgConnection,
    id: Uuid,
    add: &[String],
    remove: &[String],
) -> sqlx::Result<Option<StoredResponse>> {
    sqlx::query_as(concat!(
        "UPDATE feedback.responses SET tags = ARRAY( \
             SELECT DISTINCT t FROM unnest(tags || $2::text[]) AS t \
             WHERE NOT t = ANY($3::text[]) ORDER BY t) \
         WHERE id = $1 RETURNING ",
        response_columns!()
    ))
    .bind(id)
    .bind(add)
    .bind(remove)
    .fetch_optional(tx)
    .await
}

/// Completed responses of a survey, by completion time within the range.
pub async fn completed_count(
    tx: &mut PgConnection,
    survey: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM feedback.responses \
         WHERE survey_id = $1 AND status = $4 AND complete_time >= $2 AND complete_time < $3",
    )
    .bind(survey)
    .bind(start)
    .bind(end)
    .bind(ResponseStatus::Completed as i16)
    .fetch_one(tx)
    .await
}

/// Responses of a survey begun (in the range, when given) and not completed.
pub async fn partial_count(
    tx: &mut PgConnection,
    survey: Uuid,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM feedback.responses \
         WHERE survey_id = $1 AND status = $4 \
           AND ($2::timestamptz IS NULL OR start_time >= $2) \
           AND ($3::timestamptz IS NULL OR start_time < $3)",
    )
    .bind(survey)
    .bind(start)
    .bind(end)
    .bind(ResponseStatus::Partial as i16)
    .fetch_one(tx)
    .await
}

/// Completed answers of a survey by question and score, and (when
/// `with_choices`) the picks of its choice questions, completed within the
/// range: for the parts of days the running counts cannot answer.
pub async fn answer_counts(
    tx: &mut PgConnection,
    survey: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    with_choices: bool,
) -> sqlx::Result<(Vec<ScoreCount>, Vec<ChoicePick>)> {
    let scores: Vec<(String, Option<i16>, i64)> = sqlx::query_as(
        "SELECT question_id, score, count(*) FROM feedback.answers \
         WHERE survey_id = $1 AND complete_time >= $2 AND complete_time < $3 \
         GROUP BY question_id, score",
    )
    .bind(survey)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *tx)
    .await?;
    // Picks need the table itself, not the summary index: skip them when
    // the survey has no choice questions.
    let picks: Vec<(String, String, i64)> = if !with_choices {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT a.question_id, c.choice_id, count(*) \
         FROM feedback.answers AS a, unnest(a.choice_ids) AS c(choice_id) \
         WHERE a.survey_id = $1 AND a.choice_ids IS NOT NULL \
           AND a.complete_time >= $2 AND a.complete_time < $3 \
         GROUP BY a.question_id, c.choice_id",
        )
        .bind(survey)
        .bind(start)
        .bind(end)
        .fetch_all(tx)
        .await?
    };
    Ok((
        scores
            .into_iter()
            .map(|(question_id, score, count)| ScoreCount {
                question_id,
                score: score.map(i32::from),
                count,
            })
            .collect(),
        picks
            .into_iter()
            .map(|(question_id, choice_id, count)| ChoicePick {
                question_id,
                choice_id,
                count,
            })
            .collect(),
    ))
}

/// A page of every tenant's completed responses, with their tenant, in
/// (tenant, id) order after `after`: for the feed's snapshot (read with
/// `app.feed` on).
pub async fn completed_snapshot_page(
    tx: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, StoredResponse)>> {
    #[derive(FromRow)]
    struct Row {
        tenant_id: Uuid,
        #[sqlx(flatten)]
        response: StoredResponse,
    }
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT tenant_id, ",
        response_columns!(),
        " FROM feedback.responses WHERE status = $4 \
          AND ($1::uuid IS NULL OR (tenant_id, id) > ($1, $2)) ORDER BY tenant_id, id LIMIT $3"
    ))
    .bind(after.map(|(tenant, _)| tenant))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .bind(ResponseStatus::Completed as i16)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.tenant_id, row.response))
        .collect())
}

/// A page of `contact`'s responses, oldest first, after `after`: for the
/// contact's export.
pub async fn of_contact(
    tx: &mut PgConnection,
    contact: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredResponse>> {
    sqlx::query_as(concat!(
        "SELECT ",
        response_columns!(),
        " FROM feedback.responses WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) \
          ORDER BY id LIMIT $3"
    ))
    .bind(contact)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await
}
