//! A rule evaluated without a build: counted, sampled or estimated for a
//! preview, or taken apart leaf by leaf for one contact.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::compile::{Compiled, Scope, compile};
use crate::domain::explain::LeafFindings;
use crate::domain::rule::Rule;

/// How many contacts a sample for an estimate holds, at most.
pub const ESTIMATE_SAMPLE: i64 = 2000;

/// Sets the transaction's per-statement budget (and lets its hash joins
/// keep a tenant's contacts in memory).
pub async fn limit_statements(tx: &mut PgConnection, millis: u64) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('work_mem', '64MB', true)",
    )
    .bind(millis.max(1).to_string())
    .execute(tx)
    .await?;
    Ok(())
}

fn args(compiled: &Compiled) -> sqlx::Result<sqlx::postgres::PgArguments> {
    compiled.arguments().map_err(sqlx::Error::Encode)
}

/// How many contacts `rule` selects, and up to `sample` of them (the
/// first the plan finds, in id order), in one pass. An aggregate rather
/// than a LIMIT: a LIMIT would have PostgreSQL plan for the first rows
/// (nested loops) though the count needs them all.
pub async fn count_and_sample(
    tx: &mut PgConnection,
    tenant: Uuid,
    rule: &Rule,
    now: DateTime<Utc>,
    sample: i64,
) -> sqlx::Result<(i64, Vec<Uuid>)> {
    let compiled = compile(rule, tenant, now, &Scope::All);
    let sql = format!(
        "SELECT count(*), coalesce((array_agg(p.contact_id))[1:{sample}], '{{}}') \
         FROM {} WHERE {}",
        compiled.from, compiled.predicate
    );
    let (count, mut ids): (i64, Vec<Uuid>) =
        sqlx::query_as_with(sqlx::AssertSqlSafe(sql), args(&compiled)?)
            .fetch_one(tx)
            .await?;
    ids.sort_unstable();
    Ok((count, ids))
}

/// How many contacts the tenant has.
pub async fn contact_count(tx: &mut PgConnection, tenant: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM segmentation.profiles WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(tx)
        .await
}

/// A random sample of about `size` of the tenant's `total` contacts, and
/// how many of them `rule` selects.
pub async fn sampled_share(
    tx: &mut PgConnection,
    tenant: Uuid,
    rule: &Rule,
    now: DateTime<Utc>,
    total: i64,
) -> sqlx::Result<(i64, i64)> {
    let percent = (ESTIMATE_SAMPLE as f64 * 100.0 / total.max(1) as f64).min(100.0);
    let sampled: Vec<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM segmentation.profiles TABLESAMPLE BERNOULLI ($2) \
         WHERE tenant_id = $1 LIMIT $3",
    )
    .bind(tenant)
    .bind(percent)
    .bind(ESTIMATE_SAMPLE)
    .fetch_all(&mut *tx)
    .await?;
    if sampled.is_empty() {
        return Ok((0, 0));
    }
    let size = i64::try_from(sampled.len()).unwrap_or(i64::MAX);
    let compiled = compile(rule, tenant, now, &Scope::Contacts(sampled));
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        compiled.from, compiled.predicate
    );
    let matched: i64 = sqlx::query_scalar_with(sqlx::AssertSqlSafe(sql), args(&compiled)?)
        .fetch_one(tx)
        .await?;
    Ok((matched, size))
}

/// Each leaf of `rule` for `contact`: whether it holds and what was found;
/// `None` when segmentation does not know the contact.
pub async fn findings(
    tx: &mut PgConnection,
    tenant: Uuid,
    contact: Uuid,
    rule: &Rule,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<LeafFindings>> {
    let compiled = compile(rule, tenant, now, &Scope::Contacts(vec![contact]));
    let mut columns: Vec<String> = compiled
        .leaves
        .iter()
        .flat_map(|leaf| {
            [
                format!("coalesce({}, false)", leaf.matched),
                leaf.observed.clone(),
            ]
        })
        .collect();
    // A rule without leaves still needs the row, to know the contact.
    columns.push("true".to_owned());
    let sql = format!(
        "SELECT {} FROM {} WHERE p.tenant_id = $1 AND p.contact_id = ANY($2::uuid[])",
        columns.join(", "),
        compiled.from
    );
    let Some(row) = sqlx::query_with(sqlx::AssertSqlSafe(sql), args(&compiled)?)
        .fetch_optional(tx)
        .await?
    else {
        return Ok(None);
    };
    (0..compiled.leaves.len())
        .map(|i| Ok((row.try_get(2 * i)?, row.try_get(2 * i + 1)?)))
        .collect::<sqlx::Result<_>>()
        .map(Some)
}

/// Whether `contact` is a member of `segment` as last built or edited.
pub async fn is_member(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    contact: Uuid,
) -> sqlx::Result<bool> {
    // The tenant is named for the index (see store/membership.rs).
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM segmentation.memberships \
                        WHERE tenant_id = $3 AND segment_id = $1 AND contact_id = $2)",
    )
    .bind(segment)
    .bind(contact)
    .bind(tenant)
    .fetch_one(tx)
    .await
}
