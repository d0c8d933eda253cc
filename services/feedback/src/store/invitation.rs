//! Invitations: one token each, for a contact or handed out by an
//! anonymous link.

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_events::OutboxEvent;
use rapport_proto::feedback::v1::{Invitation, ResponseSubmitted};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::events::{self, OUTBOX};

macro_rules! invitation_columns {
    () => {
        "tenant_id, id, survey_id, contact_id, anonymous, channel, create_time, expire_time, \
         complete_time"
    };
}

#[derive(Debug, Clone, FromRow)]
pub struct StoredInvitation {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub survey_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub anonymous: bool,
    pub channel: i16,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
}

impl StoredInvitation {
    /// The invitation as the API shows it; `token` only at creation.
    pub fn to_proto(&self, token: String) -> Invitation {
        Invitation {
            id: self.id.to_string(),
            survey_id: self.survey_id.to_string(),
            contact_id: self.contact_id.map(|id| id.to_string()).unwrap_or_default(),
            channel: self.channel.into(),
            token,
            create_time: Some(to_timestamp(self.create_time)),
            expire_time: Some(to_timestamp(self.expire_time)),
        }
    }
}

/// An invitation to insert.
pub struct NewInvitation {
    pub id: Uuid,
    pub contact_id: Option<Uuid>,
    pub token_hash: String,
}

/// Inserts invitations to `survey` with the same channel and times. The
/// invitations of contacts (not `anonymous` ones, which continue a
/// response begun from a survey link) are published as
/// `feedback.invitation_sent`.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    tx: &mut PgConnection,
    tenant: Uuid,
    survey: Uuid,
    anonymous: bool,
    channel: i16,
    invitations: &[NewInvitation],
    now: DateTime<Utc>,
    expire_time: DateTime<Utc>,
) -> sqlx::Result<Vec<StoredInvitation>> {
    let ids: Vec<Uuid> = invitations.iter().map(|i| i.id).collect();
    let contacts: Vec<Option<Uuid>> = invitations.iter().map(|i| i.contact_id).collect();
    let hashes: Vec<&str> = invitations.iter().map(|i| i.token_hash.as_str()).collect();
    let stored: Vec<StoredInvitation> = sqlx::query_as(concat!(
        "INSERT INTO feedback.invitations (tenant_id, id, survey_id, contact_id, anonymous, channel, \
             token_hash, create_time, expire_time) \
         SELECT $1, i.id, $2, i.contact, $3, $4, i.hash, $7, $8 \
         FROM unnest($5::uuid[], $6::uuid[], $9::text[]) WITH ORDINALITY AS i(id, contact, hash, n) \
         ORDER BY i.n RETURNING ",
        invitation_columns!()
    ))
    .bind(tenant)
    .bind(survey)
    .bind(anonymous)
    .bind(channel)
    .bind(ids)
    .bind(contacts)
    .bind(now)
    .bind(expire_time)
    .bind(hashes)
    .fetch_all(&mut *tx)
    .await?;
    if !anonymous {
        let sent = stored.iter().map(events::invitation_sent).collect();
        OUTBOX.write(tx, tenant, sent, now).await?;
    }
    Ok(stored)
}

/// The invitation whose token is hashed in `app.token_hash`, whatever its
/// tenant. Not locked: the token policy only reveals rows for reading.
pub async fn find_by_token(tx: &mut PgConnection) -> sqlx::Result<Option<StoredInvitation>> {
    sqlx::query_as(concat!(
        "SELECT ",
        invitation_columns!(),
        " FROM feedback.invitations WHERE token_hash = current_setting('app.token_hash')"
    ))
    .fetch_optional(tx)
    .await
}

/// The invitation `id`, locked for the rest of the transaction.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<StoredInvitation>> {
    sqlx::query_as(concat!(
        "SELECT ",
        invitation_columns!(),
        " FROM feedback.invitations WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Marks invitation `id` answered by the completed response `submitted`
/// describes, and publishes it as `feedback.response_submitted`.
pub async fn complete(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    submitted: &ResponseSubmitted,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE feedback.invitations SET complete_time = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let response = Uuid::parse_str(&submitted.response_id).unwrap_or_default();
    OUTBOX
        .write(tx, tenant, vec![OutboxEvent::new(response, submitted)], now)
        .await
}

/// Serializes invitation decisions about the same contacts: concurrent
/// CreateInvitations calls for one contact then see each other's rows.
/// Locks are taken in id order, so two calls cannot deadlock.
pub async fn lock_contacts(
    tx: &mut PgConnection,
    tenant: Uuid,
    contacts: &[Uuid],
) -> sqlx::Result<()> {
    let mut sorted = contacts.to_vec();
    sorted.sort();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('feedback.invite/' || $1::text || '/' || c::text, 0)) \
         FROM unnest($2::uuid[]) WITH ORDINALITY AS t(c, n) ORDER BY n",
    )
    .bind(tenant)
    .bind(sorted)
    .execute(tx)
    .await?;
    Ok(())
}

/// The invitations that can stop `contacts` being invited to `survey` now:
/// any created after `since`, and this survey's unanswered unexpired ones.
pub async fn blocking(
    tx: &mut PgConnection,
    contacts: &[Uuid],
    survey: Uuid,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<StoredInvitation>> {
    sqlx::query_as(concat!(
        "SELECT ",
        invitation_columns!(),
        " FROM feedback.invitations \
          WHERE contact_id = ANY($1) \
            AND (create_time > $3 \
                 OR (survey_id = $2 AND complete_time IS NULL AND expire_time > $4)) \
          ORDER BY create_time DESC"
    ))
    .bind(contacts)
    .bind(survey)
    .bind(since)
    .bind(now)
    .fetch_all(tx)
    .await
}

/// Of `contacts`, those erased at the contacts service.
pub async fn erased_among(tx: &mut PgConnection, contacts: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT contact_id FROM feedback.erased_contacts WHERE contact_id = ANY($1)")
        .bind(contacts)
        .fetch_all(tx)
        .await
}

/// Invitations to contacts issued in the range, and how many were answered:
/// for the parts of days the running counts cannot answer.
pub async fn counts(
    tx: &mut PgConnection,
    survey: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*), count(complete_time) FROM feedback.invitations \
         WHERE survey_id = $1 AND NOT anonymous AND create_time >= $2 AND create_time < $3",
    )
    .bind(survey)
    .bind(start)
    .bind(end)
    .fetch_one(tx)
    .await
}

/// The invitations `ids`, whatever their tenant when read with `app.feed`
/// on (the feed's snapshot).
pub async fn get_many(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<StoredInvitation>> {
    sqlx::query_as(concat!(
        "SELECT ",
        invitation_columns!(),
        " FROM feedback.invitations WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(tx)
    .await
}

/// A page of `contact`'s invitations, oldest first, after `after`: for the
/// contact's export.
pub async fn of_contact(
    tx: &mut PgConnection,
    contact: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredInvitation>> {
    sqlx::query_as(concat!(
        "SELECT ",
        invitation_columns!(),
        " FROM feedback.invitations WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) \
          ORDER BY id LIMIT $3"
    ))
    .bind(contact)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await
}
