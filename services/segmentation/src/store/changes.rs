//! Entries and exits, written: the memberships, their history, the
//! segments' counts and the feed's `segment.entered` / `segment.exited`,
//! in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use rapport_proto::segmentation::v1::SegmentKind;

use crate::domain::segment::Cause;
use crate::events;

/// One segment's entries and exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentChanges {
    pub segment: Uuid,
    pub rule_version: i64,
    pub entered: Vec<Uuid>,
    pub exited: Vec<Uuid>,
}

/// Writes `changes` with `cause`, every segment's in one statement;
/// returns how many entries and exits were written (one already made by
/// a concurrent build is not made again).
pub async fn apply(
    tx: &mut PgConnection,
    tenant: Uuid,
    changes: &[SegmentChanges],
    cause: Cause,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let (mut segments, mut contacts, mut entering, mut versions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        for (moved, enters) in [(&change.entered, true), (&change.exited, false)] {
            for contact in moved {
                segments.push(change.segment);
                contacts.push(*contact);
                entering.push(enters);
                versions.push(change.rule_version);
            }
        }
    }
    if segments.is_empty() {
        return Ok(0);
    }
    let written: Vec<(Uuid, Uuid, i64, bool)> = sqlx::query_as(
        "WITH asked AS ( \
             SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::bool[], $5::int8[]) \
                 AS a(segment_id, contact_id, entering, version)), \
         entered AS ( \
             INSERT INTO segmentation.memberships \
                 (tenant_id, segment_id, contact_id, enter_time, rule_version) \
             SELECT $1, segment_id, contact_id, $6, version FROM asked WHERE entering \
             ON CONFLICT DO NOTHING RETURNING segment_id, contact_id, rule_version), \
         exited AS ( \
             DELETE FROM segmentation.memberships m USING asked a \
             WHERE m.tenant_id = $1 AND m.segment_id = a.segment_id \
               AND m.contact_id = a.contact_id AND NOT a.entering \
             RETURNING m.segment_id, m.contact_id, a.version), \
         changed AS ( \
             SELECT segment_id, contact_id, rule_version AS version, true AS entered FROM entered \
             UNION ALL SELECT segment_id, contact_id, version, false FROM exited), \
         recorded AS ( \
             INSERT INTO segmentation.membership_changes \
                 (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
             SELECT $1, segment_id, contact_id, entered, $6, version, $7 FROM changed), \
         counted AS ( \
             UPDATE segmentation.segments s SET member_count = s.member_count + d.delta \
             FROM (SELECT segment_id, sum(CASE WHEN entered THEN 1 ELSE -1 END) AS delta \
                   FROM changed GROUP BY segment_id) d \
             WHERE s.tenant_id = $1 AND s.id = d.segment_id) \
         SELECT segment_id, contact_id, version, entered FROM changed",
    )
    .bind(tenant)
    .bind(&segments)
    .bind(&contacts)
    .bind(&entering)
    .bind(&versions)
    .bind(now)
    .bind(cause.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let feed: Vec<_> = written
        .iter()
        .map(|(segment, contact, version, entered)| {
            if *entered {
                events::segment_entered(*segment, *contact, *version, cause, now)
            } else {
                events::segment_exited(*segment, *contact, *version, cause, now)
            }
        })
        .collect();
    events::OUTBOX.write(tx, tenant, feed, now).await?;
    Ok(written.len())
}

/// Takes `contact` out of every segment it is in, each exit recorded with
/// `cause` and put on the feed (a duplicate merged into another contact).
pub async fn leave_all(
    tx: &mut PgConnection,
    tenant: Uuid,
    contact: Uuid,
    cause: Cause,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let left: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH gone AS ( \
             DELETE FROM segmentation.memberships WHERE tenant_id = $1 AND contact_id = $2 \
             RETURNING segment_id), \
         versions AS ( \
             SELECT g.segment_id, CASE WHEN s.kind = $5 THEN 0 ELSE s.rule_version END AS version \
             FROM gone g JOIN segmentation.segments s ON s.tenant_id = $1 AND s.id = g.segment_id), \
         counted AS ( \
             UPDATE segmentation.segments SET member_count = member_count - 1 \
             WHERE tenant_id = $1 AND id IN (SELECT segment_id FROM gone)), \
         recorded AS ( \
             INSERT INTO segmentation.membership_changes \
                 (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
             SELECT $1, segment_id, $2, false, $3, version, $4 FROM versions) \
         SELECT segment_id, version FROM versions",
    )
    .bind(tenant)
    .bind(contact)
    .bind(now)
    .bind(cause.as_str())
    .bind(SegmentKind::List as i16)
    .fetch_all(&mut *tx)
    .await?;
    let feed = left
        .into_iter()
        .map(|(segment, version)| events::segment_exited(segment, contact, version, cause, now))
        .collect();
    events::OUTBOX.write(tx, tenant, feed, now).await
}
