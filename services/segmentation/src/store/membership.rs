//! Who is in which segment: reading memberships and their history, and
//! changing a list's members by id (each entry and exit recorded in the
//! history and on the feed).

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_proto::segmentation::v1::{ChangeCause, Membership, MembershipChange};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::changes::{self, SegmentChanges};
use crate::domain::segment::Cause;

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

// Reads of memberships name the tenant although row-level security
// keeps to it: the feed snapshot's policy is ORed with the tenant's, and
// an OR in the filter would keep PostgreSQL from the indexes.

/// A page of a segment's members in contact id order.
pub async fn members(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Membership)>> {
    let rows: Vec<MembershipRow> = sqlx::query_as(
        "SELECT segment_id, contact_id, enter_time, rule_version FROM segmentation.memberships \
         WHERE tenant_id = $4 AND segment_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
         ORDER BY contact_id LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(limit)
    .bind(tenant)
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
    tenant: Uuid,
    segment: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT contact_id FROM segmentation.memberships \
         WHERE tenant_id = $4 AND segment_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
         ORDER BY contact_id LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(limit)
    .bind(tenant)
    .fetch_all(tx)
    .await
}

/// The segments (not archived) `contact` is a member of.
pub async fn of_contact(
    tx: &mut PgConnection,
    tenant: Uuid,
    contact: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Membership)>> {
    let rows: Vec<MembershipRow> = sqlx::query_as(
        "SELECT m.segment_id, m.contact_id, m.enter_time, m.rule_version \
         FROM segmentation.memberships m \
         JOIN segmentation.segments s ON s.tenant_id = m.tenant_id AND s.id = m.segment_id \
         WHERE m.tenant_id = $2 AND m.contact_id = $1 AND s.archive_time IS NULL \
           AND ($3::uuid IS NULL OR m.segment_id > $3) \
         ORDER BY m.segment_id LIMIT $4",
    )
    .bind(contact)
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.segment_id, Membership::from(row)))
        .collect())
}

type ChangeRow = (i64, Uuid, Uuid, bool, DateTime<Utc>, i64, String);

fn change(row: ChangeRow) -> (i64, MembershipChange) {
    let (id, segment, contact, entered, at, rule_version, cause) = row;
    let cause = Cause::parse(&cause).map_or(ChangeCause::Unspecified, Cause::to_proto);
    (
        id,
        MembershipChange {
            segment_id: segment.to_string(),
            contact_id: contact.to_string(),
            entered,
            change_time: Some(to_timestamp(at)),
            rule_version,
            cause: cause.into(),
        },
    )
}

/// Every entry and exit of `contact`, oldest first.
pub async fn history_of_contact(
    tx: &mut PgConnection,
    contact: Uuid,
) -> sqlx::Result<Vec<MembershipChange>> {
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT id, segment_id, contact_id, entered, change_time, rule_version, cause \
         FROM segmentation.membership_changes WHERE contact_id = $1 ORDER BY id",
    )
    .bind(contact)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|row| change(row).1).collect())
}

/// A page of the entries and exits of `segment`, of `contact`, or of both
/// (at least one is given), newest first, before the change `before`.
pub async fn history(
    tx: &mut PgConnection,
    segment: Option<Uuid>,
    contact: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<(i64, MembershipChange)>> {
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT id, segment_id, contact_id, entered, change_time, rule_version, cause \
         FROM segmentation.membership_changes \
         WHERE ($1::uuid IS NULL OR segment_id = $1) AND ($2::uuid IS NULL OR contact_id = $2) \
           AND ($3::int8 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(segment)
    .bind(contact)
    .bind(before)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(change).collect())
}

/// A page of every tenant's current memberships, by contact, after
/// `after` (tenant, contact), for the feed's snapshot.
pub async fn snapshot_page(
    tx: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<((Uuid, Uuid), Vec<Membership>)>> {
    /// Tenant, contact, and the segments, enter times and versions of
    /// their memberships.
    type ContactRow = (Uuid, Uuid, Vec<Uuid>, Vec<DateTime<Utc>>, Vec<i64>);
    let rows: Vec<ContactRow> = sqlx::query_as(
        "SELECT tenant_id, contact_id, array_agg(segment_id ORDER BY segment_id), \
                array_agg(enter_time ORDER BY segment_id), array_agg(rule_version ORDER BY segment_id) \
         FROM segmentation.memberships \
         WHERE $1::uuid IS NULL OR (tenant_id, contact_id) > ($1, $2) \
         GROUP BY tenant_id, contact_id ORDER BY tenant_id, contact_id LIMIT $3",
    )
    .bind(after.map(|(tenant, _)| tenant))
    .bind(after.map(|(_, contact)| contact))
    .bind(limit)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, contact, segments, enter_times, versions)| {
            let memberships = segments
                .into_iter()
                .zip(enter_times)
                .zip(versions)
                .map(|((segment, enter_time), rule_version)| Membership {
                    segment_id: segment.to_string(),
                    contact_id: contact.to_string(),
                    enter_time: Some(to_timestamp(enter_time)),
                    rule_version,
                })
                .collect();
            ((tenant, contact), memberships)
        })
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
) -> anyhow::Result<usize> {
    let added = SegmentChanges {
        segment,
        rule_version: 0,
        entered: contacts.to_vec(),
        exited: Vec::new(),
    };
    changes::apply(tx, tenant, &[added], Cause::List, now).await
}

/// Removes `contacts` from list `segment`; returns how many were members.
pub async fn remove_from_list(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let removed = SegmentChanges {
        segment,
        rule_version: 0,
        entered: Vec::new(),
        exited: contacts.to_vec(),
    };
    changes::apply(tx, tenant, &[removed], Cause::List, now).await
}
