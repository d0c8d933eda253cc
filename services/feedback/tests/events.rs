//! The feedback change feed, and how the contacts feed reaches feedback:
//! an erased contact's personal data leaves its responses while the scores
//! stay; a merged contact's responses follow the survivor.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use rapport_core::credential::{Access, Grant, Scope};
use rapport_proto::contacts::v1::{
    Contact, CreateContactRequest, EraseContactRequest, MergeContactsRequest,
};
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{EventEnvelope, SubscribeRequest};
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

/// The first `count` events of the feedback feed.
async fn feed(harness: &Harness, count: usize) -> Vec<EventEnvelope> {
    let channel = harness.feedback.channel_for(&Grant {
        tenant_id: None,
        principal: "test-consumer".into(),
        scopes: vec![Scope::new("feedback", Access::Read)],
    });
    let mut stream = EventFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while events.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the event arrives")
            .unwrap()
            .unwrap();
        events.push(next.event.unwrap());
    }
    events
}

async fn new_contact(harness: &Harness, tenant: Uuid, email: &str) -> Uuid {
    let contact = harness
        .contacts(tenant)
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                email: email.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    contact.id.parse().unwrap()
}

/// Polls until `check` holds, for effects that travel over a feed.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the change did not arrive");
}

#[tokio::test]
async fn invitations_answers_and_closing_are_on_the_feed() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let contact = Uuid::now_v7();
    let invited = invite(&mut client, &survey, &[contact]).await;
    let submitted = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 6), text("why", "Slow"), score("csat", 4)],
        true,
    )
    .await
    .unwrap();
    client
        .close_survey(CloseSurveyRequest {
            id: survey.id.clone(),
        })
        .await
        .unwrap();

    let events = feed(&harness, 3).await;
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "feedback.invitation_sent",
            "feedback.response_submitted",
            "feedback.survey_closed"
        ]
    );
    assert!(events.iter().all(|e| e.tenant_id == tenant.to_string()));

    let sent: InvitationSent = events[0].payload.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(sent.contact_id, contact.to_string());
    assert_eq!(sent.invitation_id, invited.invitations[0].id);

    let answered: ResponseSubmitted = events[1].payload.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(events[1].aggregate_id, submitted.response_id);
    assert_eq!(answered.contact_id, contact.to_string());
    assert_eq!(answered.touchpoint, "post-support");
    assert!(answered.has_comment);
    let scores: Vec<(String, i32, NpsCategory)> = answered
        .scores
        .iter()
        .map(|s| (s.question_id.clone(), s.score, s.nps_category()))
        .collect();
    assert_eq!(
        scores,
        vec![
            ("nps".into(), 6, NpsCategory::Detractor),
            ("csat".into(), 4, NpsCategory::Unspecified),
        ]
    );
    assert_eq!(
        (answered.scores[1].scale_min, answered.scores[1].scale_max),
        (1, 5)
    );

    let closed: SurveyClosed = events[2].payload.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(closed.survey_id, survey.id);
    assert_eq!(closed.completed_count, 1);
}

#[tokio::test]
async fn erasing_a_contact_keeps_its_scores_but_not_the_person() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let contact = new_contact(&harness, tenant, "erase.me@example.com").await;
    let invited = invite(&mut client, &survey, &[contact]).await;
    let submitted = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![
            score("nps", 2),
            text("why", "My name is Ana and I was ignored"),
        ],
        true,
    )
    .await
    .unwrap();

    harness
        .contacts(tenant)
        .erase_contact(EraseContactRequest {
            id: contact.to_string(),
        })
        .await
        .unwrap();

    let get = || {
        let mut client = client.clone();
        let id = submitted.response_id.clone();
        async move {
            client
                .get_response(GetResponseRequest { id })
                .await
                .unwrap()
                .into_inner()
                .response
                .unwrap()
        }
    };
    eventually(|| async { get().await.contact_id.is_empty() }).await;
    let response = get().await;
    assert_eq!(response.score, Some(2));
    let why = response
        .answers
        .iter()
        .find(|a| a.question_id == "why")
        .unwrap();
    assert_eq!(why.value, Some(answer::Value::Text(String::new())));

    // The scores still count.
    let summary = client
        .get_survey_summary(GetSurveySummaryRequest {
            survey_id: survey.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(summary.completed_count, 1);

    // The feed no longer names the contact.
    let events = feed(&harness, 2).await;
    for event in &events {
        let payload = event.payload.as_ref().unwrap();
        let named = match event.r#type.as_str() {
            "feedback.invitation_sent" => payload.to_msg::<InvitationSent>().unwrap().contact_id,
            _ => payload.to_msg::<ResponseSubmitted>().unwrap().contact_id,
        };
        assert!(named.is_empty(), "{} still names the contact", event.r#type);
    }

    // And the erased contact is not asked again.
    let again = invite(&mut client, &survey, &[contact]).await;
    assert_eq!(again.skipped[0].reason(), SkipReason::ContactErased);
}

#[tokio::test]
async fn a_merged_contacts_responses_follow_the_survivor() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let survivor = new_contact(&harness, tenant, "ana@example.com").await;
    let duplicate = new_contact(&harness, tenant, "ana.old@example.com").await;
    let invited = invite(&mut client, &survey, &[duplicate]).await;
    submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap();
    harness
        .contacts(tenant)
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.to_string(),
            duplicate_id: duplicate.to_string(),
        })
        .await
        .unwrap();
    eventually(|| {
        let mut client = client.clone();
        async move {
            let listed = client
                .list_responses(ListResponsesRequest {
                    contact_id: survivor.to_string(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            listed.responses.len() == 1
        }
    })
    .await;
}

#[tokio::test]
async fn the_outbox_matches_its_one_definition() {
    let harness = start().await;
    rapport_testkit::assert_outbox_matches_definition(&harness.db, "feedback", "rapport_feedback")
        .await;
}
