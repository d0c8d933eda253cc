//! The `rapport.contacts.v1.ContactsService` implementation: each call is
//! authorized, validated in full before anything is written, run in one
//! tenant transaction, and its errors mapped to gRPC statuses.

use std::pin::Pin;

use chrono::Utc;
use futures::Stream;
use rapport_core::convert::optional_datetime;
use rapport_core::db::{begin_tenant, begin_tenant_read, finish_read};
use rapport_core::idempotency::{Claim, IdempotencyTable, check_request_id};
use rapport_core::pagination::Page;
use rapport_core::{Access, ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::contacts_service_server::ContactsService;
use rapport_proto::contacts::v1::*;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::contact::{self, ContactFields};
use crate::domain::event::{self, ContactRef};
use crate::domain::rules;
use crate::store::{self, ContactFilter, EventFilter, History, Lookup, TimelineCursor};

/// The scope service name: `contacts:read` / `contacts:write`.
const SCOPE: &str = "contacts";
const IDEMPOTENCY: IdempotencyTable = IdempotencyTable {
    table: "contacts.idempotency_keys",
};
/// Most contacts one BatchUpsertContacts call takes.
pub const MAX_UPSERT_BATCH: usize = 1000;
/// Timeline events per ExportContact message.
const EXPORT_CHUNK: i64 = 500;
/// History source recorded when a call names none.
const DEFAULT_SOURCE: &str = "api";

#[derive(Clone)]
pub struct ContactsApi {
    pool: PgPool,
}

impl ContactsApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type ApiStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn create_contact(
        &self,
        request: Request<CreateContactRequest>,
    ) -> Result<Response<CreateContactResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.create(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_contact(
        &self,
        request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_contact(
        &self,
        request: Request<UpdateContactRequest>,
    ) -> Result<Response<UpdateContactResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.update(&ctx, request.into_inner()).await?,
        ))
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.delete(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ListContactsResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn batch_upsert_contacts(
        &self,
        request: Request<BatchUpsertContactsRequest>,
    ) -> Result<Response<BatchUpsertContactsResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.batch_upsert(&ctx, request.into_inner()).await?,
        ))
    }

    async fn merge_contacts(
        &self,
        request: Request<MergeContactsRequest>,
    ) -> Result<Response<MergeContactsResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(self.merge(&ctx, request.into_inner()).await?))
    }

    async fn change_lifecycle_stage(
        &self,
        request: Request<ChangeLifecycleStageRequest>,
    ) -> Result<Response<ChangeLifecycleStageResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.change_lifecycle_stage(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn list_lifecycle_history(
        &self,
        request: Request<ListLifecycleHistoryRequest>,
    ) -> Result<Response<ListLifecycleHistoryResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        let req = request.into_inner();
        let (entries, next_page_token) = self
            .history_page(
                &ctx,
                History::Lifecycle,
                &req.contact_id,
                req.page_size,
                &req.page_token,
            )
            .await?;
        let changes = entries
            .iter()
            .map(store::HistoryEntry::to_lifecycle_change)
            .collect();
        Ok(Response::new(ListLifecycleHistoryResponse {
            changes,
            next_page_token,
        }))
    }

    async fn change_consent(
        &self,
        request: Request<ChangeConsentRequest>,
    ) -> Result<Response<ChangeConsentResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.change_consent(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_consent_history(
        &self,
        request: Request<ListConsentHistoryRequest>,
    ) -> Result<Response<ListConsentHistoryResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        let req = request.into_inner();
        let (entries, next_page_token) = self
            .history_page(
                &ctx,
                History::Consent,
                &req.contact_id,
                req.page_size,
                &req.page_token,
            )
            .await?;
        let changes = entries
            .iter()
            .map(store::HistoryEntry::to_consent_change)
            .collect();
        Ok(Response::new(ListConsentHistoryResponse {
            changes,
            next_page_token,
        }))
    }

    async fn record_events(
        &self,
        request: Request<RecordEventsRequest>,
    ) -> Result<Response<RecordEventsResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(
            self.record_events(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        Ok(Response::new(
            self.list_events(&ctx, request.into_inner()).await?,
        ))
    }

    type ExportContactStream = ApiStream<ExportContactResponse>;

    async fn export_contact(
        &self,
        request: Request<ExportContactRequest>,
    ) -> Result<Response<Self::ExportContactStream>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Read)?;
        Ok(Response::new(self.export(ctx, request.into_inner()).await?))
    }

    async fn erase_contact(
        &self,
        request: Request<EraseContactRequest>,
    ) -> Result<Response<EraseContactResponse>, Status> {
        let ctx = TenantContext::authorize(&request, SCOPE, Access::Write)?;
        Ok(Response::new(self.erase(&ctx, request.into_inner()).await?))
    }
}

