//! What the per-contact evaluator needs of a few contacts, read from the
//! projections in a handful of statements (one per kind of fact).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::evaluate::{AnswerFact, ContactFacts, EventFact, ProfileFacts};
use crate::domain::reads::Reads;

type ProfileRow = (
    Uuid,
    String,
    String,
    String,
    DateTime<Utc>,
    sqlx::types::Json<serde_json::Value>,
    Vec<String>,
    i16,
    Vec<i16>,
);

type EventRecord = (
    Uuid,
    String,
    DateTime<Utc>,
    i16,
    Option<sqlx::types::Json<serde_json::Value>>,
    Option<String>,
    Option<String>,
);

/// The facts of `contacts` that `reads` asks for at `now` (events only of
/// its types, and only as old as its windows look back), with every
/// contact's current memberships; contacts segmentation does not know are
/// left out.
pub async fn load(
    tx: &mut PgConnection,
    tenant: Uuid,
    contacts: &[Uuid],
    reads: &Reads,
    now: DateTime<Utc>,
) -> sqlx::Result<HashMap<Uuid, ContactFacts>> {
    // JSON is decoded only where a rule reads it.
    let profiles: Vec<ProfileRow> = sqlx::query_as(
        "SELECT contact_id, email_domain, locale, time_zone, create_time, \
                CASE WHEN $3 THEN attributes ELSE '{}'::jsonb END, tags, stage, consents \
         FROM segmentation.profiles WHERE tenant_id = $1 AND contact_id = ANY($2)",
    )
    .bind(tenant)
    .bind(contacts)
    .bind(reads.profile)
    .fetch_all(&mut *tx)
    .await?;
    let mut facts: HashMap<Uuid, ContactFacts> = profiles
        .into_iter()
        .map(|row| {
            let (
                id,
                email_domain,
                locale,
                time_zone,
                create_time,
                attributes,
                tags,
                stage,
                consents,
            ) = row;
            let profile = ProfileFacts {
                email_domain,
                locale,
                time_zone,
                create_time,
                attributes: attributes.0,
                tags,
                stage,
                consents,
            };
            (
                id,
                ContactFacts {
                    profile,
                    stages: Vec::new(),
                    events: Vec::new(),
                    answers: Vec::new(),
                    segments: Default::default(),
                },
            )
        })
        .collect();
    let known: Vec<Uuid> = facts.keys().copied().collect();
    if known.is_empty() {
        return Ok(facts);
    }
    if reads.stages {
        let stages: Vec<(Uuid, i16, DateTime<Utc>)> = sqlx::query_as(
            "SELECT contact_id, stage, change_time FROM segmentation.stage_changes \
             WHERE tenant_id = $1 AND contact_id = ANY($2)",
        )
        .bind(tenant)
        .bind(&known)
        .fetch_all(&mut *tx)
        .await?;
        for (id, stage, at) in stages {
            if let Some(contact) = facts.get_mut(&id) {
                contact.stages.push((stage, at));
            }
        }
    }
    if !reads.event_types.is_empty() {
        let types: Vec<&String> = reads.event_types.iter().collect();
        let events: Vec<EventRecord> = sqlx::query_as(
            "SELECT contact_id, type, occur_time, channel, CASE WHEN $5 THEN properties END, \
                    currency, revenue::text \
             FROM segmentation.events \
             WHERE tenant_id = $1 AND contact_id = ANY($2) AND type = ANY($3) \
               AND occur_time >= coalesce($4, '-infinity')",
        )
        .bind(tenant)
        .bind(&known)
        .bind(types)
        .bind(reads.events_since(now))
        .bind(reads.event_properties)
        .fetch_all(&mut *tx)
        .await?;
        for (id, event_type, occur_time, channel, properties, currency, revenue) in events {
            if let Some(contact) = facts.get_mut(&id) {
                contact.events.push(EventFact {
                    event_type,
                    occur_time,
                    channel,
                    properties: properties.map(|json| json.0),
                    currency,
                    revenue,
                });
            }
        }
    }
    if reads.answers {
        type AnswerRow = (Uuid, i16, i32, DateTime<Utc>, Uuid, String);
        let answers: Vec<AnswerRow> = sqlx::query_as(
            "SELECT contact_id, kind, score, answer_time, response_id, question_id \
             FROM segmentation.answers WHERE tenant_id = $1 AND contact_id = ANY($2)",
        )
        .bind(tenant)
        .bind(&known)
        .fetch_all(&mut *tx)
        .await?;
        for (id, kind, score, answer_time, response_id, question_id) in answers {
            if let Some(contact) = facts.get_mut(&id) {
                contact.answers.push(AnswerFact {
                    kind,
                    score,
                    answer_time,
                    response_id,
                    question_id,
                });
            }
        }
    }
    let memberships: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT contact_id, segment_id FROM segmentation.memberships \
         WHERE tenant_id = $1 AND contact_id = ANY($2)",
    )
    .bind(tenant)
    .bind(&known)
    .fetch_all(&mut *tx)
    .await?;
    for (id, segment) in memberships {
        if let Some(contact) = facts.get_mut(&id) {
            contact.segments.insert(segment);
        }
    }
    Ok(facts)
}
