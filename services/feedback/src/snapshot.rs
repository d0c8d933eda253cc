//! The snapshot of the feedback feed a new consumer starts from: every
//! tenant's completed responses, each as the `feedback.response_submitted`
//! event describes it (`ResponseSubmitted`): scores, never the free text.

use std::collections::HashMap;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_events::snapshot::{SnapshotKey, SnapshotSource, item, kind};
use rapport_proto::events::v1::SnapshotItem;
use rapport_proto::feedback::v1::ResponseSubmitted;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::events;
use crate::store::{invitation, response, survey};

pub struct FeedbackSnapshot;

impl SnapshotSource for FeedbackSnapshot {
    fn kinds(&self) -> Vec<String> {
        vec![kind::<ResponseSubmitted>()]
    }

    fn page<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        requested: &'a str,
        after: Option<SnapshotKey>,
        limit: i64,
    ) -> BoxFuture<'a, sqlx::Result<Vec<(SnapshotKey, SnapshotItem)>>> {
        async move {
            if requested != kind::<ResponseSubmitted>() {
                return Ok(Vec::new());
            }
            let page = response::completed_snapshot_page(tx, after, limit).await?;
            let ids: Vec<Uuid> = page.iter().map(|(_, r)| r.id).collect();
            let survey_ids: Vec<Uuid> = page.iter().map(|(_, r)| r.survey_id).collect();
            let invitation_ids: Vec<Uuid> = page.iter().map(|(_, r)| r.invitation_id).collect();
            let mut answers = response::answers(tx, &ids).await?;
            let surveys: HashMap<Uuid, _> = survey::get_many(tx, &survey_ids)
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            let invitations: HashMap<Uuid, _> = invitation::get_many(tx, &invitation_ids)
                .await?
                .into_iter()
                .map(|i| (i.id, i))
                .collect();
            Ok(page
                .into_iter()
                .filter_map(|(tenant, response)| {
                    let survey = surveys.get(&response.survey_id)?;
                    let invitation = invitations.get(&response.invitation_id)?;
                    let answers = answers.remove(&response.id).unwrap_or_default();
                    let submitted =
                        events::response_submitted(survey, invitation, &response, &answers);
                    Some(((tenant, response.id), item(tenant, &submitted)))
                })
                .collect())
        }
        .boxed()
    }
}
