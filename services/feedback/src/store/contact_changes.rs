//! What the contacts feed changes in the feedback schema: an erased
//! contact is forgotten, a merged contact's invitations and responses move
//! to the survivor, and both, like a deleted contact, are gone from the
//! contacts invitations may go to (`store::contacts`).

use chrono::{DateTime, Utc};
use prost::Name;
use rapport_proto::feedback::v1::{InvitationSent, ResponseSubmitted};
use sqlx::PgConnection;
use uuid::Uuid;

/// Forgets `contacts` (of one person or several), all at once. Locks in
/// the order the API takes them, so it neither deadlocks with nor misses a
/// call in flight: the contacts' invitation locks (as CreateInvitations),
/// then their invitations (as SubmitResponse, whose response row it waits
/// for), then their responses. A contact forgotten before is left alone:
/// what was stored about it since (a reply naming it as skipped) stays, so
/// loading the snapshot's erasures again changes nothing.
pub async fn erase(
    tx: &mut PgConnection,
    tenant: Uuid,
    contacts: &[Uuid],
    when: DateTime<Utc>,
) -> anyhow::Result<()> {
    super::invitation::lock_contacts(tx, tenant, contacts).await?;
    super::contacts::mark_gone(tx, tenant, contacts).await?;
    let fresh: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO feedback.erased_contacts (tenant_id, contact_id, erase_time) \
         SELECT $1, unnest($2::uuid[]), $3 ON CONFLICT DO NOTHING RETURNING contact_id",
    )
    .bind(tenant)
    .bind(contacts)
    .bind(when)
    .fetch_all(&mut *tx)
    .await?;
    if fresh.is_empty() {
        return Ok(());
    }
    let contacts = fresh.as_slice();
    let invitations: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE feedback.invitations SET contact_id = NULL WHERE contact_id = ANY($1) RETURNING id",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?;
    let responses: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE feedback.responses SET contact_id = NULL, has_comment = false \
         WHERE contact_id = ANY($1) RETURNING id",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE feedback.answers SET text = '' WHERE response_id = ANY($1) AND text IS NOT NULL",
    )
    .bind(&responses)
    .execute(&mut *tx)
    .await?;
    // CreateInvitations replies kept for retries name the contact (invited
    // or skipped) and hold the tokens.
    let subjects: Vec<Uuid> = invitations.iter().chain(contacts).copied().collect();
    sqlx::query("DELETE FROM feedback.idempotency_keys WHERE subject_ids && $1")
        .bind(&subjects)
        .execute(&mut *tx)
        .await?;
    let aggregates: Vec<Uuid> = invitations.into_iter().chain(responses).collect();
    forget_contact_in_feed(tx, &aggregates).await
}

/// Rewrites the retained feed events about `aggregates` without their
/// contact id: the scores stay on the feed, the person does not.
async fn forget_contact_in_feed(tx: &mut PgConnection, aggregates: &[Uuid]) -> anyhow::Result<()> {
    let events: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT event_id, payload FROM feedback.outbox WHERE aggregate_id = ANY($1) FOR UPDATE",
    )
    .bind(aggregates)
    .fetch_all(&mut *tx)
    .await?;
    for (event_id, bytes) in events {
        let any = <prost_types::Any as prost::Message>::decode(bytes.as_slice())?;
        let rewritten = if any.type_url == ResponseSubmitted::type_url() {
            let mut payload: ResponseSubmitted = any.to_msg()?;
            payload.contact_id.clear();
            prost_types::Any::from_msg(&payload)?
        } else if any.type_url == InvitationSent::type_url() {
            let mut payload: InvitationSent = any.to_msg()?;
            payload.contact_id.clear();
            prost_types::Any::from_msg(&payload)?
        } else {
            continue;
        };
        sqlx::query("UPDATE feedback.outbox SET payload = $2 WHERE event_id = $1")
            .bind(event_id)
            .bind(prost::Message::encode_to_vec(&rewritten))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Moves `duplicate`'s invitations and responses to `survivor`, under both
/// contacts' invitation locks: an invitation to the duplicate made before
/// moves with the rest, one asked for after finds the duplicate gone.
pub async fn merge(
    tx: &mut PgConnection,
    tenant: Uuid,
    duplicate: Uuid,
    survivor: Uuid,
) -> anyhow::Result<()> {
    super::invitation::lock_contacts(tx, tenant, &[duplicate, survivor]).await?;
    super::contacts::mark_gone(tx, tenant, &[duplicate]).await?;
    for table in ["feedback.responses", "feedback.invitations"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET contact_id = $2 WHERE contact_id = $1"
        )))
        .bind(duplicate)
        .bind(survivor)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Notes deleted `contacts` as gone, under their invitation locks.
pub async fn delete(tx: &mut PgConnection, tenant: Uuid, contacts: &[Uuid]) -> anyhow::Result<()> {
    super::invitation::lock_contacts(tx, tenant, contacts).await?;
    super::contacts::mark_gone(tx, tenant, contacts).await?;
    Ok(())
}
