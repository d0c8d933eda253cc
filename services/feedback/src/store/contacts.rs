//! The tenant's contacts as the contacts feed tells them: created, and
//! gone once deleted, merged into another or erased. Changes to gone are
//! made under the contacts' invitation locks (`store::contact_changes`),
//! so CreateInvitations, holding them, sees every such change committed
//! before it.

use sqlx::PgConnection;
use uuid::Uuid;

/// Notes `contacts` of `tenant` as created; a contact already noted (gone
/// or not) stays as it is.
pub async fn add(tx: &mut PgConnection, tenant: Uuid, contacts: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO feedback.contacts (tenant_id, contact_id) \
         SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(contacts)
    .execute(tx)
    .await?;
    Ok(())
}

/// Notes `contacts` of `tenant` as gone, seen before or not.
pub async fn mark_gone(tx: &mut PgConnection, tenant: Uuid, contacts: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO feedback.contacts (tenant_id, contact_id, gone) \
         SELECT $1, unnest($2::uuid[]), true \
         ON CONFLICT (tenant_id, contact_id) DO UPDATE SET gone = true",
    )
    .bind(tenant)
    .bind(contacts)
    .execute(tx)
    .await?;
    Ok(())
}

/// Of `contacts`, those noted, each with whether it is gone.
pub async fn noted_among(
    tx: &mut PgConnection,
    contacts: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, bool)>> {
    sqlx::query_as("SELECT contact_id, gone FROM feedback.contacts WHERE contact_id = ANY($1)")
        .bind(contacts)
        .fetch_all(tx)
        .await
}

/// Of `contacts`, those noted as gone.
pub async fn gone_among(tx: &mut PgConnection, contacts: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT contact_id FROM feedback.contacts WHERE contact_id = ANY($1) AND gone",
    )
    .bind(contacts)
    .fetch_all(tx)
    .await
}
