//! The tenant's feedback settings.

use chrono::{DateTime, Utc};
use rapport_proto::feedback::v1::FeedbackSettings;
use sqlx::PgConnection;
use uuid::Uuid;

/// The tenant's settings; the defaults when it never set any.
pub async fn get(tx: &mut PgConnection) -> sqlx::Result<FeedbackSettings> {
    let fatigue_days: Option<i32> =
        sqlx::query_scalar("SELECT fatigue_days FROM feedback.settings")
            .fetch_optional(tx)
            .await?;
    Ok(FeedbackSettings {
        fatigue_days: fatigue_days.unwrap_or_default(),
    })
}

pub async fn put(
    tx: &mut PgConnection,
    tenant: Uuid,
    settings: &FeedbackSettings,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO feedback.settings (tenant_id, fatigue_days, update_time) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET fatigue_days = $2, update_time = $3",
    )
    .bind(tenant)
    .bind(settings.fatigue_days)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}
