//! Erasure: removing everything stored about a person for good.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::events::{self, OUTBOX};

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
    let merged: Vec<Uuid> = erased_ids.iter().copied().filter(|e| *e != id).collect();
    OUTBOX
        .write(
            &mut *conn,
            tenant,
            vec![events::contact_erased(id, &merged)],
            now,
        )
        .await?;
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

/// Drops the redirects of contacts merged into `id`, and what the feed's
/// retained payloads and stored API responses still say about `id` and
/// those merged ids. Returns all of those ids.
pub(super) async fn forget(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
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

/// A page of the contacts merged into `survivor`, by merged id, after
/// `after`: each merged id with when it was merged.
pub async fn merges(
    conn: &mut PgConnection,
    survivor: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT merged_id, merge_time FROM contacts.merges \
         WHERE survivor_id = $1 AND ($2::uuid IS NULL OR merged_id > $2) \
         ORDER BY merged_id LIMIT $3",
    )
    .bind(survivor)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A page of every tenant's merges, (tenant, merged id, survivor id) in
/// (tenant, merged id) order after `after`, for the feed's snapshot.
pub async fn merges_snapshot_page(
    conn: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, Uuid)>> {
    sqlx::query_as(
        "SELECT tenant_id, merged_id, survivor_id FROM contacts.merges \
         WHERE $1::uuid IS NULL OR (tenant_id, merged_id) > ($1, $2) \
         ORDER BY tenant_id, merged_id LIMIT $3",
    )
    .bind(after.map(|(tenant, _)| tenant))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A page of every tenant's erased ids, (tenant, id) in that order after
/// `after`, for the feed's snapshot.
pub async fn erasures_snapshot_page(
    conn: &mut PgConnection,
    after: Option<(Uuid, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as(
        "SELECT tenant_id, contact_id FROM contacts.erasures \
         WHERE $1::uuid IS NULL OR (tenant_id, contact_id) > ($1, $2) \
         ORDER BY tenant_id, contact_id LIMIT $3",
    )
    .bind(after.map(|(tenant, _)| tenant))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(conn)
    .await
}
