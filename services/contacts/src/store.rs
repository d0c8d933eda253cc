//! sqlx queries on the `contacts` schema. Every function runs inside a
//! tenant transaction (see `rapport_core::db::begin_tenant`), so row-level
//! security confines it to that tenant's rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rapport_core::convert::{json_to_struct, to_timestamp};
use rapport_core::db::is_unique_violation;
use rapport_core::{ApiError, ApiResult};
use rapport_proto::common::v1::{LifecycleStage, Money};
use rapport_proto::contacts::v1 as pb;
use serde_json::{Map, Value as Json};
use sqlx::types::Json as SqlJson;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::OUTBOX;
use crate::domain::contact::{self, ConsentState, ContactFields};
use crate::domain::event::NewEvent;
use rapport_events::OutboxEvent;

/// A contact as stored.
#[derive(Debug, Clone)]
pub struct StoredContact {
    pub id: Uuid,
    pub fields: ContactFields,
    pub revision: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl StoredContact {
    pub fn etag(&self) -> String {
        self.revision.to_string()
    }

    pub fn to_proto(&self) -> pb::Contact {
        let mut contact = pb::Contact {
            id: self.id.to_string(),
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
            etag: self.etag(),
            ..Default::default()
        };
        contact::to_proto_fields(&self.fields, &mut contact);
        contact
    }
}

macro_rules! contact_columns {
    () => {
        "id, external_id, email, phone, first_name, last_name, locale, time_zone, attributes, \
         tags, lifecycle_stage, consents, revision, create_time, update_time"
    };
}

#[derive(FromRow)]
struct ContactRow {
    id: Uuid,
    external_id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    first_name: String,
    last_name: String,
    locale: String,
    time_zone: String,
    attributes: SqlJson<Map<String, Json>>,
    tags: Vec<String>,
    lifecycle_stage: i16,
    consents: SqlJson<Vec<ConsentState>>,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl From<ContactRow> for StoredContact {
    fn from(row: ContactRow) -> Self {
        Self {
            id: row.id,
            fields: ContactFields {
                external_id: row.external_id,
                email: row.email,
                phone: row.phone,
                first_name: row.first_name,
                last_name: row.last_name,
                locale: row.locale,
                time_zone: row.time_zone,
                attributes: row.attributes.0,
                tags: row.tags,
                lifecycle_stage: LifecycleStage::try_from(i32::from(row.lifecycle_stage))
                    .unwrap_or_default(),
                consents: row.consents.0,
            },
            revision: row.revision,
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

/// What an id names.
pub enum Lookup {
    Found(Box<StoredContact>),
    /// Merged into the contact with this id.
    Merged(Uuid),
    Erased,
    Missing,
}

impl Lookup {
    /// The live contact, or the error for an id that names none.
    pub fn into_found(self, id: Uuid) -> ApiResult<StoredContact> {
        match self {
            Lookup::Found(contact) => Ok(*contact),
            Lookup::Merged(survivor) => Err(ApiError::not_found(
                "CONTACT_MERGED",
                format!("contact {id} was merged into contact {survivor}; use that id"),
            )
            .with_metadata("survivor_id", survivor.to_string())),
            Lookup::Erased => Err(ApiError::not_found(
                "CONTACT_ERASED",
                format!("contact {id} was erased"),
            )),
            Lookup::Missing => Err(not_found(id)),
        }
    }
}

pub fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found("CONTACT_NOT_FOUND", format!("contact {id} does not exist"))
}

/// The live contact `id` of `tenant` in one round trip (see migration
/// 0002), outside any transaction; `None` when `id` names no live contact.
pub async fn find_live(
    pool: &sqlx::PgPool,
    tenant: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<StoredContact>> {
    let row: Option<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts.contact_by_id($1, $2)"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Finds what `id` names; `for_update` locks a found contact's row.
pub async fn lookup(conn: &mut PgConnection, id: Uuid, for_update: bool) -> sqlx::Result<Lookup> {
    let query = if for_update {
        concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts.contacts WHERE id = $1 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts.contacts WHERE id = $1"
        )
    };
    if let Some(row) = sqlx::query_as::<_, ContactRow>(query)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(Lookup::Found(Box::new(row.into())));
    }
    let survivor: Option<Uuid> =
        sqlx::query_scalar("SELECT survivor_id FROM contacts.merges WHERE merged_id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(survivor) = survivor {
        return Ok(Lookup::Merged(survivor));
    }
    let erased: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM contacts.erasures WHERE contact_id = $1)")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(if erased {
        Lookup::Erased
    } else {
        Lookup::Missing
    })
}

/// Writes `fields` as contact `id` (a new one when `existing` is `None`)
/// and records the lifecycle and consent history the change leaves.
pub async fn save_contact(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    existing: Option<&StoredContact>,
    mut fields: ContactFields,
    source: &str,
    now: DateTime<Utc>,
) -> ApiResult<StoredContact> {
    let (lifecycle, consents) =
        contact::transitions(existing.map(|e| &e.fields), &mut fields, source);
    let query = if existing.is_some() {
        concat!(
            "UPDATE contacts.contacts SET external_id = $3, email = $4, phone = $5, first_name = $6, \
             last_name = $7, locale = $8, time_zone = $9, attributes = $10, tags = $11, \
             lifecycle_stage = $12, consents = $13, revision = revision + 1, update_time = $14 \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            contact_columns!()
        )
    } else {
        concat!(
            "INSERT INTO contacts.contacts (tenant_id, id, external_id, email, phone, first_name, \
             last_name, locale, time_zone, attributes, tags, lifecycle_stage, consents, revision, \
             create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14) RETURNING ",
            contact_columns!()
        )
    };
    let row: ContactRow = sqlx::query_as(query)
        .bind(tenant)
        .bind(id)
        .bind(&fields.external_id)
        .bind(&fields.email)
        .bind(&fields.phone)
        .bind(&fields.first_name)
        .bind(&fields.last_name)
        .bind(&fields.locale)
        .bind(&fields.time_zone)
        .bind(SqlJson(&fields.attributes))
        .bind(&fields.tags)
        .bind(fields.lifecycle_stage as i16)
        .bind(SqlJson(&fields.consents))
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(|error| unique_conflict(error, &fields))?;

    let stored = StoredContact::from(row);
    let events = contact_events(
        existing.is_some(),
        &stored,
        lifecycle.as_ref(),
        &consents,
        source,
    );
    OUTBOX.write(&mut *conn, tenant, events, now).await?;

    if let Some(change) = lifecycle {
        sqlx::query(
            "INSERT INTO contacts.lifecycle_history (tenant_id, id, contact_id, from_stage, to_stage, change_time, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(change.from as i16)
        .bind(change.to as i16)
        .bind(now)
        .bind(source)
        .execute(&mut *conn)
        .await?;
    }
    for change in consents {
        sqlx::query(
            "INSERT INTO contacts.consent_history (tenant_id, id, contact_id, channel, from_status, to_status, change_time, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant)
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(change.channel as i16)
        .bind(change.from as i16)
        .bind(change.to as i16)
        .bind(change.change_time)
        .bind(&change.source)
        .execute(&mut *conn)
        .await?;
    }
    Ok(stored)
}

/// The feed events of writing `stored`: created or updated (with the full
/// new state), and each lifecycle and consent change.
fn contact_events(
    existed: bool,
    stored: &StoredContact,
    lifecycle: Option<&contact::LifecycleTransition>,
    consents: &[contact::ConsentTransition],
    source: &str,
) -> Vec<OutboxEvent> {
    let id = stored.id;
    let contact = Some(stored.to_proto());
    let mut events = vec![if existed {
        OutboxEvent::new("contact.updated", id, &pb::ContactUpdated { contact })
    } else {
        OutboxEvent::new("contact.created", id, &pb::ContactCreated { contact })
    }];
    if let Some(change) = lifecycle {
        events.push(OutboxEvent::new(
            "contact.lifecycle_changed",
            id,
            &pb::ContactLifecycleChanged {
                contact_id: id.to_string(),
                from_stage: change.from as i32,
                to_stage: change.to as i32,
                source: source.to_owned(),
            },
        ));
    }
    for change in consents {
        events.push(OutboxEvent::new(
            "contact.consent_changed",
            id,
            &pb::ContactConsentChanged {
                contact_id: id.to_string(),
                channel: change.channel,
                from_status: change.from,
                to_status: change.to,
                source: change.source.clone(),
            },
        ));
    }
    events
}

fn unique_conflict(error: sqlx::Error, fields: &ContactFields) -> ApiError {
    if is_unique_violation(&error, "contacts_email_key") {
        let email = fields.email.as_deref().unwrap_or_default();
        return ApiError::already_exists(
            "CONTACT_EMAIL_TAKEN",
            format!("another contact already has the email {email}"),
        );
    }
    if is_unique_violation(&error, "contacts_external_id_key") {
        let external_id = fields.external_id.as_deref().unwrap_or_default();
        return ApiError::already_exists(
            "CONTACT_EXTERNAL_ID_TAKEN",
            format!("another contact already has the external_id {external_id}"),
        );
    }
    error.into()
}

/// Deletes a contact with its timeline and histories (by cascade), and
/// forgets it (see [`forget`]).
pub async fn delete_contact(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    forget(conn, id).await?;
    let deleted = OutboxEvent::new(
        "contact.deleted",
        id,
        &pb::ContactDeleted {
            contact_id: id.to_string(),
        },
    );
    OUTBOX.write(&mut *conn, tenant, vec![deleted], now).await?;
    sqlx::query("DELETE FROM contacts.contacts WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops the redirects of contacts merged into `id`, and what the feed's
/// retained payloads and stored API responses still say about `id` and
/// those merged ids. Returns all of those ids.
async fn forget(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM contacts.merges WHERE survivor_id = $1 RETURNING merged_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    ids.push(id);
    OUTBOX.redact(&mut *conn, &ids).await?;
    sqlx::query("DELETE FROM contacts.idempotency_keys WHERE subject_ids && $1")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    Ok(ids)
}

/// Filters of ListContacts.
#[derive(Debug, Default)]
pub struct ContactFilter {
    pub email: Option<String>,
    pub tag: Option<String>,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub updated_since: Option<DateTime<Utc>>,
}

pub async fn list_contacts(
    conn: &mut PgConnection,
    filter: &ContactFilter,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredContact>> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts.contacts \
          WHERE ($1::uuid IS NULL OR id > $1) \
            AND ($2::text IS NULL OR lower(email) = lower($2)) \
            AND ($3::text IS NULL OR tags @> ARRAY[$3]) \
            AND ($4::int2 IS NULL OR lifecycle_stage = $4) \
            AND ($5::timestamptz IS NULL OR update_time >= $5) \
          ORDER BY id LIMIT $6"
    ))
    .bind(after)
    .bind(&filter.email)
    .bind(&filter.tag)
    .bind(filter.lifecycle_stage.map(|s| s as i16))
    .bind(filter.updated_since)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Live contacts by external id and by lower-cased email, for upserts.
pub async fn find_for_upsert(
    conn: &mut PgConnection,
    external_ids: &[String],
    emails: &[String],
) -> sqlx::Result<Vec<StoredContact>> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts.contacts WHERE external_id = ANY($1) OR lower(email) = ANY($2) \
          ORDER BY id FOR UPDATE"
    ))
    .bind(external_ids)
    .bind(emails)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Which history to page through.
#[derive(Debug, Clone, Copy)]
pub enum History {
    Lifecycle,
    Consent,
}

/// A contact's history entries, newest first (or oldest first for exports),
/// after the entry id `after`.
pub async fn list_history(
    conn: &mut PgConnection,
    history: History,
    contact_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
    newest_first: bool,
) -> sqlx::Result<Vec<(Uuid, HistoryEntry)>> {
    let query = match (history, newest_first) {
        (History::Lifecycle, true) => {
            "SELECT id, 0::int2 AS channel, from_stage AS from_value, to_stage AS to_value, change_time, source \
             FROM contacts.lifecycle_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        }
        (History::Lifecycle, false) => {
            "SELECT id, 0::int2 AS channel, from_stage AS from_value, to_stage AS to_value, change_time, source \
             FROM contacts.lifecycle_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        }
        (History::Consent, true) => {
            "SELECT id, channel, from_status AS from_value, to_status AS to_value, change_time, source \
             FROM contacts.consent_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        }
        (History::Consent, false) => {
            "SELECT id, channel, from_status AS from_value, to_status AS to_value, change_time, source \
             FROM contacts.consent_history WHERE contact_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        }
    };
    let rows: Vec<HistoryRow> = sqlx::query_as(query)
        .bind(contact_id)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.entry)).collect())
}

#[derive(FromRow)]
struct HistoryRow {
    id: Uuid,
    #[sqlx(flatten)]
    entry: HistoryEntry,
}

/// One history entry: a lifecycle change (channel 0) or a consent change.
#[derive(Debug, FromRow)]
pub struct HistoryEntry {
    channel: i16,
    from_value: i16,
    to_value: i16,
    change_time: DateTime<Utc>,
    source: String,
}

impl HistoryEntry {
    pub fn to_lifecycle_change(&self) -> pb::LifecycleChange {
        pb::LifecycleChange {
            from_stage: self.from_value.into(),
            to_stage: self.to_value.into(),
            change_time: Some(to_timestamp(self.change_time)),
            source: self.source.clone(),
        }
    }

    pub fn to_consent_change(&self) -> pb::ConsentChange {
        pb::ConsentChange {
            channel: self.channel.into(),
            from_status: self.from_value.into(),
            to_status: self.to_value.into(),
            change_time: Some(to_timestamp(self.change_time)),
            source: self.source.clone(),
        }
    }
}

/// Maps the contact ids and external ids that events name to live contact
/// ids, following merges. Names that match nothing are absent.
pub async fn resolve_event_contacts(
    conn: &mut PgConnection,
    ids: &[Uuid],
    external_ids: &[String],
) -> sqlx::Result<(HashMap<Uuid, Uuid>, HashMap<String, Uuid>)> {
    let by_id: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, id FROM contacts.contacts WHERE id = ANY($1) \
         UNION ALL SELECT merged_id, survivor_id FROM contacts.merges WHERE merged_id = ANY($1)",
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
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    let recorded: Vec<OutboxEvent> = ids
        .iter()
        .zip(events)
        .filter(|(id, _)| inserted.contains(id))
        .map(|(id, (contact_id, event))| {
            let event = recorded_event(*id, *contact_id, event, now);
            OutboxEvent::new(
                "contact.event_recorded",
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

/// Moves the duplicate's timeline and histories to the survivor, removes
/// the duplicate, and points its id (and ids merged into it) at the
/// survivor. Returns how many events moved.
pub async fn fold_into(
    conn: &mut PgConnection,
    tenant: Uuid,
    duplicate: Uuid,
    survivor: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let merged = OutboxEvent::new(
        "contact.merged",
        survivor,
        &pb::ContactMerged {
            survivor_id: survivor.to_string(),
            duplicate_id: duplicate.to_string(),
        },
    );
    OUTBOX.write(&mut *conn, tenant, vec![merged], now).await?;
    let moved = sqlx::query("UPDATE contacts.events SET contact_id = $2 WHERE contact_id = $1")
        .bind(duplicate)
        .bind(survivor)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for table in [
        "UPDATE contacts.lifecycle_history SET contact_id = $2 WHERE contact_id = $1",
        "UPDATE contacts.consent_history SET contact_id = $2 WHERE contact_id = $1",
        "UPDATE contacts.merges SET survivor_id = $2 WHERE survivor_id = $1",
    ] {
        sqlx::query(table)
            .bind(duplicate)
            .bind(survivor)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM contacts.contacts WHERE id = $1")
        .bind(duplicate)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO contacts.merges (tenant_id, merged_id, survivor_id, merge_time) VALUES ($1, $2, $3, $4)")
        .bind(tenant)
        .bind(duplicate)
        .bind(survivor)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(moved)
}

/// What an erasure removed.
pub struct Erased {
    pub events: i64,
    pub history: i64,
}

/// Removes everything stored about contact `id` (and ids merged into it):
/// profile, timeline, histories, redirects and stored API responses that
/// name it. Leaves only the erased ids and the time.
pub async fn erase(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Erased> {
    let events: i64 = sqlx::query_scalar("WITH d AS (DELETE FROM contacts.events WHERE contact_id = $1 RETURNING 1) SELECT count(*) FROM d")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let history: i64 = sqlx::query_scalar(
        "WITH l AS (DELETE FROM contacts.lifecycle_history WHERE contact_id = $1 RETURNING 1), \
              c AS (DELETE FROM contacts.consent_history WHERE contact_id = $1 RETURNING 1) \
         SELECT (SELECT count(*) FROM l) + (SELECT count(*) FROM c)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let erased_ids = forget(conn, id).await?;
    let erased = OutboxEvent::new(
        "contact.erased",
        id,
        &pb::ContactErased {
            contact_id: id.to_string(),
        },
    );
    OUTBOX.write(&mut *conn, tenant, vec![erased], now).await?;
    sqlx::query("DELETE FROM contacts.contacts WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO contacts.erasures (tenant_id, contact_id, erase_time) SELECT $1, unnest($2::uuid[]), $3 \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&erased_ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Erased { events, history })
}
