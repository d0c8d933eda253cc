//! The projections the consumers keep: contacts' profiles, stage changes
//! and events from the contacts feed, scored answers from the feedback
//! feed. Each write takes a whole batch in one statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::changes;
use crate::domain::projection::{EventRow, Profile};
use crate::domain::segment::Cause;

/// Stores `profiles` (the latest of each contact wins).
pub async fn upsert_profiles(
    tx: &mut PgConnection,
    tenant: Uuid,
    profiles: &[Profile],
) -> sqlx::Result<()> {
    // One statement may not change a row twice: keep each contact's last.
    let mut latest: HashMap<Uuid, &Profile> = HashMap::new();
    for profile in profiles {
        latest.insert(profile.contact_id, profile);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Profile> = latest.into_values().collect();
    let consents: Vec<String> = rows
        .iter()
        .map(|p| {
            let slots: Vec<String> = p.consents.iter().map(i16::to_string).collect();
            format!("{{{}}}", slots.join(","))
        })
        .collect();
    sqlx::query(
        "INSERT INTO segmentation.profiles (tenant_id, contact_id, email_domain, locale, time_zone, \
             create_time, attributes, tags, stage, consents) \
         SELECT $1, c, d, l, z, t, a::jsonb, ARRAY(SELECT jsonb_array_elements_text(g::jsonb)), s, k::int2[] \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], \
                     $8::text[], $9::int2[], $10::text[]) AS u(c, d, l, z, t, a, g, s, k) \
         ON CONFLICT (tenant_id, contact_id) DO UPDATE SET email_domain = excluded.email_domain, \
             locale = excluded.locale, time_zone = excluded.time_zone, \
             create_time = excluded.create_time, attributes = excluded.attributes, \
             tags = excluded.tags, stage = excluded.stage, consents = excluded.consents",
    )
    .bind(tenant)
    .bind(rows.iter().map(|p| p.contact_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.email_domain.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.locale.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.time_zone.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.create_time).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.attributes.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.tags.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.stage).collect::<Vec<_>>())
    .bind(consents)
    .execute(tx)
    .await?;
    Ok(())
}

/// A contact entered a lifecycle stage at a moment.
#[derive(Debug, Clone, Copy)]
pub struct StageEntry {
    pub contact_id: Uuid,
    pub stage: i16,
    pub at: DateTime<Utc>,
}

/// Records stage entries; `current` also sets the profiles' stage (the
/// entries are the feed's newest news).
pub async fn enter_stages(
    tx: &mut PgConnection,
    tenant: Uuid,
    entries: &[StageEntry],
    current: bool,
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let contacts: Vec<Uuid> = entries.iter().map(|e| e.contact_id).collect();
    let stages: Vec<i16> = entries.iter().map(|e| e.stage).collect();
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
    sqlx::query(
        "INSERT INTO segmentation.stage_changes (tenant_id, contact_id, stage, change_time) \
         SELECT $1, c, s, t FROM unnest($2::uuid[], $3::int2[], $4::timestamptz[]) AS u(c, s, t) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&contacts)
    .bind(&stages)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    if current {
        // In feed order, the last entry of each contact is its stage now.
        let mut last: HashMap<Uuid, i16> = HashMap::new();
        for entry in entries {
            last.insert(entry.contact_id, entry.stage);
        }
        let (ids, stages): (Vec<Uuid>, Vec<i16>) = last.into_iter().unzip();
        sqlx::query(
            "UPDATE segmentation.profiles p SET stage = u.s \
             FROM unnest($1::uuid[], $2::int2[]) AS u(c, s) WHERE p.contact_id = u.c",
        )
        .bind(ids)
        .bind(stages)
        .execute(tx)
        .await?;
    }
    Ok(())
}

/// A contact's consent on a channel changed.
#[derive(Debug, Clone, Copy)]
pub struct ConsentUpdate {
    pub contact_id: Uuid,
    pub channel: i16,
    pub state: i16,
}

/// Applies consent changes in order.
pub async fn set_consents(tx: &mut PgConnection, updates: &[ConsentUpdate]) -> sqlx::Result<()> {
    // The same contact and channel may change twice in a batch: keep the
    // last, so one statement sets each slot once.
    let mut last: HashMap<(Uuid, i16), i16> = HashMap::new();
    for update in updates {
        last.insert((update.contact_id, update.channel), update.state);
    }
    for ((contact, channel), state) in last {
        sqlx::query("UPDATE segmentation.profiles SET consents[$2] = $3 WHERE contact_id = $1")
            .bind(contact)
            .bind(i32::from(channel))
            .bind(state)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Stores events applied at `now` (a redelivered one changes nothing).
pub async fn insert_events(
    tx: &mut PgConnection,
    tenant: Uuid,
    events: &[EventRow],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO segmentation.events (tenant_id, contact_id, type, occur_time, event_id, \
             channel, properties, currency, revenue, applied_time) \
         SELECT $1, c, y, t, i, h, p::jsonb, r, v::numeric, $10 \
         FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[], $6::int2[], \
                     $7::text[], $8::text[], $9::text[]) AS u(c, y, t, i, h, p, r, v) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(events.iter().map(|e| e.contact_id).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.occur_time).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.channel).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.properties.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.revenue.clone()).collect::<Vec<_>>())
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// A scored feedback answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response_id: Uuid,
    pub question_id: String,
    pub contact_id: Uuid,
    pub kind: i16,
    pub score: i32,
    pub at: DateTime<Utc>,
}

