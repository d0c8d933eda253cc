//! The responses each survey's anonymous link began in the current clock
//! hour.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Counts one more response begun from `survey`'s anonymous link in the
/// hour starting at `hour`, unless `limit` were reached: then nothing is
/// counted and `false` is returned. The first count of an hour forgets the
/// survey's earlier hours.
pub async fn count_response(
    tx: &mut PgConnection,
    tenant: Uuid,
    survey: Uuid,
    hour: DateTime<Utc>,
    limit: i32,
) -> sqlx::Result<bool> {
    let counted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO feedback.anonymous_link_hours (tenant_id, survey_id, hour, responses) \
         VALUES ($1, $2, $3, 1) \
         ON CONFLICT (tenant_id, survey_id, hour) DO UPDATE \
             SET responses = anonymous_link_hours.responses + 1 \
             WHERE anonymous_link_hours.responses < $4 \
         RETURNING responses",
    )
    .bind(tenant)
    .bind(survey)
    .bind(hour)
    .bind(limit)
    .fetch_optional(&mut *tx)
    .await?;
    if counted == Some(1) {
        sqlx::query(
            "DELETE FROM feedback.anonymous_link_hours \
             WHERE tenant_id = $1 AND survey_id = $2 AND hour < $3",
        )
        .bind(tenant)
        .bind(survey)
        .bind(hour)
        .execute(&mut *tx)
        .await?;
    }
    Ok(counted.is_some())
}
