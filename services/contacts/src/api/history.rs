//! Lifecycle stage and consent: changing them, and their histories.

use chrono::{DateTime, Utc};
use rapport_core::db::finish_read;
use rapport_core::pagination::Page;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::common::v1::LifecycleStage;
use rapport_proto::contacts::v1::*;
use uuid::Uuid;

use super::{ContactsApi, DEFAULT_SOURCE, found};
use crate::domain::contact::{self, ContactFields, StoredContact};
use crate::domain::rules;
use crate::store::contact as store;
use crate::store::history::{self, History, HistoryEntry};

impl ContactsApi {
    pub(super) async fn list_lifecycle_history(
        &self,
        ctx: &TenantContext,
        req: ListLifecycleHistoryRequest,
    ) -> ApiResult<ListLifecycleHistoryResponse> {
        let (changes, next_page_token) = self
            .history_page(
                ctx,
                History::Lifecycle,
                &req.contact_id,
                (req.page_size, &req.page_token),
                HistoryEntry::to_lifecycle_change,
            )
            .await?;
        Ok(ListLifecycleHistoryResponse {
            changes,
            next_page_token,
        })
    }

    pub(super) async fn list_consent_history(
        &self,
        ctx: &TenantContext,
        req: ListConsentHistoryRequest,
    ) -> ApiResult<ListConsentHistoryResponse> {
        let (changes, next_page_token) = self
            .history_page(
                ctx,
                History::Consent,
                &req.contact_id,
                (req.page_size, &req.page_token),
                HistoryEntry::to_consent_change,
            )
            .await?;
        Ok(ListConsentHistoryResponse {
            changes,
            next_page_token,
        })
    }

    pub(super) async fn change_lifecycle_stage(
        &self,
        ctx: &TenantContext,
        req: ChangeLifecycleStageRequest,
    ) -> ApiResult<ChangeLifecycleStageResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("contact_id", &req.contact_id);
        let stage = match LifecycleStage::try_from(req.lifecycle_stage) {
            Ok(stage) if stage != LifecycleStage::Unspecified => stage,
            _ => {
                violations.add(
                    "lifecycle_stage",
                    "must be a lifecycle stage such as LIFECYCLE_STAGE_PURCHASE",
                );
                LifecycleStage::Unspecified
            }
        };
        if let Err(e) = rules::check_text(&req.source, rules::MAX_SOURCE_LEN) {
            violations.add("source", e);
        }
        violations.check()?;

        let source = if req.source.is_empty() {
            DEFAULT_SOURCE
        } else {
            &req.source
        };
        let stored = self
            .change_fields(ctx, id, source, now, |fields| {
                fields.lifecycle_stage = stage;
            })
            .await?;
        Ok(ChangeLifecycleStageResponse {
            contact: Some(stored.to_proto()),
        })
    }

    pub(super) async fn change_consent(
        &self,
        ctx: &TenantContext,
        req: ChangeConsentRequest,
    ) -> ApiResult<ChangeConsentResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let id = violations.parse_id("contact_id", &req.contact_id);
        let state = match &req.consent {
            Some(consent) => contact::validate_consent(
                consent,
                now,
                &|name| format!("consent.{name}"),
                &mut violations,
            ),
            None => {
                violations.add("consent", "is required");
                None
            }
        };
        violations.check()?;
        let state = state.expect("a valid consent has a state");

        let stored = self
            .change_fields(ctx, id, DEFAULT_SOURCE, now, |fields| {
                fields.set_consent(state);
            })
            .await?;
        Ok(ChangeConsentResponse {
            contact: Some(stored.to_proto()),
        })
    }

    /// Applies `change` to contact `id`'s fields in one transaction at
    /// `now`; the history it leaves is recorded under `source`.
    async fn change_fields(
        &self,
        ctx: &TenantContext,
        id: Uuid,
        source: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut ContactFields),
    ) -> ApiResult<StoredContact> {
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = found(store::lookup(&mut tx, id, true).await?, id)?;
        let mut fields = existing.fields.clone();
        change(&mut fields);
        let stored = store::save_contact(
            &mut tx,
            ctx.tenant_id,
            id,
            Some(&existing),
            fields,
            source,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// A page of a contact's history of `kind`, newest first, as `to_proto`
    /// shows each entry; `(page_size, page_token)` as the request gave them.
    async fn history_page<M: prost::Message>(
        &self,
        ctx: &TenantContext,
        kind: History,
        contact_id: &str,
        (requested_size, page_token): (i32, &str),
        to_proto: fn(&HistoryEntry) -> M,
    ) -> ApiResult<(Vec<M>, String)> {
        let mut violations = Violations::default();
        let id = violations.parse_id("contact_id", contact_id);
        // A token continues the history of the same contact only.
        let page: Page<Uuid> = Page::read(
            requested_size,
            page_token,
            &contact_id.to_owned(),
            &mut violations,
        );
        violations.check()?;

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        found(store::lookup(&mut tx, id, false).await?, id)?;
        let entries = history::list(&mut tx, kind, id, page.after, page.fetch(), true).await?;
        finish_read(tx);
        Ok(page.finish(
            entries
                .iter()
                .map(|(id, entry)| (*id, to_proto(entry)))
                .collect(),
        ))
    }
}
