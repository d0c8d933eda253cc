//! Builds: the queue of segments waiting for one, and the build itself,
//! which evaluates the segment's rule over every contact in one set-based
//! statement and writes only the difference from the previous membership
//! (entries and exits, each also recorded in the history).

use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use rapport_proto::segmentation::v1::{BuildState, Rule as PbRule, SegmentKind};
use sqlx::PgConnection;
use uuid::Uuid;

use super::compile::{Scope, compile};
use super::{crossings, sweep};
use crate::domain::reads::time_edges;
use crate::domain::rule::Rule;
use crate::domain::segment::Cause;
use crate::events;

/// Queues `segment` for a build (again, if it is queued already: a build
/// that is running then runs once more).
pub async fn request(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO segmentation.build_queue (tenant_id, segment_id, request_time) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, segment_id) DO UPDATE \
         SET generation = build_queue.generation + 1, request_time = excluded.request_time",
    )
    .bind(tenant)
    .bind(segment)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// A queued build a builder took.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub tenant: Uuid,
    pub segment: Uuid,
    pub generation: i64,
}

/// Takes the oldest queued build no one holds, leasing it until `now +
/// lease` (run with no tenant set).
pub async fn claim(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    lease: Duration,
) -> sqlx::Result<Option<Claimed>> {
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(10));
    let row: Option<(Uuid, Uuid, i64)> = sqlx::query_as(
        "UPDATE segmentation.build_queue q SET lease_until = $2 \
         FROM (SELECT tenant_id, segment_id FROM segmentation.build_queue \
               WHERE lease_until IS NULL OR lease_until < $1 \
               ORDER BY request_time LIMIT 1 FOR UPDATE SKIP LOCKED) next \
         WHERE q.tenant_id = next.tenant_id AND q.segment_id = next.segment_id \
         RETURNING q.tenant_id, q.segment_id, q.generation",
    )
    .bind(now)
    .bind(until)
    .fetch_optional(tx)
    .await?;
    Ok(row.map(|(tenant, segment, generation)| Claimed {
        tenant,
        segment,
        generation,
    }))
}

/// Ends a claimed entry once its build is recorded: removed, unless the
/// segment was queued again meanwhile (then it is free for the next build).
pub async fn release(tx: &mut PgConnection, claimed: &Claimed) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM segmentation.build_queue WHERE segment_id = $1 AND generation = $2")
        .bind(claimed.segment)
        .bind(claimed.generation)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE segmentation.build_queue SET lease_until = NULL WHERE segment_id = $1")
        .bind(claimed.segment)
        .execute(tx)
        .await?;
    Ok(())
}

/// What a build changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub rule_version: i64,
    pub entered: i64,
    pub exited: i64,
    pub members: i64,
    /// Who entered or left.
    pub changed: Vec<Uuid>,
}

/// What a build is to build.
pub struct Begun {
    pub rule: PbRule,
    pub rule_version: i64,
    /// The version of the previous build (0 before the first).
    pub built_version: i64,
}

/// The segment's rule to build, if it is still a dynamic segment that is
/// not archived. Waits for any other build of the same segment to end.
pub async fn begin(tx: &mut PgConnection, segment: Uuid) -> sqlx::Result<Option<Begun>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(segment)
        .execute(&mut *tx)
        .await?;
    let row: Option<(Option<Vec<u8>>, i64, i64)> = sqlx::query_as(
        "SELECT rule, rule_version, built_version FROM segmentation.segments \
         WHERE id = $1 AND kind = $2 AND archive_time IS NULL",
    )
    .bind(segment)
    .bind(SegmentKind::Dynamic as i16)
    .fetch_optional(tx)
    .await?;
    let Some((Some(bytes), rule_version, built_version)) = row else {
        return Ok(None);
    };
    let rule = PbRule::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some(Begun {
        rule,
        rule_version,
        built_version,
    }))
}

