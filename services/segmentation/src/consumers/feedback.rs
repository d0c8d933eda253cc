//! Follows the feedback feed into the scored-answers projection: each
//! completed response's NPS, CSAT and CES answers, by contact. Responses
//! of no contact (anonymous, or erased since) are not kept. The segments
//! that read answers are judged again for the contacts who answered.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_core::Clock;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{
    Handler, Subscription, forget_projection, payload, snapshot_payload,
};
use rapport_events::snapshot::kind;
use rapport_proto::EventPayload as _;
use rapport_proto::events::v1::{EventEnvelope, SnapshotItem};
use rapport_proto::feedback::v1::ResponseSubmitted;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::projection::score_kind;
use crate::domain::reads::Reads;
use crate::domain::segment::Cause;
use crate::live::{self, Touched};
use crate::store::projection::{self, Answer};

/// What segmentation follows of the feedback feed.
pub const SUBSCRIPTION: Subscription = Subscription {
    consumer: "segmentation.feedback",
    producer: "feedback",
    schema: "segmentation",
    types: &[ResponseSubmitted::EVENT_TYPE],
};

pub struct FeedbackChanges {
    pub clock: Clock,
}

fn answers(response: &ResponseSubmitted) -> anyhow::Result<Vec<Answer>> {
    if response.contact_id.is_empty() {
        return Ok(Vec::new());
    }
    let contact_id = Uuid::parse_str(&response.contact_id)?;
    let response_id = Uuid::parse_str(&response.response_id)?;
    let at = response
        .complete_time
        .as_ref()
        .and_then(to_datetime)
        .unwrap_or_default();
    Ok(response
        .scores
        .iter()
        .filter_map(|score| {
            Some(Answer {
                response_id,
                question_id: score.question_id.clone(),
                contact_id,
                kind: score_kind(score.kind)?,
                score: score.score,
                at,
            })
        })
        .collect())
}

impl Handler for FeedbackChanges {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = events.first() else {
                return Ok(());
            };
            let tenant = Uuid::parse_str(&first.tenant_id)?;
            live::take_turn(tx, tenant).await?;
            let mut found = Vec::new();
            for event in events {
                if let Some(response) = payload::<ResponseSubmitted>(event)? {
                    found.extend(answers(&response)?);
                }
            }
            let mut touched = Touched::default();
            for answer in &found {
                touched.touch(answer.contact_id, Reads::answers());
            }
            projection::insert_answers(tx, tenant, &found).await?;
            live::judge_again(tx, tenant, &touched, Cause::Event, self.clock.now()).await?;
            Ok(())
        }
        .boxed()
    }

    fn snapshot_kinds(&self) -> Vec<String> {
        vec![kind::<ResponseSubmitted>()]
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        items: &'a [SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = items.first() else {
                return Ok(());
            };
            let mut found = Vec::new();
            for item in items {
                if let Some(response) = snapshot_payload::<ResponseSubmitted>(item)? {
                    found.extend(answers(&response)?);
                }
            }
            projection::insert_answers(tx, Uuid::parse_str(&first.tenant_id)?, &found).await?;
            Ok(())
        }
        .boxed()
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            forget_projection(tx, &["segmentation.answers"]).await?;
            Ok(())
        }
        .boxed()
    }
}
