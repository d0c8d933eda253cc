//! The timeline: recording interaction events (with their feed events)
//! and reading a contact's events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rapport_core::convert::{json_to_struct, to_timestamp};
use rapport_events::OutboxEvent;
use rapport_proto::common::v1::Money;
use rapport_proto::contacts::v1 as pb;
use serde_json::{Map, Value as Json};
use sqlx::types::Json as SqlJson;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::event::NewEvent;
use crate::events::OUTBOX;

/// Maps the contact ids and external ids that events name to live contact
/// ids, following merges. Names that match nothing are absent.
pub async fn resolve_event_contacts(
    conn: &mut PgConnection,
    ids: &[Uuid],
    external_ids: &[String],
) -> sqlx::Result<(HashMap<Uuid, Uuid>, HashMap<String, Uuid>)> {
    let by_id: Vec<(Uuid, Uuid)> = sqlx::query_as(
        // The tenant is named for the indexes (see store/contact.rs, lookup).
        "SELECT id, id FROM contacts.contacts \
         WHERE tenant_id = contacts.current_tenant() AND id = ANY($1) \
         UNION ALL SELECT merged_id, survivor_id FROM contacts.merges \
         WHERE tenant_id = contacts.current_tenant() AND merged_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let by_external: Vec<(String, Uuid)> = if external_ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as("SELECT external_id, id FROM contacts.contacts WHERE external_id = ANY($1)")
            .bind(external_ids)
            .fetch_all(&mut *conn)
            .await?
    };
    Ok((
        by_id.into_iter().collect(),
        by_external.into_iter().collect(),
    ))
}

/// Inserts events for the resolved contacts in one statement, with a
/// `contact.event_recorded` feed event for each new one; events whose
/// client id is already recorded are skipped. Returns how many were new.
pub async fn insert_events(
    conn: &mut PgConnection,
    tenant: Uuid,
    events: &[(Uuid, &NewEvent)],
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut contact_ids = Vec::with_capacity(n);
    let mut client_ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut occur_times = Vec::with_capacity(n);
    let mut properties = Vec::with_capacity(n);
    let mut currencies = Vec::with_capacity(n);
    let mut units = Vec::with_capacity(n);
    let mut nanos = Vec::with_capacity(n);
    for (contact_id, event) in events {
        ids.push(Uuid::now_v7());
        contact_ids.push(*contact_id);
        client_ids.push(event.client_event_id.as_deref());
        kinds.push(event.kind.as_str());
        channels.push(event.channel as i16);
        occur_times.push(event.occur_time);
        properties.push(SqlJson(&event.properties));
        currencies.push(event.revenue.as_ref().map(|m| m.currency_code.as_str()));
        units.push(event.revenue.as_ref().map(|m| m.units));
        nanos.push(event.revenue.as_ref().map(|m| m.nanos));
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO contacts.events (tenant_id, id, contact_id, client_event_id, type, channel, occur_time, \
             properties, revenue_currency, revenue_units, revenue_nanos, record_time) \
         SELECT $1, e.*, $12 FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int2[], \
             $7::timestamptz[], $8::jsonb[], $9::text[], $10::int8[], $11::int4[]) AS e \
         ON CONFLICT (tenant_id, client_event_id) WHERE client_event_id IS NOT NULL DO NOTHING \
         RETURNING id",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(contact_ids)
    .bind(client_ids)
    .bind(kinds)
    .bind(channels)
    .bind(occur_times)
    .bind(properties)
    .bind(currencies)
    .bind(units)
    .bind(nanos)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    let recorded: Vec<OutboxEvent> = ids
        .iter()
        .zip(events)
        .filter(|(id, _)| inserted.contains(id))
        .map(|(id, (contact_id, event))| {
            let event = recorded_event(*id, *contact_id, event, now);
            OutboxEvent::new(
                *contact_id,
                &pb::ContactEventRecorded { event: Some(event) },
            )
        })
        .collect();
    let count = recorded.len() as u64;
    OUTBOX.write(conn, tenant, recorded, now).await?;
    Ok(count)
}

/// The API shape of a newly recorded event.
fn recorded_event(id: Uuid, contact_id: Uuid, event: &NewEvent, now: DateTime<Utc>) -> pb::Event {
    pb::Event {
        id: id.to_string(),
        contact_id: contact_id.to_string(),
        client_event_id: event.client_event_id.clone().unwrap_or_default(),
        r#type: event.kind.clone(),
        channel: event.channel as i32,
        occur_time: Some(to_timestamp(event.occur_time)),
        properties: Some(json_to_struct(&event.properties)),
        revenue: event.revenue.clone(),
        record_time: Some(to_timestamp(now)),
        contact_external_id: String::new(),
    }
}

