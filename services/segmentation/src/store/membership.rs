//! Who is in which segment: reading memberships, and changing a list's
//! members by id (each entry and exit recorded in the history).

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_proto::segmentation::v1::{Membership, MembershipChange};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

#[derive(FromRow)]
struct MembershipRow {
    segment_id: Uuid,
    contact_id: Uuid,
    enter_time: DateTime<Utc>,
    rule_version: i64,
}

impl From<MembershipRow> for Membership {
    fn from(row: MembershipRow) -> Self {
        Membership {
            segment_id: row.segment_id.to_string(),
            contact_id: row.contact_id.to_string(),
            enter_time: Some(to_timestamp(row.enter_time)),
            rule_version: row.rule_version,
        }
    }
}

/// A page of a segment's members in contact id order.
pub async fn members(
    tx: &mut PgConnection,
    segment: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Membership)>> {
    let rows: Vec<MembershipRow> = sqlx::query_as(
        "SELECT segment_id, contact_id, enter_time, rule_version FROM segmentation.memberships \
         WHERE segment_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
         ORDER BY contact_id LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.contact_id, row.into()))
        .collect())
}

/// Up to `limit` member ids after `after`, for exports.
pub async fn member_ids(
    tx: &mut PgConnection,
    segment: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT contact_id FROM segmentation.memberships \
         WHERE segment_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
         ORDER BY contact_id LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// The segments (not archived) `contact` is a member of.
pub async fn of_contact(tx: &mut PgConnection, contact: Uuid) -> sqlx::Result<Vec<Membership>> {
    let rows: Vec<MembershipRow> = sqlx::query_as(
        "SELECT m.segment_id, m.contact_id, m.enter_time, m.rule_version \
         FROM segmentation.memberships m \
         JOIN segmentation.segments s ON s.tenant_id = m.tenant_id AND s.id = m.segment_id \
         WHERE m.contact_id = $1 AND s.archive_time IS NULL ORDER BY m.segment_id",
    )
    .bind(contact)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(Membership::from).collect())
}

/// Every entry and exit of `contact`, oldest first.
pub async fn history_of_contact(
    tx: &mut PgConnection,
    contact: Uuid,
) -> sqlx::Result<Vec<MembershipChange>> {
    let rows: Vec<(Uuid, bool, DateTime<Utc>, i64, String)> = sqlx::query_as(
        "SELECT segment_id, entered, change_time, rule_version, cause \
         FROM segmentation.membership_changes WHERE contact_id = $1 \
         ORDER BY change_time, segment_id",
    )
    .bind(contact)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(segment, entered, at, rule_version, cause)| MembershipChange {
                segment_id: segment.to_string(),
                contact_id: contact.to_string(),
                entered,
                change_time: Some(to_timestamp(at)),
                rule_version,
                cause,
            },
        )
        .collect())
}

/// Of `contacts`, those segmentation knows for the tenant.
pub async fn known_contacts(tx: &mut PgConnection, contacts: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT contact_id FROM segmentation.profiles WHERE contact_id = ANY($1) ORDER BY contact_id",
    )
    .bind(contacts)
    .fetch_all(tx)
    .await
}

/// Adds `contacts` to list `segment`; returns how many were not members.
pub async fn add_to_list(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let added: i64 = sqlx::query_scalar(
        "WITH added AS ( \
             INSERT INTO segmentation.memberships (tenant_id, segment_id, contact_id, enter_time, rule_version) \
             SELECT $1, $2, unnest($3::uuid[]), $4, 0 ON CONFLICT DO NOTHING RETURNING contact_id), \
         history AS ( \
             INSERT INTO segmentation.membership_changes \
                 (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
             SELECT $1, $2, contact_id, true, $4, 0, 'list' FROM added) \
         SELECT count(*) FROM added",
    )
    .bind(tenant)
    .bind(segment)
    .bind(contacts)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    adjust_count(tx, segment, added).await?;
    Ok(added)
}

/// Removes `contacts` from list `segment`; returns how many were members.
pub async fn remove_from_list(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let removed: i64 = sqlx::query_scalar(
        "WITH removed AS ( \
             DELETE FROM segmentation.memberships WHERE segment_id = $2 AND contact_id = ANY($3) \
             RETURNING contact_id), \
         history AS ( \
             INSERT INTO segmentation.membership_changes \
                 (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
             SELECT $1, $2, contact_id, false, $4, 0, 'list' FROM removed) \
         SELECT count(*) FROM removed",
    )
    .bind(tenant)
    .bind(segment)
    .bind(contacts)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    adjust_count(tx, segment, -removed).await?;
    Ok(removed)
}

async fn adjust_count(tx: &mut PgConnection, segment: Uuid, by: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE segmentation.segments SET member_count = member_count + $2 WHERE id = $1")
        .bind(segment)
        .bind(by)
        .execute(tx)
        .await?;
    Ok(())
}