pub async fn insert_answers(
    tx: &mut PgConnection,
    tenant: Uuid,
    answers: &[Answer],
) -> sqlx::Result<()> {
    if answers.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO segmentation.answers (tenant_id, response_id, question_id, contact_id, kind, \
             score, answer_time) \
         SELECT $1, r, q, c, k, s, t FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::int2[], \
             $6::int4[], $7::timestamptz[]) AS u(r, q, c, k, s, t) \
         WHERE NOT EXISTS (SELECT 1 FROM segmentation.forgotten_contacts f WHERE f.contact_id = u.c) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(answers.iter().map(|a| a.response_id).collect::<Vec<_>>())
    .bind(answers.iter().map(|a| a.question_id.clone()).collect::<Vec<_>>())
    .bind(answers.iter().map(|a| a.contact_id).collect::<Vec<_>>())
    .bind(answers.iter().map(|a| a.kind).collect::<Vec<_>>())
    .bind(answers.iter().map(|a| a.score).collect::<Vec<_>>())
    .bind(answers.iter().map(|a| a.at).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Forgets `contacts` entirely: profile, history, answers, memberships and
/// their record, and the payloads of segmentation's own feed events about
/// them (a deleted or erased person leaves no trace here), and remembers
/// their ids so that later news of them is not kept.
pub async fn forget(tx: &mut PgConnection, tenant: Uuid, contacts: &[Uuid]) -> sqlx::Result<()> {
    if contacts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO segmentation.forgotten_contacts (tenant_id, contact_id) \
         SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(contacts)
    .execute(&mut *tx)
    .await?;
    leave_all_segments(tx, contacts).await?;
    crate::events::OUTBOX.redact(tx, contacts).await?;
    for table in [
        "segmentation.profiles",
        "segmentation.stage_changes",
        "segmentation.events",
        "segmentation.answers",
        "segmentation.membership_changes",
        "segmentation.score_crossings",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE contact_id = ANY($1)"
        )))
        .bind(contacts)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Folds `duplicate` into `survivor`: its events, stage changes and
/// answers count for the survivor from now on; its profile goes, and it
/// leaves its segments (each exit recorded and on the feed: the
/// survivor's memberships are the ones that count).
pub async fn merge(
    tx: &mut PgConnection,
    tenant: Uuid,
    duplicate: Uuid,
    survivor: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    for table in ["segmentation.events", "segmentation.answers"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET contact_id = $2 WHERE contact_id = $1"
        )))
        .bind(duplicate)
        .bind(survivor)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "WITH moved AS (DELETE FROM segmentation.stage_changes WHERE contact_id = $1 \
                        RETURNING tenant_id, stage, change_time) \
         INSERT INTO segmentation.stage_changes (tenant_id, contact_id, stage, change_time) \
         SELECT tenant_id, $2, stage, change_time FROM moved ON CONFLICT DO NOTHING",
    )
    .bind(duplicate)
    .bind(survivor)
    .execute(&mut *tx)
    .await?;
    changes::leave_all(tx, tenant, duplicate, Cause::Event, now).await?;
    // Its noted score crossings go with it: the survivor is judged anew.
    for table in ["segmentation.profiles", "segmentation.score_crossings"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND contact_id = $2"
        )))
        .bind(tenant)
        .bind(duplicate)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Takes `contacts` out of every segment, keeping the counts right.
async fn leave_all_segments(tx: &mut PgConnection, contacts: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM segmentation.memberships WHERE contact_id = ANY($1) \
                       RETURNING segment_id), \
              counts AS (SELECT segment_id, count(*) AS n FROM gone GROUP BY segment_id) \
         UPDATE segmentation.segments s SET member_count = s.member_count - counts.n \
         FROM counts WHERE s.id = counts.segment_id",
    )
    .bind(contacts)
    .execute(tx)
    .await?;
    Ok(())
}
