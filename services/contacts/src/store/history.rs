//! A contact's lifecycle and consent histories.

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_proto::contacts::v1 as pb;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Which history to page through.
#[derive(Debug, Clone, Copy)]
pub enum History {
    Lifecycle,
    Consent,
}

/// A contact's history entries, newest first (or oldest first for exports),
/// after the entry id `after`.
pub async fn list(
    conn: &mut PgConnection,
    kind: History,
    contact_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
    newest_first: bool,
) -> sqlx::Result<Vec<(Uuid, HistoryEntry)>> {
    let query = match (kind, newest_first) {
        (History::Lifecycle, true) => {
            "SELECT id, 0::int2 AS channel, from_stage AS from_value, to_stage AS to_value, change_time, source \
             FROM contacts.lifecycle_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        }
        (History::Lifecycle, false) => {
            "SELECT id, 0::int2 AS channel, from_stage AS from_value, to_stage AS to_value, change_time, source \
             FROM contacts.lifecycle_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        }
        (History::Consent, true) => {
            "SELECT id, channel, from_status AS from_value, to_status AS to_value, change_time, source \
             FROM contacts.consent_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        }
        (History::Consent, false) => {
            "SELECT id, channel, from_status AS from_value, to_status AS to_value, change_time, source \
             FROM contacts.consent_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        }
    };
    let rows: Vec<HistoryRow> = sqlx::query_as(query)
        .bind(contact_id)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.entry)).collect())
}

#[derive(FromRow)]
struct HistoryRow {
    id: Uuid,
    #[sqlx(flatten)]
    entry: HistoryEntry,
}

/// One history entry: a lifecycle change (channel 0) or a consent change.
#[derive(Debug, FromRow)]
pub struct HistoryEntry {
    channel: i16,
    from_value: i16,
    to_value: i16,
    change_time: DateTime<Utc>,
    source: String,
}

impl HistoryEntry {
    pub fn to_lifecycle_change(&self) -> pb::LifecycleChange {
        pb::LifecycleChange {
            from_stage: self.from_value.into(),
            to_stage: self.to_value.into(),
            change_time: Some(to_timestamp(self.change_time)),
            source: self.source.clone(),
        }
    }

    pub fn to_consent_change(&self) -> pb::ConsentChange {
        pb::ConsentChange {
            channel: self.channel.into(),
            from_status: self.from_value.into(),
            to_status: self.to_value.into(),
            change_time: Some(to_timestamp(self.change_time)),
            source: self.source.clone(),
        }
    }
}

/// Every history entry of `kind` of the contacts `contact_ids`, oldest
/// first, with its contact: for the feed's snapshot.
pub async fn of_contacts(
    conn: &mut PgConnection,
    kind: History,
    contact_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, HistoryEntry)>> {
    let query = match kind {
        History::Lifecycle => {
            "SELECT contact_id AS id, 0::int2 AS channel, from_stage AS from_value, to_stage AS to_value, \
             change_time, source FROM contacts.lifecycle_history WHERE contact_id = ANY($1) ORDER BY id"
        }
        History::Consent => {
            "SELECT contact_id AS id, channel, from_status AS from_value, to_status AS to_value, \
             change_time, source FROM contacts.consent_history WHERE contact_id = ANY($1) ORDER BY id"
        }
    };
    let rows: Vec<HistoryRow> = sqlx::query_as(query)
        .bind(contact_ids)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.entry)).collect())
}
