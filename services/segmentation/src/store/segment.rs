//! Segments: their definition, their build record and their references to
//! other segments. A change that needs a build queues it in the same
//! transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message as _;
use rapport_core::convert::to_timestamp;
use rapport_proto::segmentation::v1::{Build, BuildState, Rule, Segment, SegmentKind};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::build;

macro_rules! segment_columns {
    () => {
        "id, name, description, kind, rule, rule_version, revision, create_time, update_time, \
         archive_time, purge_time, member_count, build_state, built_version, build_finish_time, \
         entered_count, exited_count, build_millis, build_error"
    };
}

#[derive(FromRow)]
struct SegmentRow {
    id: Uuid,
    name: String,
    description: String,
    kind: i16,
    rule: Option<Vec<u8>>,
    rule_version: i64,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    archive_time: Option<DateTime<Utc>>,
    purge_time: Option<DateTime<Utc>>,
    member_count: i64,
    build_state: i16,
    built_version: i64,
    build_finish_time: Option<DateTime<Utc>>,
    entered_count: i64,
    exited_count: i64,
    build_millis: i64,
    build_error: String,
}

impl SegmentRow {
    fn into_segment(self) -> sqlx::Result<Segment> {
        let rule = self
            .rule
            .map(|bytes| Rule::decode(bytes.as_slice()))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let dynamic = self.kind == SegmentKind::Dynamic as i16;
        Ok(Segment {
            id: self.id.to_string(),
            name: self.name,
            description: self.description,
            kind: self.kind.into(),
            rule,
            rule_version: self.rule_version,
            build: dynamic.then(|| Build {
                state: self.build_state.into(),
                built_version: self.built_version,
                finish_time: self.build_finish_time.map(to_timestamp),
                entered_count: self.entered_count,
                exited_count: self.exited_count,
                duration: Some(prost_types::Duration {
                    seconds: self.build_millis / 1000,
                    nanos: i32::try_from(self.build_millis % 1000).unwrap_or(0) * 1_000_000,
                }),
                error: self.build_error,
            }),
            member_count: self.member_count,
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
            archive_time: self.archive_time.map(to_timestamp),
            purge_time: self.purge_time.map(to_timestamp),
            etag: self.revision.to_string(),
        })
    }
}

/// A dynamic segment that is not archived, with its stored rule.
pub struct LiveRule {
    pub id: Uuid,
    pub rule_version: i64,
    pub rule: Rule,
}

fn live_rule_row(row: (Uuid, i64, Vec<u8>)) -> sqlx::Result<LiveRule> {
    let (id, rule_version, bytes) = row;
    let rule = Rule::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(LiveRule {
        id,
        rule_version,
        rule,
    })
}

/// The tenant's dynamic segments that are not archived.
pub async fn live_rules(tx: &mut PgConnection) -> sqlx::Result<Vec<LiveRule>> {
    let rows: Vec<(Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, rule_version, rule FROM segmentation.segments \
         WHERE kind = $1 AND archive_time IS NULL AND rule IS NOT NULL ORDER BY id",
    )
    .bind(SegmentKind::Dynamic as i16)
    .fetch_all(tx)
    .await?;
    rows.into_iter().map(live_rule_row).collect()
}

/// Segment `id`, if it is dynamic and not archived.
pub async fn live_rule(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LiveRule>> {
    let row: Option<(Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, rule_version, rule FROM segmentation.segments \
         WHERE id = $1 AND kind = $2 AND archive_time IS NULL AND rule IS NOT NULL",
    )
    .bind(id)
    .bind(SegmentKind::Dynamic as i16)
    .fetch_optional(tx)
    .await?;
    row.map(live_rule_row).transpose()
}

/// Whether to lock the row for the rest of the transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    None,
    Update,
}

pub async fn get(tx: &mut PgConnection, id: Uuid, lock: Lock) -> sqlx::Result<Option<Segment>> {
    let suffix = if lock == Lock::Update {
        " FOR UPDATE"
    } else {
        ""
    };
    let row: Option<SegmentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM segmentation.segments WHERE id = $1{suffix}",
        segment_columns!()
    )))
    .bind(id)
    .fetch_optional(tx)
    .await?;
    row.map(SegmentRow::into_segment).transpose()
}

