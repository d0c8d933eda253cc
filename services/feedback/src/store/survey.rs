//! Surveys.

use chrono::{DateTime, Utc};
use prost::Message as _;
use rapport_core::convert::to_timestamp;
use rapport_proto::feedback::v1::{Survey, SurveyStatus};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::events::{self, OUTBOX};

macro_rules! survey_columns {
    () => {
        "tenant_id, id, name, touchpoint, channel, status, content, fatigue_days, \
         invitation_ttl_days, anonymous_link_token, revision, create_time, update_time"
    };
}

/// A survey as stored, with its tenant (known only from the row when it was
/// found by an anonymous-link token).
#[derive(Debug, Clone)]
pub struct StoredSurvey {
    pub tenant_id: Uuid,
    pub id: Uuid,
    /// Every field filled, ids and times included.
    pub survey: Survey,
}

impl StoredSurvey {
    pub fn status(&self) -> SurveyStatus {
        self.survey.status()
    }
}

#[derive(FromRow)]
struct SurveyRow {
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    touchpoint: String,
    channel: i16,
    status: i16,
    content: Vec<u8>,
    fatigue_days: i32,
    invitation_ttl_days: i32,
    anonymous_link_token: Option<String>,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl SurveyRow {
    fn into_stored(self) -> sqlx::Result<StoredSurvey> {
        let content = Survey::decode(self.content.as_slice())
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let survey = Survey {
            id: self.id.to_string(),
            name: self.name,
            touchpoint: self.touchpoint,
            channel: self.channel.into(),
            status: self.status.into(),
            languages: content.languages,
            title: content.title,
            questions: content.questions,
            fatigue_days: self.fatigue_days,
            anonymous_link_enabled: self.anonymous_link_token.is_some(),
            anonymous_link_token: self.anonymous_link_token.unwrap_or_default(),
            invitation_ttl_days: self.invitation_ttl_days,
            anonymous_link_hourly_limit: content.anonymous_link_hourly_limit,
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
            etag: self.revision.to_string(),
        };
        Ok(StoredSurvey {
            tenant_id: self.tenant_id,
            id: self.id,
            survey,
        })
    }
}

/// The stored form of what has no column of its own.
fn content(survey: &Survey) -> Vec<u8> {
    Survey {
        languages: survey.languages.clone(),
        title: survey.title.clone(),
        questions: survey.questions.clone(),
        anonymous_link_hourly_limit: survey.anonymous_link_hourly_limit,
        ..Default::default()
    }
    .encode_to_vec()
}

/// The anonymous link to store: `(token, hash)` or neither.
pub struct AnonymousLink<'a> {
    pub token: Option<&'a str>,
    pub hash: Option<&'a str>,
}

