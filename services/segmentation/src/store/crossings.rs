//! When decay alone next changes a contact's verdict for a segment whose
//! rule has a lead score: noted as contacts are judged (each judgement
//! replaces the note) and for everyone at a build; the time sweep judges
//! again the contacts whose moment has come.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::compile::Compiled;

/// One judged contact's next crossing for a segment (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub segment: Uuid,
    pub contact: Uuid,
    pub at: Option<DateTime<Utc>>,
}

/// Replaces the notes of the contacts just judged.
pub async fn note(tx: &mut PgConnection, tenant: Uuid, crossings: &[Crossing]) -> sqlx::Result<()> {
    if crossings.is_empty() {
        return Ok(());
    }
    let segments: Vec<Uuid> = crossings.iter().map(|c| c.segment).collect();
    let contacts: Vec<Uuid> = crossings.iter().map(|c| c.contact).collect();
    let times: Vec<Option<DateTime<Utc>>> = crossings.iter().map(|c| c.at).collect();
    sqlx::query(
        "WITH given AS ( \
             SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[]) \
                 AS g(segment_id, contact_id, cross_time)), \
         gone AS ( \
             DELETE FROM segmentation.score_crossings c USING given g \
             WHERE c.tenant_id = $1 AND c.segment_id = g.segment_id \
               AND c.contact_id = g.contact_id AND g.cross_time IS NULL) \
         INSERT INTO segmentation.score_crossings (tenant_id, segment_id, contact_id, cross_time) \
         SELECT DISTINCT ON (segment_id, contact_id) $1, segment_id, contact_id, cross_time \
         FROM given WHERE cross_time IS NOT NULL \
         ON CONFLICT (tenant_id, segment_id, contact_id) \
         DO UPDATE SET cross_time = excluded.cross_time",
    )
    .bind(tenant)
    .bind(segments)
    .bind(contacts)
    .bind(times)
    .execute(tx)
    .await?;
    Ok(())
}

/// Replaces every note of `segment` with those of its `compiled` rule
/// over every contact (a build).
pub async fn note_all(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    compiled: &Compiled,
) -> anyhow::Result<()> {
    sqlx::query(
        "DELETE FROM segmentation.score_crossings WHERE tenant_id = $1 AND segment_id = $2",
    )
    .bind(tenant)
    .bind(segment)
    .execute(&mut *tx)
    .await?;
    let Some(crossing) = &compiled.crossing else {
        return Ok(());
    };
    let segment_param = compiled.next_param();
    let sql = format!(
        "INSERT INTO segmentation.score_crossings (tenant_id, segment_id, contact_id, cross_time) \
         SELECT $1, ${segment_param}, contact_id, cross_time FROM ( \
             SELECT p.contact_id, {crossing} AS cross_time FROM {from} WHERE p.tenant_id = $1) c \
         WHERE cross_time IS NOT NULL",
        from = compiled.from,
    );
    let args = compiled
        .arguments_with(&[segment])
        .map_err(anyhow::Error::msg)?;
    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .execute(tx)
        .await?;
    Ok(())
}

/// The contacts of `segment` whose noted moment is at or before `now`.
pub async fn due(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT contact_id FROM segmentation.score_crossings \
         WHERE tenant_id = $1 AND segment_id = $2 AND cross_time <= $3",
    )
    .bind(tenant)
    .bind(segment)
    .bind(now)
    .fetch_all(tx)
    .await
}