/// Stores a new segment; a dynamic one is queued for its first build.
pub async fn insert(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    segment: &Segment,
    references: &References,
    now: DateTime<Utc>,
) -> sqlx::Result<Segment> {
    let dynamic = segment.kind == SegmentKind::Dynamic as i32;
    let state = if dynamic {
        BuildState::Pending
    } else {
        BuildState::Ready
    };
    let row: SegmentRow = sqlx::query_as(concat!(
        "INSERT INTO segmentation.segments (tenant_id, id, name, description, kind, rule, \
             rule_version, create_time, update_time, build_state) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8) RETURNING ",
        segment_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(segment.name.trim())
    .bind(&segment.description)
    .bind(i16::try_from(segment.kind).unwrap_or_default())
    .bind(segment.rule.as_ref().map(|rule| rule.encode_to_vec()))
    .bind(now)
    .bind(state as i16)
    .fetch_one(&mut *tx)
    .await?;
    set_references(tx, tenant, id, references).await?;
    if dynamic {
        build::request(tx, tenant, id, now).await?;
    }
    row.into_segment()
}

/// What an update changes; `rule` only when the rule changed.
pub struct Change<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub rule: Option<(&'a Rule, &'a References)>,
}

/// What a rule names: other segments, and scoring models.
#[derive(Debug, Default)]
pub struct References {
    pub segments: Vec<Uuid>,
    pub models: Vec<Uuid>,
}

impl References {
    pub fn of(rule: &crate::domain::rule::Rule) -> Self {
        References {
            segments: rule.referenced_segments(),
            models: rule.referenced_models(),
        }
    }
}

/// Applies `change`; a new rule is a new version, queued for a build.
pub async fn update(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Segment> {
    let rule = change.rule.map(|(rule, _)| rule.encode_to_vec());
    let row: SegmentRow = sqlx::query_as(concat!(
        "UPDATE segmentation.segments SET name = $2, description = $3, \
             rule = coalesce($4, rule), \
             rule_version = rule_version + CASE WHEN $4 IS NULL THEN 0 ELSE 1 END, \
             build_state = CASE WHEN $4 IS NULL THEN build_state ELSE $5 END, \
             revision = revision + 1, update_time = $6 \
         WHERE id = $1 RETURNING ",
        segment_columns!()
    ))
    .bind(id)
    .bind(change.name.trim())
    .bind(change.description)
    .bind(rule)
    .bind(BuildState::Pending as i16)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if let Some((_, references)) = change.rule {
        set_references(tx, tenant, id, references).await?;
        build::request(tx, tenant, id, now).await?;
    }
    row.into_segment()
}

async fn set_references(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    references: &References,
) -> sqlx::Result<()> {
    for (table, column, ids) in [
        ("segment_references", "referenced_id", &references.segments),
        ("model_references", "model_id", &references.models),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM segmentation.{table} WHERE segment_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO segmentation.{table} (tenant_id, segment_id, {column}) \
             SELECT $1, $2, unnest($3::uuid[])"
        )))
        .bind(tenant)
        .bind(id)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// What each segment's rule names, for finding cycles.
pub async fn reference_graph(tx: &mut PgConnection) -> sqlx::Result<HashMap<Uuid, Vec<Uuid>>> {
    let rows: Vec<(Uuid, Vec<Uuid>)> = sqlx::query_as(
        "SELECT segment_id, array_agg(referenced_id) FROM segmentation.segment_references \
         GROUP BY segment_id",
    )
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Of `ids`, those that are no segment of the tenant, and those archived.
pub async fn unusable(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<(Vec<Uuid>, Vec<Uuid>)> {
    let found: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT id, archive_time IS NOT NULL FROM segmentation.segments WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(tx)
    .await?;
    let missing = ids
        .iter()
        .filter(|id| !found.iter().any(|(found, _)| found == *id))
        .copied()
        .collect();
    let archived = found
        .into_iter()
        .filter_map(|(id, archived)| archived.then_some(id))
        .collect();
    Ok((missing, archived))
}

/// Segments not archived whose rules name `id`.
pub async fn referenced_by(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT r.segment_id FROM segmentation.segment_references r \
         JOIN segmentation.segments s ON s.tenant_id = r.tenant_id AND s.id = r.segment_id \
         WHERE r.referenced_id = $1 AND s.archive_time IS NULL ORDER BY r.segment_id",
    )
    .bind(id)
    .fetch_all(tx)
    .await
}

pub struct SegmentFilter {
    pub kind: Option<SegmentKind>,
    pub show_archived: bool,
}

pub async fn list(
    tx: &mut PgConnection,
    filter: &SegmentFilter,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Segment)>> {
    let rows: Vec<SegmentRow> = sqlx::query_as(concat!(
        "SELECT ",
        segment_columns!(),
        " FROM segmentation.segments \
         WHERE ($1::uuid IS NULL OR id > $1) AND ($2::int2 IS NULL OR kind = $2) \
           AND ($3 OR archive_time IS NULL) \
         ORDER BY id LIMIT $4"
    ))
    .bind(after)
    .bind(filter.kind.map(|kind| kind as i16))
    .bind(filter.show_archived)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|row| Ok((row.id, row.into_segment()?)))
        .collect()
}

/// Archives a segment until `purge_time`; it leaves the build queue.
pub async fn archive(
    tx: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    purge_time: DateTime<Utc>,
) -> sqlx::Result<Segment> {
    sqlx::query("DELETE FROM segmentation.build_queue WHERE segment_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let row: SegmentRow = sqlx::query_as(concat!(
        "UPDATE segmentation.segments SET archive_time = $2, purge_time = $3, \
             revision = revision + 1, update_time = $2 \
         WHERE id = $1 RETURNING ",
        segment_columns!()
    ))
    .bind(id)
    .bind(now)
    .bind(purge_time)
    .fetch_one(tx)
    .await?;
    row.into_segment()
}

