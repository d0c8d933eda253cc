//! The timeline: recording interaction events and listing a contact's.

use rapport_core::convert::optional_datetime;
use rapport_core::db::finish_read;
use rapport_core::pagination::Page;
use rapport_core::{ApiResult, TenantContext, Violations};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::*;

use super::{ContactsApi, found};
use crate::domain::event::{self, ContactRef};
use crate::domain::rules;
use crate::store::contact as store;
use crate::store::timeline::{self, EventFilter, TimelineCursor};

impl ContactsApi {
    pub(super) async fn record_events(
        &self,
        ctx: &TenantContext,
        req: RecordEventsRequest,
    ) -> ApiResult<RecordEventsResponse> {
        let now = self.clock.now();
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

        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let (by_id, by_external) =
            timeline::resolve_event_contacts(&mut tx, &ids, &external_ids).await?;
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
        let recorded = timeline::insert_events(&mut tx, ctx.tenant_id, &resolved, now).await?;
        tx.commit().await?;
        let recorded = i32::try_from(recorded).unwrap_or(i32::MAX);
        Ok(RecordEventsResponse {
            recorded_count: recorded,
            duplicate_count: i32::try_from(events.len()).unwrap_or(i32::MAX) - recorded,
        })
    }

    pub(super) async fn list_events(
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

        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        found(store::lookup(&mut tx, id, false).await?, id)?;
        let events = timeline::list_events(&mut tx, id, &filter, page.after, page.fetch()).await?;
        finish_read(tx);
        let (events, next_page_token) = page.finish(events);
        Ok(ListEventsResponse {
            events,
            next_page_token,
        })
    }
}
