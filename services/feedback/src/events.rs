//! The feedback change feed: its outbox, and the events each change
//! writes. Event types and payloads are the messages of
//! `rapport/feedback/v1/events.proto`; each declares its type there. Free
//! text never travels on the feed.

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_events::{Outbox, OutboxEvent};
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use crate::domain::answer;
use crate::domain::question;
use crate::domain::score::nps_category;
use crate::store::invitation::StoredInvitation;
use crate::store::response::StoredResponse;
use crate::store::survey::StoredSurvey;

/// The feedback change feed.
pub const OUTBOX: Outbox = Outbox {
    producer: "feedback",
    schema: "feedback",
};

/// `feedback.invitation_sent` for a new invitation of a contact.
pub fn invitation_sent(invitation: &StoredInvitation) -> OutboxEvent {
    OutboxEvent::new(
        invitation.id,
        &InvitationSent {
            invitation_id: invitation.id.to_string(),
            survey_id: invitation.survey_id.to_string(),
            contact_id: invitation
                .contact_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            channel: invitation.channel.into(),
            expire_time: Some(to_timestamp(invitation.expire_time)),
        },
    )
}

/// `feedback.survey_closed`.
pub fn survey_closed(survey: Uuid, completed_count: i64, now: DateTime<Utc>) -> OutboxEvent {
    OutboxEvent::new(
        survey,
        &SurveyClosed {
            survey_id: survey.to_string(),
            close_time: Some(to_timestamp(now)),
            completed_count,
        },
    )
}

/// The payload of `feedback.response_submitted`: each scored answer, never
/// the free text.
pub fn response_submitted(
    survey: &StoredSurvey,
    invitation: &StoredInvitation,
    response: &StoredResponse,
    answers: &[Answer],
) -> ResponseSubmitted {
    let scores = survey
        .survey
        .questions
        .iter()
        .filter_map(|question| {
            let (min, max) = question::scale(question)?;
            let score = answers
                .iter()
                .find(|a| a.question_id == question.id)
                .and_then(answer::score)?;
            let nps_category = if question.kind() == QuestionKind::Nps {
                nps_category(score)
            } else {
                NpsCategory::Unspecified
            };
            Some(ScoreAnswered {
                question_id: question.id.clone(),
                kind: question.kind,
                score,
                scale_min: min,
                scale_max: max,
                nps_category: nps_category.into(),
            })
        })
        .collect();
    ResponseSubmitted {
        response_id: response.id.to_string(),
        survey_id: survey.id.to_string(),
        invitation_id: if invitation.anonymous {
            String::new()
        } else {
            invitation.id.to_string()
        },
        contact_id: invitation
            .contact_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        touchpoint: response.touchpoint.clone(),
        channel: response.channel.into(),
        complete_time: response.complete_time.map(to_timestamp),
        scores,
        has_comment: response.has_comment,
    }
}