/// Restores an archived segment; a dynamic one is built again, since its
/// data moved on while it was not kept current.
pub async fn undelete(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Segment> {
    let row: SegmentRow = sqlx::query_as(concat!(
        "UPDATE segmentation.segments SET archive_time = NULL, purge_time = NULL, \
             build_state = CASE WHEN kind = $3 THEN $4 ELSE build_state END, \
             revision = revision + 1, update_time = $2 \
         WHERE id = $1 RETURNING ",
        segment_columns!()
    ))
    .bind(id)
    .bind(now)
    .bind(SegmentKind::Dynamic as i16)
    .bind(BuildState::Pending as i16)
    .fetch_one(&mut *tx)
    .await?;
    if row.kind == SegmentKind::Dynamic as i16 {
        build::request(tx, tenant, id, now).await?;
    }
    row.into_segment()
}

/// Marks a dynamic segment's build pending and queues it.
pub async fn request_build(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Segment> {
    let row: SegmentRow = sqlx::query_as(concat!(
        "UPDATE segmentation.segments SET build_state = $2 WHERE id = $1 RETURNING ",
        segment_columns!()
    ))
    .bind(id)
    .bind(BuildState::Pending as i16)
    .fetch_one(&mut *tx)
    .await?;
    build::request(tx, tenant, id, now).await?;
    row.into_segment()
}

/// Archived segments past their purge time, of every tenant (run with
/// `app.purger` on and no tenant).
pub async fn due_for_purge(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as(
        "SELECT tenant_id, id FROM segmentation.segments WHERE purge_time <= $1 \
         ORDER BY purge_time LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Deletes an archived segment for good, with its membership and history.
pub async fn purge(tx: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<bool> {
    let deleted =
        sqlx::query("DELETE FROM segmentation.segments WHERE id = $1 AND purge_time <= $2")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if deleted == 0 {
        return Ok(false);
    }
    for table in [
        "segmentation.memberships",
        "segmentation.membership_changes",
        "segmentation.score_crossings",
        "segmentation.model_references",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE segment_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM segmentation.segment_references WHERE segment_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(true)
}