impl ContactsApi {
    async fn create(
        &self,
        ctx: &TenantContext,
        req: CreateContactRequest,
    ) -> ApiResult<CreateContactResponse> {
        let now = Utc::now();
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

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateContact",
                &req.request_id,
                &req,
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
            .complete(&mut tx, ctx.tenant_id, &response, &[stored.id])
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get(
        &self,
        ctx: &TenantContext,
        req: GetContactRequest,
    ) -> ApiResult<GetContactResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        // The common case, a live contact, takes one round trip; merged and
        // erased ids take the full lookup.
        if let Some(contact) = store::find_live(&self.pool, ctx.tenant_id, id).await? {
            return Ok(GetContactResponse {
                contact: Some(contact.to_proto()),
            });
        }
        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let contact = match store::lookup(&mut tx, id, false).await? {
            Lookup::Merged(survivor) => store::lookup(&mut tx, survivor, false)
                .await?
                .into_found(survivor)?,
            other => other.into_found(id)?,
        };
        finish_read(tx);
        Ok(GetContactResponse {
            contact: Some(contact.to_proto()),
        })
    }

    async fn update(
        &self,
        ctx: &TenantContext,
        req: UpdateContactRequest,
    ) -> ApiResult<UpdateContactResponse> {
        let now = Utc::now();
        let mut violations = Violations::default();
        let patch = req.contact.unwrap_or_default();
        let id = violations.parse_id("contact.id", &patch.id);
        let paths = contact::mask_paths(req.update_mask.as_ref(), &patch, &mut violations);
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let existing = store::lookup(&mut tx, id, true).await?.into_found(id)?;
        check_etag(&req.etag, &existing)?;
        let mut updated = existing.to_proto();
        contact::apply_paths(&mut updated, &patch, &paths);
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

    async fn delete(
        &self,
        ctx: &TenantContext,
        req: DeleteContactRequest,
    ) -> ApiResult<DeleteContactResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let existing = store::lookup(&mut tx, id, true).await?.into_found(id)?;
        check_etag(&req.etag, &existing)?;
        store::delete_contact(&mut tx, ctx.tenant_id, id, Utc::now()).await?;
        tx.commit().await?;
        Ok(DeleteContactResponse {})
    }