/// Filters of ListEvents.
#[derive(Debug, Default)]
pub struct EventFilter {
    pub types: Vec<String>,
    pub channels: Vec<i16>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// Position in a timeline: (occur_time, id).
pub type TimelineCursor = (DateTime<Utc>, Uuid);

#[derive(FromRow)]
struct EventRow {
    id: Uuid,
    contact_id: Uuid,
    client_event_id: Option<String>,
    r#type: String,
    channel: i16,
    occur_time: DateTime<Utc>,
    properties: SqlJson<Map<String, Json>>,
    revenue_currency: Option<String>,
    revenue_units: Option<i64>,
    revenue_nanos: Option<i32>,
    record_time: DateTime<Utc>,
}

impl EventRow {
    fn into_proto(self) -> pb::Event {
        let revenue = self.revenue_currency.map(|currency_code| Money {
            currency_code,
            units: self.revenue_units.unwrap_or_default(),
            nanos: self.revenue_nanos.unwrap_or_default(),
        });
        pb::Event {
            id: self.id.to_string(),
            contact_id: self.contact_id.to_string(),
            client_event_id: self.client_event_id.unwrap_or_default(),
            r#type: self.r#type,
            channel: self.channel.into(),
            occur_time: Some(to_timestamp(self.occur_time)),
            properties: Some(json_to_struct(&self.properties.0)),
            revenue,
            record_time: Some(to_timestamp(self.record_time)),
            contact_external_id: String::new(),
        }
    }
}

macro_rules! event_columns {
    () => {
        "id, contact_id, client_event_id, type, channel, occur_time, properties, \
         revenue_currency, revenue_units, revenue_nanos, record_time"
    };
}

/// A page of a contact's timeline, newest first, with the cursor of its last event.
pub async fn list_events(
    conn: &mut PgConnection,
    contact_id: Uuid,
    filter: &EventFilter,
    before: Option<TimelineCursor>,
    limit: i64,
) -> sqlx::Result<Vec<(TimelineCursor, pb::Event)>> {
    let rows: Vec<EventRow> = sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM contacts.events \
          WHERE contact_id = $1 \
            AND ($2::timestamptz IS NULL OR (occur_time, id) < ($2, $3::uuid)) \
            AND (cardinality($4::text[]) = 0 OR type = ANY($4)) \
            AND (cardinality($5::int2[]) = 0 OR channel = ANY($5)) \
            AND ($6::timestamptz IS NULL OR occur_time >= $6) \
            AND ($7::timestamptz IS NULL OR occur_time < $7) \
          ORDER BY occur_time DESC, id DESC LIMIT $8"
    ))
    .bind(contact_id)
    .bind(before.map(|c| c.0))
    .bind(before.map(|c| c.1))
    .bind(&filter.types)
    .bind(&filter.channels)
    .bind(filter.start_time)
    .bind(filter.end_time)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ((row.occur_time, row.id), row.into_proto()))
        .collect())
}

/// A chunk of a contact's timeline, oldest first, after `after`.
pub async fn export_events(
    conn: &mut PgConnection,
    contact_id: Uuid,
    after: Option<TimelineCursor>,
    limit: i64,
) -> sqlx::Result<Vec<(TimelineCursor, pb::Event)>> {
    let rows: Vec<EventRow> = sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM contacts.events \
          WHERE contact_id = $1 AND ($2::timestamptz IS NULL OR (occur_time, id) > ($2, $3::uuid)) \
          ORDER BY occur_time, id LIMIT $4"
    ))
    .bind(contact_id)
    .bind(after.map(|c| c.0))
    .bind(after.map(|c| c.1))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ((row.occur_time, row.id), row.into_proto()))
        .collect())
}

/// A page of every tenant's events in (tenant, id) order after `after`,
/// for the feed's snapshot (read with `app.feed` on).
pub async fn snapshot_page(
    conn: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, pb::Event)>> {
    #[derive(FromRow)]
    struct Row {
        tenant_id: Uuid,
        #[sqlx(flatten)]
        event: EventRow,
    }
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT tenant_id, ",
        event_columns!(),
        " FROM contacts.events \
          WHERE $1::uuid IS NULL OR (tenant_id, id) > ($1, $2) \
          ORDER BY tenant_id, id LIMIT $3"
    ))
    .bind(after.map(|(tenant, _)| tenant))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.tenant_id, row.event.into_proto()))
        .collect())
}
