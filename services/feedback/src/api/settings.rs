//! The tenant's feedback settings.

use rapport_core::api::field_mask;
use rapport_core::db::finish_read;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::feedback::v1::*;

use super::FeedbackApi;
use crate::domain::survey::check_days;
use crate::store::settings as store;

/// Fields UpdateFeedbackSettings may change.
const UPDATABLE: &[&str] = &["fatigue_days"];

impl FeedbackApi {
    pub(super) async fn get_settings(
        &self,
        ctx: &TenantContext,
    ) -> ApiResult<GetFeedbackSettingsResponse> {
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
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
        let paths = field_mask::paths(req.update_mask.as_ref(), &patch, UPDATABLE, &mut violations);
        check_days(patch.fatigue_days, "settings.fatigue_days", &mut violations);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let mut settings = store::get(&mut tx).await?;
        field_mask::apply(&mut settings, &patch, &paths);
        store::put(&mut tx, ctx.tenant_id, &settings, self.clock.now()).await?;
        tx.commit().await?;
        Ok(UpdateFeedbackSettingsResponse {
            settings: Some(settings),
        })
    }
}
