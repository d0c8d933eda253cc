//! The tenant's feedback settings.

use chrono::Utc;
use rapport_core::db::{begin_tenant, begin_tenant_read, finish_read};
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;

use super::FeedbackApi;
use crate::domain::survey::check_days;
use crate::store::settings as store;

impl FeedbackApi {
    pub(super) async fn get_settings(
        &self,
        ctx: &TenantContext,
    ) -> ApiResult<GetFeedbackSettingsResponse> {
        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let settings = store::get(&mut tx).await?;
        finish_read(tx);
        Ok(GetFeedbackSettingsResponse {
            settings: Some(settings),
        })
    }

    pub(super) async fn update_settings(
        &self,
        ctx: &TenantContext,
        req: UpdateFeedbackSettingsRequest,
    ) -> ApiResult<UpdateFeedbackSettingsResponse> {
        let mut violations = Violations::default();
        let patch = req.settings.unwrap_or_default();
        let paths = req.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            violations.add("update_mask", "name at least one field to update");
        }
        for path in &paths {
            if path != "fatigue_days" {
                violations.add(
                    "update_mask",
                    format!("{path:?} is not a setting; use \"fatigue_days\""),
                );
            }
        }
        check_days(patch.fatigue_days, "settings.fatigue_days", &mut violations);
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let mut settings = store::get(&mut tx).await?;
        settings.fatigue_days = patch.fatigue_days;
        store::put(&mut tx, ctx.tenant_id, &settings, Utc::now()).await?;
        tx.commit().await?;
        Ok(UpdateFeedbackSettingsResponse {
            settings: Some(settings),
        })
    }
}