    async fn list(
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
        let filter = ContactFilter {
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

        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let mut contacts = store::list_contacts(&mut tx, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let next_page_token = page.next_token(&mut contacts, |c| c.id);
        Ok(ListContactsResponse {
            contacts: contacts
                .iter()
                .map(store::StoredContact::to_proto)
                .collect(),
            next_page_token,
        })
    }

    async fn batch_upsert(
        &self,
        ctx: &TenantContext,
        req: BatchUpsertContactsRequest,
    ) -> ApiResult<BatchUpsertContactsResponse> {
        let now = Utc::now();
        let mut violations = Violations::default();
        if req.contacts.is_empty() {
            violations.add("contacts", "must hold at least one contact");
        }
        if req.contacts.len() > MAX_UPSERT_BATCH {
            violations.add(
                "contacts",
                format!("at most {MAX_UPSERT_BATCH} contacts per call"),
            );
            return Err(violations.check().unwrap_err());
        }
        check_request_id(&req.request_id, &mut violations);
        let mut seen_external = std::collections::HashMap::new();
        let mut seen_email = std::collections::HashMap::new();
        for (i, item) in req.contacts.iter().enumerate() {
            let prefix = format!("contacts[{i}]");
            contact::validate(item, &prefix, now, &mut violations);
            if item.external_id.is_empty() && item.email.is_empty() {
                violations.add(
                    format!("{prefix}.external_id"),
                    "set external_id or email to match on",
                );
            }
            if !item.external_id.is_empty()
                && let Some(first) = seen_external.insert(item.external_id.clone(), i)
            {
                violations.add(
                    format!("{prefix}.external_id"),
                    format!("repeats contacts[{first}].external_id"),
                );
            }
            if !item.email.is_empty()
                && let Some(first) = seen_email.insert(item.email.to_lowercase(), i)
            {
                violations.add(
                    format!("{prefix}.email"),
                    format!("repeats contacts[{first}].email"),
                );
            }
        }
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "BatchUpsertContacts",
                &req.request_id,
                &req,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        let external_ids: Vec<String> = seen_external.into_keys().collect();
        let emails: Vec<String> = seen_email.into_keys().collect();
        let existing = store::find_for_upsert(&mut tx, &external_ids, &emails).await?;

        let mut matched_by: std::collections::HashMap<Uuid, usize> =
            std::collections::HashMap::new();
        let mut response = BatchUpsertContactsResponse::default();
        let mut violations = Violations::default();
        for (i, item) in req.contacts.iter().enumerate() {
            let prefix = format!("contacts[{i}]");
            let found = upsert_match(&existing, item);
            if let Some(found) = found
                && let Some(first) = matched_by.insert(found.id, i)
            {
                violations.add(
                    prefix,
                    format!("matches the same contact as contacts[{first}]"),
                );
                continue;
            }
            let mut target = found
                .map(store::StoredContact::to_proto)
                .unwrap_or_default();
            contact::upsert_onto(&mut target, item);
            let fields = contact::validate(&target, &prefix, now, &mut violations);
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
            .complete(&mut tx, ctx.tenant_id, &response, &ids)
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn merge(
        &self,
        ctx: &TenantContext,
        req: MergeContactsRequest,
    ) -> ApiResult<MergeContactsResponse> {
        let now = Utc::now();
        let mut violations = Violations::default();
        let survivor_id = violations.parse_id("survivor_id", &req.survivor_id);
        let duplicate_id = violations.parse_id("duplicate_id", &req.duplicate_id);
        if survivor_id == duplicate_id && !survivor_id.is_nil() {
            violations.add("duplicate_id", "must differ from survivor_id");
        }
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        // Lock both rows in id order so that concurrent merges cannot deadlock.
        let (first, second) = if survivor_id < duplicate_id {
            (survivor_id, duplicate_id)
        } else {
            (duplicate_id, survivor_id)
        };
        let first_found = store::lookup(&mut tx, first, true)
            .await?
            .into_found(first)?;
        let second_found = store::lookup(&mut tx, second, true)
            .await?
            .into_found(second)?;
        let (survivor, duplicate) = if first == survivor_id {
            (first_found, second_found)
        } else {
            (second_found, first_found)
        };

        let merged = contact::merge(&survivor.fields, &duplicate.fields);
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

    async fn change_lifecycle_stage(
        &self,
        ctx: &TenantContext,
        req: ChangeLifecycleStageRequest,
    ) -> ApiResult<ChangeLifecycleStageResponse> {
        let now = Utc::now();
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

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let existing = store::lookup(&mut tx, id, true).await?.into_found(id)?;
        let mut fields = existing.fields.clone();
        fields.lifecycle_stage = stage;
        let source = if req.source.is_empty() {
            DEFAULT_SOURCE
        } else {
            &req.source
        };
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
        Ok(ChangeLifecycleStageResponse {
            contact: Some(stored.to_proto()),
        })
    }

    async fn change_consent(
        &self,
        ctx: &TenantContext,
        req: ChangeConsentRequest,
    ) -> ApiResult<ChangeConsentResponse> {
        let now = Utc::now();
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

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let existing = store::lookup(&mut tx, id, true).await?.into_found(id)?;
        let mut fields = existing.fields.clone();
        fields.consents.retain(|c| c.channel != state.channel);
        fields.consents.push(state);
        fields.consents.sort_by_key(|c| c.channel);
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
        Ok(ChangeConsentResponse {
            contact: Some(stored.to_proto()),
        })
    }

    async fn history_page(
        &self,
        ctx: &TenantContext,
        history: History,
        contact_id: &str,
        requested_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<store::HistoryEntry>, String)> {
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

        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        store::lookup(&mut tx, id, false).await?.into_found(id)?;
        let mut entries =
            store::list_history(&mut tx, history, id, page.after, page.fetch(), true).await?;
        finish_read(tx);
        let next_page_token = page.next_token(&mut entries, |(id, _)| *id);
        Ok((
            entries.into_iter().map(|(_, entry)| entry).collect(),
            next_page_token,
        ))
    }

    async fn record_events(
        &self,
        ctx: &TenantContext,
        req: RecordEventsRequest,
    ) -> ApiResult<RecordEventsResponse> {
        let now = Utc::now();
        let mut violations = Violations::default();
        let events = event::validate_events(&req.events, now, &mut violations);
        violations.check()?;

        let mut ids = Vec::new();
        let mut external_ids = Vec::new();
        for event in &events {
            match &event.contact {
                ContactRef::Id(id) => ids.push(*id),
                ContactRef::ExternalId(external_id) => external_ids.push(external_id.clone()),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        external_ids.sort_unstable();
        external_ids.dedup();

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        let (by_id, by_external) =
            store::resolve_event_contacts(&mut tx, &ids, &external_ids).await?;
        let mut violations = Violations::default();
        let mut resolved = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            match &event.contact {
                ContactRef::Id(id) => match by_id.get(id) {
                    Some(live) => resolved.push((*live, event)),
                    None => violations.add(
                        format!("events[{i}].contact_id"),
                        format!("no contact has the id {id}"),
                    ),
                },
                ContactRef::ExternalId(external_id) => match by_external.get(external_id) {
                    Some(live) => resolved.push((*live, event)),
                    None => violations.add(
                        format!("events[{i}].contact_external_id"),
                        format!("no contact has the external_id {external_id}"),
                    ),
                },
            }
        }
        violations.check()?;
        let recorded = store::insert_events(&mut tx, ctx.tenant_id, &resolved, now).await?;
        tx.commit().await?;
        let recorded = i32::try_from(recorded).unwrap_or(i32::MAX);
        Ok(RecordEventsResponse {
            recorded_count: recorded,
            duplicate_count: i32::try_from(events.len()).unwrap_or(i32::MAX) - recorded,
        })
    }

    async fn list_events(
        &self,
        ctx: &TenantContext,
        req: ListEventsRequest,
    ) -> ApiResult<ListEventsResponse> {
        let mut violations = Violations::default();
        let id = violations.parse_id("contact_id", &req.contact_id);
        let page: Page<TimelineCursor> = Page::read(
            req.page_size,
            &req.page_token,
            &ListEventsRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            },
            &mut violations,
        );
        for (i, kind) in req.types.iter().enumerate() {
            if let Err(e) = rules::check_event_type(kind) {
                violations.add(format!("types[{i}]"), e);
            }
        }
        let mut channels = Vec::with_capacity(req.channels.len());
        for (i, channel) in req.channels.iter().enumerate() {
            match Channel::try_from(*channel) {
                Ok(channel) if channel != Channel::Unspecified => channels.push(channel as i16),
                _ => violations.add(format!("channels[{i}]"), "is not a known channel"),
            }
        }
        let filter = EventFilter {
            types: req.types.clone(),
            channels,
            start_time: optional_datetime(req.start_time.as_ref(), "start_time", &mut violations),
            end_time: optional_datetime(req.end_time.as_ref(), "end_time", &mut violations),
        };
        violations.check()?;

        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        store::lookup(&mut tx, id, false).await?.into_found(id)?;
        let mut events = store::list_events(&mut tx, id, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let next_page_token = page.next_token(&mut events, |(cursor, _)| *cursor);
        Ok(ListEventsResponse {
            events: events.into_iter().map(|(_, e)| e).collect(),
            next_page_token,
        })
    }

    async fn export(
        &self,
        ctx: TenantContext,
        req: ExportContactRequest,
    ) -> ApiResult<ApiStream<ExportContactResponse>> {
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        // The profile is read up front so a bad id fails the call itself.
        let mut tx = begin_tenant_read(&self.pool, ctx.tenant_id).await?;
        let contact = store::lookup(&mut tx, id, false).await?.into_found(id)?;
        let lifecycle =
            store::list_history(&mut tx, History::Lifecycle, id, None, i64::MAX, false).await?;
        let consent =
            store::list_history(&mut tx, History::Consent, id, None, i64::MAX, false).await?;
        finish_read(tx);
        let profile = ExportContactResponse {
            part: Some(export_contact_response::Part::Profile(ContactProfile {
                contact: Some(contact.to_proto()),
                lifecycle_history: lifecycle
                    .iter()
                    .map(|(_, e)| e.to_lifecycle_change())
                    .collect(),
                consent_history: consent.iter().map(|(_, e)| e.to_consent_change()).collect(),
            })),
        };

        // The timeline follows in chunks, each read in its own short
        // transaction so a slow reader holds no connection.
        let pool = self.pool.clone();
        let tenant = ctx.tenant_id;
        let chunks = futures::stream::try_unfold(
            Some(None),
            move |state: Option<Option<TimelineCursor>>| {
                let pool = pool.clone();
                async move {
                    let Some(after) = state else { return Ok(None) };
                    let mut tx = begin_tenant_read(&pool, tenant)
                        .await
                        .map_err(ApiError::from)?;
                    let events = store::export_events(&mut tx, id, after, EXPORT_CHUNK)
                        .await
                        .map_err(ApiError::from)?;
                    finish_read(tx);
                    if events.is_empty() {
                        return Ok(None);
                    }
                    let next = (events.len() as i64 == EXPORT_CHUNK)
                        .then(|| events.last().map(|(cursor, _)| *cursor));
                    let chunk = ExportContactResponse {
                        part: Some(export_contact_response::Part::Events(EventChunk {
                            events: events.into_iter().map(|(_, e)| e).collect(),
                        })),
                    };
                    Ok::<_, Status>(Some((chunk, next)))
                }
            },
        );
        let stream =
            futures::StreamExt::chain(futures::stream::once(async { Ok(profile) }), chunks);
        Ok(Box::pin(stream))
    }

    async fn erase(
        &self,
        ctx: &TenantContext,
        req: EraseContactRequest,
    ) -> ApiResult<EraseContactResponse> {
        let now = Utc::now();
        let mut violations = Violations::default();
        let id = violations.parse_id("id", &req.id);
        violations.check()?;

        let mut tx = begin_tenant(&self.pool, ctx.tenant_id).await?;
        store::lookup(&mut tx, id, true).await?.into_found(id)?;
        let erased = store::erase(&mut tx, ctx.tenant_id, id, now).await?;
        tx.commit().await?;
        tracing::info!(contact_id = %id, "contact erased");
        Ok(EraseContactResponse {
            id: id.to_string(),
            erased_event_count: erased.events,
            erased_history_count: erased.history,
            erase_time: Some(rapport_core::convert::to_timestamp(now)),
        })
    }
}

/// The upsert rule: match by external_id; else by email, unless that
/// contact has a different external_id.
fn upsert_match<'a>(
    existing: &'a [store::StoredContact],
    item: &Contact,
) -> Option<&'a store::StoredContact> {
    if !item.external_id.is_empty()
        && let Some(found) = existing
            .iter()
            .find(|c| c.fields.external_id.as_deref() == Some(item.external_id.as_str()))
    {
        return Some(found);
    }
    if item.email.is_empty() {
        return None;
    }
    existing.iter().find(|c| {
        c.fields
            .email
            .as_deref()
            .is_some_and(|email| email.to_lowercase() == item.email.to_lowercase())
            && (item.external_id.is_empty() || c.fields.external_id.is_none())
    })
}

fn check_etag(etag: &str, contact: &store::StoredContact) -> ApiResult<()> {
    if etag.is_empty() || etag == contact.etag() {
        return Ok(());
    }
    Err(ApiError::failed_precondition(
        "ETAG_MISMATCH",
        format!(
            "contact {} changed since etag {etag} was read; get it again and retry",
            contact.id
        ),
    )
    .with_metadata("current_etag", contact.etag()))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}
