//! Contacts: create, get, update, delete, list, batch upsert and merge.

use rapport_core::api::{etag, field_mask, non_empty};
use rapport_core::convert::optional_datetime;
use rapport_core::db::finish_read;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::common::v1::LifecycleStage;
use rapport_proto::contacts::v1::*;
use uuid::Uuid;

use super::{ContactsApi, DEFAULT_SOURCE, IDEMPOTENCY, found};
use crate::domain::contact::{self, ContactFields, StoredContact, UPDATABLE_FIELDS};
use crate::domain::merge;
use crate::domain::upsert::{self, Target};
use crate::store::contact::{self as store, ContactFilter};

impl ContactsApi {
    pub(super) async fn create(
        &self,
        ctx: &TenantContext,
        req: CreateContactRequest,
    ) -> ApiResult<CreateContactResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let fields = match &req.contact {
            Some(contact) => contact::validate(contact, "contact", now, &mut violations),
            None => {
                violations.add("contact", "is required");
                ContactFields::default()
            }
        };
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateContact",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let stored = store::save_contact(
            &mut tx,
            ctx.tenant_id,
            Uuid::now_v7(),
            None,
            fields,
            DEFAULT_SOURCE,
            now,
        )
        .await?;
        let response = CreateContactResponse {
            contact: Some(stored.to_proto()),
        };
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &[stored.id], now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn get(
        &self,
        ctx: &TenantContext,
        req: GetContactRequest,
    ) -> ApiResult<GetContactResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        // The common case, a live contact, takes one round trip; merged and
        // erased ids take the full lookup.
        if let Some(contact) = store::find_live(&self.db, ctx.tenant_id, id).await? {
            return Ok(GetContactResponse {
                contact: Some(contact.to_proto()),
            });
        }
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let contact = match store::lookup(&mut tx, id, false).await? {
            store::Lookup::Merged(survivor) => {
                found(store::lookup(&mut tx, survivor, false).await?, survivor)?
            }
            other => found(other, id)?,
        };
        finish_read(tx);
        Ok(GetContactResponse {
            contact: Some(contact.to_proto()),
        })
    }

    pub(super) async fn update(
        &self,
        ctx: &TenantContext,
        req: UpdateContactRequest,
    ) -> ApiResult<UpdateContactResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let patch = req.contact.unwrap_or_default();
        let id = violations.parse_id("contact.id", &patch.id);
        let paths = field_mask::paths(
            req.update_mask.as_ref(),
            &patch,
            &UPDATABLE_FIELDS,
            &mut violations,
        );
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = found(store::lookup(&mut tx, id, true).await?, id)?;
        etag::check(&req.etag, &existing.etag(), format_args!("contact {id}"))?;
        let mut updated = existing.to_proto();
        field_mask::apply(&mut updated, &patch, &paths);
        let mut violations = Violations::default();
        let fields = contact::validate(&updated, "contact", now, &mut violations);
        violations.check()?;
        let stored = store::save_contact(
            &mut tx,
            ctx.tenant_id,
            id,
            Some(&existing),
            fields,
            DEFAULT_SOURCE,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(UpdateContactResponse {
            contact: Some(stored.to_proto()),
        })
    }

    pub(super) async fn delete(
        &self,
        ctx: &TenantContext,
        req: DeleteContactRequest,
    ) -> ApiResult<DeleteContactResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let existing = found(store::lookup(&mut tx, id, true).await?, id)?;
        etag::check(&req.etag, &existing.etag(), format_args!("contact {id}"))?;
        store::delete_contact(&mut tx, ctx.tenant_id, id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(DeleteContactResponse {})
    }

    pub(super) async fn list(
        &self,
        ctx: &TenantContext,
        req: ListContactsRequest,
    ) -> ApiResult<ListContactsResponse> {
        let mut violations = Violations::default();
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &ListContactsRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            },
            &mut violations,
        );
        let lifecycle_stage = match LifecycleStage::try_from(req.lifecycle_stage) {
            Ok(LifecycleStage::Unspecified) => None,
            Ok(stage) => Some(stage),
            Err(_) => {
                violations.add("lifecycle_stage", "is not a known lifecycle stage");
                None
            }
        };
        let ids = violations.parse_distinct_ids("ids", &req.ids);
        let filter = ContactFilter {
            ids: (!ids.is_empty()).then_some(ids),
            email: non_empty(req.email),
            tag: non_empty(req.tag),
            lifecycle_stage,
            updated_since: optional_datetime(
                req.updated_since.as_ref(),
                "updated_since",
                &mut violations,
            ),
        };
        violations.check()?;

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let contacts =
            store::list_contacts(&mut tx, ctx.tenant_id, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let (contacts, next_page_token) =
            page.finish(contacts.iter().map(|c| (c.id, c.to_proto())).collect());
        Ok(ListContactsResponse {
            contacts,
            next_page_token,
        })
    }

    pub(super) async fn batch_upsert(
        &self,
        ctx: &TenantContext,
        req: BatchUpsertContactsRequest,
    ) -> ApiResult<BatchUpsertContactsResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let keys = upsert::check_batch(&req.contacts, now, &mut violations);
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "BatchUpsertContacts",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let existing = store::find_for_upsert(&mut tx, &keys.external_ids, &keys.emails).await?;
        let mut violations = Violations::default();
        let targets = upsert::match_items(&req.contacts, &existing, &mut violations);
        let mut response = BatchUpsertContactsResponse::default();
        for (i, (item, target)) in req.contacts.iter().zip(targets).enumerate() {
            let found = match target {
                Target::Create => None,
                Target::Update(found) => Some(found),
                Target::Conflict => continue,
            };
            let mut target = found.map(StoredContact::to_proto).unwrap_or_default();
            upsert::upsert_onto(&mut target, item);
            let fields =
                contact::validate(&target, &format!("contacts[{i}]"), now, &mut violations);
            if !violations.is_empty() {
                continue;
            }
            let id = found.map_or_else(Uuid::now_v7, |c| c.id);
            let stored = store::save_contact(
                &mut tx,
                ctx.tenant_id,
                id,
                found,
                fields,
                DEFAULT_SOURCE,
                now,
            )
            .await?;
            response.contacts.push(stored.to_proto());
            response.created.push(found.is_none());
        }
        violations.check()?;
        let ids: Vec<Uuid> = response
            .contacts
            .iter()
            .filter_map(|c| Uuid::parse_str(&c.id).ok())
            .collect();
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &ids, now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    pub(super) async fn merge(
        &self,
        ctx: &TenantContext,
        req: MergeContactsRequest,
    ) -> ApiResult<MergeContactsResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let survivor_id = violations.parse_id("survivor_id", &req.survivor_id);
        let duplicate_id = violations.parse_id("duplicate_id", &req.duplicate_id);
        if survivor_id == duplicate_id && !survivor_id.is_nil() {
            violations.add("duplicate_id", "must differ from survivor_id");
        }
        violations.check()?;

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        // Lock both rows in id order so that concurrent merges cannot deadlock.
        let (first, second) = if survivor_id < duplicate_id {
            (survivor_id, duplicate_id)
        } else {
            (duplicate_id, survivor_id)
        };
        let first_found = found(store::lookup(&mut tx, first, true).await?, first)?;
        let second_found = found(store::lookup(&mut tx, second, true).await?, second)?;
        let (survivor, duplicate) = if first == survivor_id {
            (first_found, second_found)
        } else {
            (second_found, first_found)
        };

        let merged = merge::merge(&survivor.fields, &duplicate.fields);
        let moved =
            store::fold_into(&mut tx, ctx.tenant_id, duplicate.id, survivor.id, now).await?;
        let source = format!("merge:{duplicate_id}");
        let stored = store::save_contact(
            &mut tx,
            ctx.tenant_id,
            survivor.id,
            Some(&survivor),
            merged,
            &source,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(MergeContactsResponse {
            contact: Some(stored.to_proto()),
            moved_event_count: i64::try_from(moved).unwrap_or(i64::MAX),
        })
    }
}
