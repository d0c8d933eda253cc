//! Contacts: reading them by id (following merges and erasures), writing
//! them with the history and feed events a change leaves, listing, and
//! folding a duplicate into a survivor.

use chrono::{DateTime, Utc};
use rapport_core::db::{Database, is_unique_violation};
use rapport_proto::common::v1::LifecycleStage;
use serde_json::{Map, Value as Json};
use sqlx::types::Json as SqlJson;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::contact::{ConsentState, ContactFields, StoredContact};
use crate::domain::history;
use crate::events::{self, OUTBOX};

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
#[derive(Debug)]
pub enum Lookup {
    Found(Box<StoredContact>),
    /// Merged into the contact with this id.
    Merged(Uuid),
    Erased,
    Missing,
}

/// The live contact `id` of `tenant` in one round trip (see migration
/// 0002), outside any transaction; `None` when `id` names no live contact.
pub async fn find_live(
    db: &Database,
    tenant: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<StoredContact>> {
    let mut conn = db.acquire(tenant).await?;
    let row: Option<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts.contact_by_id($1, $2)"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Into::into))
}

// Lookups by id name the tenant although row-level security keeps to it:
// the feed snapshot's policy is ORed with the tenant's, and an OR in the
// filter keeps PostgreSQL from the (tenant_id, id) indexes (a scan of every
// contact per call, over a second at a million contacts).

/// Finds what `id` names; `for_update` locks a found contact's row.
pub async fn lookup(conn: &mut PgConnection, id: Uuid, for_update: bool) -> sqlx::Result<Lookup> {
    let query = if for_update {
        concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts.contacts WHERE tenant_id = contacts.current_tenant() AND id = $1 \
             FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts.contacts WHERE tenant_id = contacts.current_tenant() AND id = $1"
        )
    };
    if let Some(row) = sqlx::query_as::<_, ContactRow>(query)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(Lookup::Found(Box::new(row.into())));
    }
    let survivor: Option<Uuid> = sqlx::query_scalar(
        "SELECT survivor_id FROM contacts.merges \
         WHERE tenant_id = contacts.current_tenant() AND merged_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(survivor) = survivor {
        return Ok(Lookup::Merged(survivor));
    }
    let erased: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM contacts.erasures \
         WHERE tenant_id = contacts.current_tenant() AND contact_id = $1)",
    )
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
) -> Result<StoredContact, SaveError> {
    let (lifecycle, consents) =
        history::transitions(existing.map(|e| &e.fields), &mut fields, source);
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
    let events = events::contact_written(
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

/// Why a contact could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("another contact already has the email {0}")]
    EmailTaken(String),
    #[error("another contact already has the external_id {0}")]
    ExternalIdTaken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn unique_conflict(error: sqlx::Error, fields: &ContactFields) -> SaveError {
    if is_unique_violation(&error, "contacts_email_key") {
        return SaveError::EmailTaken(fields.email.clone().unwrap_or_default());
    }
    if is_unique_violation(&error, "contacts_external_id_key") {
        return SaveError::ExternalIdTaken(fields.external_id.clone().unwrap_or_default());
    }
    error.into()
}

/// Deletes a contact with its timeline and histories (by cascade), and
/// forgets it (see [`super::privacy::forget`]).
pub async fn delete_contact(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    super::privacy::forget(conn, id).await?;
    OUTBOX
        .write(&mut *conn, tenant, vec![events::contact_deleted(id)], now)
        .await?;
    sqlx::query("DELETE FROM contacts.contacts WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Filters of ListContacts.
#[derive(Debug, Default)]
pub struct ContactFilter {
    pub ids: Option<Vec<Uuid>>,
    pub email: Option<String>,
    pub tag: Option<String>,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub updated_since: Option<DateTime<Utc>>,
}

/// A page of `tenant`'s contacts matching `filter`, in id order after
/// `after`; the tenant is named for the (tenant_id, id) index (see above).
pub async fn list_contacts(
    conn: &mut PgConnection,
    tenant: Uuid,
    filter: &ContactFilter,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredContact>> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts.contacts \
          WHERE tenant_id = $8 AND ($1::uuid IS NULL OR id > $1) \
            AND ($2::text IS NULL OR lower(email) = lower($2)) \
            AND ($3::text IS NULL OR tags @> ARRAY[$3]) \
            AND ($4::int2 IS NULL OR lifecycle_stage = $4) \
            AND ($5::timestamptz IS NULL OR update_time >= $5) \
            AND ($7::uuid[] IS NULL OR id = ANY($7)) \
          ORDER BY id LIMIT $6"
    ))
    .bind(after)
    .bind(&filter.email)
    .bind(&filter.tag)
    .bind(filter.lifecycle_stage.map(|s| s as i16))
    .bind(filter.updated_since)
    .bind(limit)
    .bind(&filter.ids)
    .bind(tenant)
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
    OUTBOX
        .write(
            &mut *conn,
            tenant,
            vec![events::contact_merged(duplicate, survivor)],
            now,
        )
        .await?;
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

/// A page of every tenant's contacts in (tenant, id) order after `after`,
/// for the feed's snapshot (read with `app.feed` on).
pub async fn snapshot_page(
    conn: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, StoredContact)>> {
    #[derive(FromRow)]
    struct Row {
        tenant_id: Uuid,
        #[sqlx(flatten)]
        contact: ContactRow,
    }
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT tenant_id, ",
        contact_columns!(),
        " FROM contacts.contacts \
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
        .map(|row| (row.tenant_id, row.contact.into()))
        .collect())
}
