//! Entries and exits found by the per-contact evaluator, written: the
//! memberships, their history, the segments' counts and the feed's
//! `segment.entered` / `segment.exited`, in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

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

/// Writes `changes` with `cause`; returns how many entries and exits were
/// written (one already made by a concurrent build is not made again).
pub async fn apply(
    tx: &mut PgConnection,
    tenant: Uuid,
    changes: &[SegmentChanges],
    cause: Cause,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut feed = Vec::new();
    for change in changes {
        let (entered, exited): (Vec<Uuid>, Vec<Uuid>) = sqlx::query_as(
            "WITH entered AS ( \
                 INSERT INTO segmentation.memberships \
                     (tenant_id, segment_id, contact_id, enter_time, rule_version) \
                 SELECT $1, $2, unnest($3::uuid[]), $5, $6 \
                 ON CONFLICT DO NOTHING RETURNING contact_id), \
             exited AS ( \
                 DELETE FROM segmentation.memberships \
                 WHERE tenant_id = $1 AND segment_id = $2 AND contact_id = ANY($4) \
                 RETURNING contact_id), \
             recorded AS ( \
                 INSERT INTO segmentation.membership_changes \
                     (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
                 SELECT $1, $2, contact_id, true, $5, $6, $7 FROM entered \
                 UNION ALL \
                 SELECT $1, $2, contact_id, false, $5, $6, $7 FROM exited), \
             counted AS ( \
                 UPDATE segmentation.segments SET member_count = member_count \
                     + (SELECT count(*) FROM entered) - (SELECT count(*) FROM exited) \
                 WHERE id = $2) \
             SELECT coalesce((SELECT array_agg(contact_id) FROM entered), '{}'), \
                    coalesce((SELECT array_agg(contact_id) FROM exited), '{}')",
        )
        .bind(tenant)
        .bind(change.segment)
        .bind(&change.entered)
        .bind(&change.exited)
        .bind(now)
        .bind(change.rule_version)
        .bind(cause.as_str())
        .fetch_one(&mut *tx)
        .await?;
        feed.extend(entered.iter().map(|contact| {
            events::segment_entered(change.segment, *contact, change.rule_version, cause, now)
        }));
        feed.extend(exited.iter().map(|contact| {
            events::segment_exited(change.segment, *contact, change.rule_version, cause, now)
        }));
    }
    let written = feed.len();
    events::OUTBOX.write(tx, tenant, feed, now).await?;
    Ok(written)
}