pub async fn insert(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    survey: &Survey,
    link: AnonymousLink<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<StoredSurvey> {
    let row: SurveyRow = sqlx::query_as(concat!(
        "INSERT INTO feedback.surveys (tenant_id, id, name, touchpoint, channel, status, content, \
             fatigue_days, invitation_ttl_days, anonymous_link_token, anonymous_token_hash, \
             create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING ",
        survey_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(&survey.name)
    .bind(&survey.touchpoint)
    .bind(i16::try_from(survey.channel).unwrap_or_default())
    .bind(SurveyStatus::Draft as i16)
    .bind(content(survey))
    .bind(survey.fatigue_days)
    .bind(survey.invitation_ttl_days)
    .bind(link.token)
    .bind(link.hash)
    .bind(now)
    .fetch_one(tx)
    .await?;
    row.into_stored()
}

/// How [`get`] locks the survey for the rest of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    None,
    /// For calls that depend on the survey staying as read (answers and
    /// invitations): many at once, but never during an update or close.
    Share,
    /// For calls that change it.
    Update,
}

/// The survey `id`, locked as `lock` says.
pub async fn get(
    tx: &mut PgConnection,
    id: Uuid,
    lock: Lock,
) -> sqlx::Result<Option<StoredSurvey>> {
    let query = match lock {
        Lock::None => concat!(
            "SELECT ",
            survey_columns!(),
            " FROM feedback.surveys WHERE id = $1"
        ),
        Lock::Share => concat!(
            "SELECT ",
            survey_columns!(),
            " FROM feedback.surveys WHERE id = $1 FOR SHARE"
        ),
        Lock::Update => concat!(
            "SELECT ",
            survey_columns!(),
            " FROM feedback.surveys WHERE id = $1 FOR UPDATE"
        ),
    };
    let row: Option<SurveyRow> = sqlx::query_as(query).bind(id).fetch_optional(tx).await?;
    row.map(SurveyRow::into_stored).transpose()
}

/// The survey whose anonymous link has the token hashed in `app.token_hash`.
pub async fn find_by_anonymous_token(tx: &mut PgConnection) -> sqlx::Result<Option<StoredSurvey>> {
    let row: Option<SurveyRow> = sqlx::query_as(concat!(
        "SELECT ",
        survey_columns!(),
        " FROM feedback.surveys WHERE anonymous_token_hash = current_setting('app.token_hash')"
    ))
    .fetch_optional(tx)
    .await?;
    row.map(SurveyRow::into_stored).transpose()
}

/// Saves `survey`'s editable fields over the stored survey `id` and bumps
/// its revision. `link` replaces the anonymous link when given.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    survey: &Survey,
    link: Option<AnonymousLink<'_>>,
    now: DateTime<Utc>,
) -> sqlx::Result<StoredSurvey> {
    let (replace_link, token, hash) = match link {
        Some(link) => (true, link.token, link.hash),
        None => (false, None, None),
    };
    let row: SurveyRow = sqlx::query_as(concat!(
        "UPDATE feedback.surveys SET name = $2, touchpoint = $3, channel = $4, content = $5, \
             fatigue_days = $6, invitation_ttl_days = $7, \
             anonymous_link_token = CASE WHEN $8 THEN $9 ELSE anonymous_link_token END, \
             anonymous_token_hash = CASE WHEN $8 THEN $10 ELSE anonymous_token_hash END, \
             revision = revision + 1, update_time = $11 \
         WHERE id = $1 RETURNING ",
        survey_columns!()
    ))
    .bind(id)
    .bind(&survey.name)
    .bind(&survey.touchpoint)
    .bind(i16::try_from(survey.channel).unwrap_or_default())
    .bind(content(survey))
    .bind(survey.fatigue_days)
    .bind(survey.invitation_ttl_days)
    .bind(replace_link)
    .bind(token)
    .bind(hash)
    .bind(now)
    .fetch_one(tx)
    .await?;
    row.into_stored()
}

/// Moves survey `id` to `status`; closing it publishes
/// `feedback.survey_closed` with its completed count.
pub async fn set_status(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    status: SurveyStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<StoredSurvey> {
    let row: SurveyRow = sqlx::query_as(concat!(
        "UPDATE feedback.surveys SET status = $2, revision = revision + 1, update_time = $3 \
         WHERE id = $1 RETURNING ",
        survey_columns!()
    ))
    .bind(id)
    .bind(status as i16)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if status == SurveyStatus::Closed {
        let completed = super::counts::read(tx, id, None, None).await?.completed;
        let closed = events::survey_closed(id, completed, now);
        OUTBOX.write(tx, tenant, vec![closed], now).await?;
    }
    row.into_stored()
}

/// Whether any response (even partial) was given to the survey.
pub async fn has_responses(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM feedback.responses WHERE survey_id = $1)")
        .bind(id)
        .fetch_one(tx)
        .await
}

/// Filters of ListSurveys.
#[derive(Debug, Default)]
pub struct SurveyFilter {
    pub status: Option<SurveyStatus>,
    pub touchpoint: Option<String>,
}

/// Surveys newest first, after the cursor `before` (an id) when given.
pub async fn list(
    tx: &mut PgConnection,
    filter: &SurveyFilter,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredSurvey>> {
    let rows: Vec<SurveyRow> = sqlx::query_as(concat!(
        "SELECT ",
        survey_columns!(),
        " FROM feedback.surveys \
          WHERE ($1::uuid IS NULL OR id < $1) \
            AND ($2::int2 IS NULL OR status = $2) \
            AND ($3::text IS NULL OR touchpoint = $3) \
          ORDER BY id DESC LIMIT $4"
    ))
    .bind(before)
    .bind(filter.status.map(|s| s as i16))
    .bind(&filter.touchpoint)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.into_iter().map(SurveyRow::into_stored).collect()
}

/// The surveys `ids`, whatever their tenant when read with `app.feed` on
/// (the feed's snapshot).
pub async fn get_many(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<StoredSurvey>> {
    let rows: Vec<SurveyRow> = sqlx::query_as(concat!(
        "SELECT ",
        survey_columns!(),
        " FROM feedback.surveys WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(tx)
    .await?;
    rows.into_iter().map(SurveyRow::into_stored).collect()
}