/// Evaluates `rule` (version `version`) over every contact of `tenant`
/// and writes the difference to the segment's membership: one statement,
/// so the members are never held by the service (only the ids of who
/// entered and left, for the feed's events, written in chunks). Records
/// the build, and sweeps the segment for time's effects from `now` on.
pub async fn build(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    rule: &Rule,
    version: i64,
    cause: Cause,
    now: DateTime<Utc>,
) -> anyhow::Result<BuildOutcome> {
    let started = std::time::Instant::now();
    // Hash joins over a tenant's contacts stay in memory.
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await?;
    let compiled = compile(rule, tenant, now, &Scope::All);
    let (segment_param, now_param, version_param, cause_param) = (
        compiled.next_param(),
        compiled.next_param() + 1,
        compiled.next_param() + 2,
        compiled.next_param() + 3,
    );
    let sql = format!(
        "WITH target AS MATERIALIZED ({members}), \
         entered AS ( \
             INSERT INTO segmentation.memberships (tenant_id, segment_id, contact_id, enter_time, rule_version) \
             SELECT $1, ${segment_param}, contact_id, ${now_param}, ${version_param} FROM target \
             ON CONFLICT DO NOTHING RETURNING contact_id), \
         exited AS ( \
             DELETE FROM segmentation.memberships m \
             WHERE m.tenant_id = $1 AND m.segment_id = ${segment_param} \
               AND NOT EXISTS (SELECT 1 FROM target t WHERE t.contact_id = m.contact_id) \
             RETURNING contact_id), \
         changes AS ( \
             INSERT INTO segmentation.membership_changes \
                 (tenant_id, segment_id, contact_id, entered, change_time, rule_version, cause) \
             SELECT $1, ${segment_param}, contact_id, true, ${now_param}, ${version_param}, ${cause_param}::text FROM entered \
             UNION ALL \
             SELECT $1, ${segment_param}, contact_id, false, ${now_param}, ${version_param}, ${cause_param}::text FROM exited \
             RETURNING contact_id, entered) \
         SELECT coalesce(array_agg(contact_id) FILTER (WHERE entered), '{{}}'), \
                coalesce(array_agg(contact_id) FILTER (WHERE NOT entered), '{{}}') FROM changes",
        members = compiled.members(),
    );
    let mut args = compiled.arguments().map_err(anyhow::Error::msg)?;
    use sqlx::Arguments as _;
    args.add(segment).map_err(anyhow::Error::msg)?;
    args.add(now).map_err(anyhow::Error::msg)?;
    args.add(version).map_err(anyhow::Error::msg)?;
    args.add(cause.as_str()).map_err(anyhow::Error::msg)?;
    let (entered, exited): (Vec<Uuid>, Vec<Uuid>) =
        sqlx::query_as_with(sqlx::AssertSqlSafe(sql), args)
            .fetch_one(&mut *tx)
            .await?;
    write_feed(
        tx,
        tenant,
        segment,
        version,
        (&entered, &exited),
        cause,
        now,
    )
    .await?;
    crossings::note_all(tx, tenant, segment, &compiled).await?;
    sweep::schedule(tx, tenant, segment, !time_edges(rule).is_empty(), now).await?;
    let (entered_count, exited_count) = (entered.len() as i64, exited.len() as i64);
    let mut changed = entered;
    changed.extend(exited);
    let millis = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let members: i64 = sqlx::query_scalar(
        "UPDATE segmentation.segments SET \
             member_count = member_count + $2 - $3, built_version = $4, \
             build_state = CASE WHEN rule_version = $4 THEN $5 ELSE build_state END, \
             build_finish_time = $6, entered_count = $2, exited_count = $3, \
             build_millis = $7, build_error = '' \
         WHERE id = $1 RETURNING member_count",
    )
    .bind(segment)
    .bind(entered_count)
    .bind(exited_count)
    .bind(version)
    .bind(BuildState::Ready as i16)
    .bind(now)
    .bind(millis)
    .fetch_one(&mut *tx)
    .await?;
    Ok(BuildOutcome {
        rule_version: version,
        entered: entered_count,
        exited: exited_count,
        members,
        changed,
    })
}

/// Events written per statement.
const FEED_CHUNK: usize = 10_000;

/// The feed's `segment.entered` and `segment.exited` of a build.
async fn write_feed(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    version: i64,
    (entered, exited): (&[Uuid], &[Uuid]),
    cause: Cause,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    for chunk in entered.chunks(FEED_CHUNK) {
        let feed = chunk
            .iter()
            .map(|contact| events::segment_entered(segment, *contact, version, cause, now))
            .collect();
        events::OUTBOX.write(tx, tenant, feed, now).await?;
    }
    for chunk in exited.chunks(FEED_CHUNK) {
        let feed = chunk
            .iter()
            .map(|contact| events::segment_exited(segment, *contact, version, cause, now))
            .collect();
        events::OUTBOX.write(tx, tenant, feed, now).await?;
    }
    Ok(())
}

/// Records that a build of `segment` failed, and why.
pub async fn record_failure(
    tx: &mut PgConnection,
    segment: Uuid,
    error: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE segmentation.segments SET build_state = $2, build_error = $3, \
             build_finish_time = $4 WHERE id = $1",
    )
    .bind(segment)
    .bind(BuildState::Failed as i16)
    .bind(error)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}
