//! Scoring models: stored as their proto (rules and half-life), with a
//! revision for etags; read back checked for the rules that name them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message as _;
use rapport_core::Violations;
use rapport_core::convert::to_timestamp;
use rapport_proto::segmentation::v1::{Rule as PbRule, ScoringModel, ScoringRule};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::rule::Rule;
use crate::domain::scoring::{self, Models};
use crate::domain::validate;

#[derive(FromRow)]
struct ModelRow {
    id: Uuid,
    name: String,
    description: String,
    rules: Vec<u8>,
    half_life_seconds: i64,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// The stored rules: a `ScoringModel` holding only them.
fn encode_rules(rules: &[ScoringRule]) -> Vec<u8> {
    ScoringModel {
        rules: rules.to_vec(),
        ..Default::default()
    }
    .encode_to_vec()
}

impl ModelRow {
    fn into_model(self) -> sqlx::Result<ScoringModel> {
        let rules = ScoringModel::decode(self.rules.as_slice())
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?
            .rules;
        Ok(ScoringModel {
            id: self.id.to_string(),
            name: self.name,
            description: self.description,
            rules,
            half_life: Some(prost_types::Duration {
                seconds: self.half_life_seconds,
                nanos: 0,
            }),
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
            etag: self.revision.to_string(),
        })
    }
}

const COLUMNS: &str =
    "id, name, description, rules, half_life_seconds, revision, create_time, update_time";

fn half_life_seconds(model: &ScoringModel) -> i64 {
    model.half_life.map_or(0, |d| d.seconds)
}

/// Stores a new model `id` (checked).
pub async fn insert(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    model: &ScoringModel,
    now: DateTime<Utc>,
) -> sqlx::Result<ScoringModel> {
    let row: ModelRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO segmentation.scoring_models \
             (tenant_id, id, name, description, rules, half_life_seconds, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(model.name.trim())
    .bind(&model.description)
    .bind(encode_rules(&model.rules))
    .bind(half_life_seconds(model))
    .bind(now)
    .fetch_one(tx)
    .await?;
    row.into_model()
}

/// Model `id`, locked for the rest of the transaction when `lock`.
pub async fn get(
    tx: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> sqlx::Result<Option<ScoringModel>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row: Option<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM segmentation.scoring_models WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(tx)
    .await?;
    row.map(ModelRow::into_model).transpose()
}

/// A page of the tenant's models by name, then id, after `after`.
pub async fn list(
    tx: &mut PgConnection,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<((String, Uuid), ScoringModel)>> {
    let rows: Vec<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM segmentation.scoring_models \
         WHERE $1::text IS NULL OR (name, id) > ($1, $2) ORDER BY name, id LIMIT $3"
    )))
    .bind(after.as_ref().map(|(name, _)| name.clone()))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|row| {
            let key = (row.name.clone(), row.id);
            Ok((key, row.into_model()?))
        })
        .collect()
}

/// Replaces model `id`'s fields with `model`'s (checked), a new revision.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    model: &ScoringModel,
    now: DateTime<Utc>,
) -> sqlx::Result<ScoringModel> {
    let row: ModelRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE segmentation.scoring_models SET name = $2, description = $3, rules = $4, \
             half_life_seconds = $5, revision = revision + 1, update_time = $6 \
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(model.name.trim())
    .bind(&model.description)
    .bind(encode_rules(&model.rules))
    .bind(half_life_seconds(model))
    .bind(now)
    .fetch_one(tx)
    .await?;
    row.into_model()
}

/// Deletes model `id`; false if there was none.
pub async fn delete(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM segmentation.scoring_models WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Models `ids` (those that exist), checked, for the rules that name them;
/// with `hold`, held against deletion until the transaction ends (for a
/// rule about to be saved).
pub async fn named(tx: &mut PgConnection, ids: &[Uuid], hold: bool) -> sqlx::Result<Models> {
    if ids.is_empty() {
        return Ok(Models::new());
    }
    let hold = if hold { " FOR SHARE" } else { "" };
    let rows: Vec<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM segmentation.scoring_models WHERE id = ANY($1){hold}"
    )))
    .bind(ids)
    .fetch_all(tx)
    .await?;
    checked(rows)
}

/// Every model of the tenant, checked: what stored rules are judged with.
pub async fn all(tx: &mut PgConnection) -> sqlx::Result<Models> {
    let rows: Vec<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM segmentation.scoring_models"
    )))
    .fetch_all(tx)
    .await?;
    checked(rows)
}

fn checked(rows: Vec<ModelRow>) -> sqlx::Result<Models> {
    let mut models = Models::new();
    for row in rows {
        let model = row.into_model()?;
        let id = Uuid::parse_str(&model.id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        match scoring::validate(&model, "model", &mut Violations::default()) {
            Some(checked) => {
                models.insert(id, Arc::new(checked));
            }
            None => {
                tracing::warn!(model = %id, "a stored scoring model no longer passes its checks")
            }
        }
    }
    Ok(models)
}

/// The live segments whose rules name model `id`.
pub async fn used_by(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT r.segment_id FROM segmentation.model_references r \
         JOIN segmentation.segments s ON s.tenant_id = r.tenant_id AND s.id = r.segment_id \
         WHERE r.model_id = $1 AND s.archive_time IS NULL ORDER BY r.segment_id",
    )
    .bind(id)
    .fetch_all(tx)
    .await
}

/// A stored rule read back checked, with the models it names; `None` if it
/// no longer passes its checks.
pub async fn stored_rule(tx: &mut PgConnection, rule: &PbRule) -> sqlx::Result<Option<Rule>> {
    let models = named(tx, &validate::named_models(rule), false).await?;
    Ok(validate::stored(rule, &models))
}
