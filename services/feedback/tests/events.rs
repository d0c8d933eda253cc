//! The feedback change feed, and how the contacts feed reaches feedback:
//! an erased contact's personal data leaves its responses while the scores
//! stay; a merged contact's responses follow the survivor.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use rapport_core::credential::{Access, Grant, Scope};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{ContactErased, EraseContactRequest, MergeContactsRequest};
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
    let contact = harness.contact(tenant, "ana@example.com").await;
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
    let contact = harness.contact(tenant, "erase.me@example.com").await;
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
    let summary = summary(&mut client, &survey.id).await;
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
    let survivor = harness.contact(tenant, "ana@example.com").await;
    let duplicate = harness.contact(tenant, "ana.old@example.com").await;
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

#[tokio::test]
async fn a_merge_then_an_erasure_missed_while_stopped_forget_the_duplicate_too() {
    let Harness {
        feedback,
        contacts,
        db,
    } = start().await;
    let tenant = Uuid::now_v7();
    let harness = Harness {
        feedback,
        contacts,
        db,
    };
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let survivor = harness.contact(tenant, "survivor@example.com").await;
    let duplicate = harness.contact(tenant, "duplicate@example.com").await;
    let invited = invite(&mut client, &survey, &[duplicate]).await;
    let submitted = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 3), text("why", "The duplicate's own words")],
        true,
    )
    .await
    .unwrap();

    // Feedback stops; the duplicate is merged into the survivor, which is
    // then erased, before feedback has seen either.
    let Harness {
        feedback,
        contacts,
        db,
    } = harness;
    feedback.shutdown().await.unwrap();
    let mut people = ContactsServiceClient::new(contacts.tenant_channel(tenant));
    people
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.to_string(),
            duplicate_id: duplicate.to_string(),
        })
        .await
        .unwrap();
    people
        .erase_contact(EraseContactRequest {
            id: survivor.to_string(),
        })
        .await
        .unwrap();
    let feedback = start_feedback(&db, &contacts).await;
    let harness = Harness {
        feedback,
        contacts,
        db,
    };

    // It catches up (lag 0), and nothing is set aside.
    let mut admin = harness.db.admin().await;
    let caught_up = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (head, cursor): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT last_position FROM contacts.outbox_state), \
                        (SELECT position FROM feedback.feed_cursors)",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if head == cursor {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(caught_up.is_ok(), "feedback did not catch up");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.dead_letters")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(dead, 0);

    let response = harness
        .client(tenant)
        .get_response(GetResponseRequest {
            id: submitted.response_id,
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(response.contact_id, "", "the person is forgotten");
    let why = response
        .answers
        .iter()
        .find(|a| a.question_id == "why")
        .unwrap();
    assert_eq!(why.value, Some(answer::Value::Text(String::new())));
    assert_eq!(response.score, Some(3), "the score stays for the KPIs");
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_replayed_through_the_service() {
    use rapport_proto::events::v1::dead_letter_service_client::DeadLetterServiceClient;
    use rapport_proto::events::v1::{ListDeadLettersRequest, ReplayDeadLettersRequest};
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let contact = harness.contact(tenant, "dead.letter@example.com").await;
    let invited = invite(&mut client, &survey, &[contact]).await;
    let submitted = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 4), text("why", "Words to forget")],
        true,
    )
    .await
    .unwrap();

    // An erasure the consumer set aside (as after a bug), kept in its schema.
    let erased = ContactErased {
        contact_id: contact.to_string(),
        merged_ids: Vec::new(),
    };
    let envelope = EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        tenant_id: tenant.to_string(),
        producer: "contacts".into(),
        r#type: "contact.erased".into(),
        aggregate_id: contact.to_string(),
        occur_time: Some(prost_types::Timestamp::default()),
        position: 1_000_000,
        payload: Some(prost_types::Any::from_msg(&erased).unwrap()),
        traceparent: String::new(),
    };
    sqlx::query(
        "INSERT INTO feedback.dead_letters (consumer, position, envelope, error, attempts, dead_time) \
         VALUES ('feedback.contacts_v2', $1, $2, 'a bug', 3, now())",
    )
    .bind(envelope.position)
    .bind(prost::Message::encode_to_vec(&envelope))
    .execute(&mut harness.db.admin().await)
    .await
    .unwrap();

    let operator = harness.feedback.channel_for(&Grant {
        tenant_id: None,
        principal: "operator".into(),
        scopes: vec![Scope::new("feedback", Access::Write)],
    });
    let mut letters = DeadLetterServiceClient::new(operator);
    let listed = letters
        .list_dead_letters(ListDeadLettersRequest {
            consumer: "feedback.contacts_v2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1);
    assert_eq!(listed.dead_letters[0].error, "a bug");
    let replayed = letters
        .replay_dead_letters(ReplayDeadLettersRequest {
            consumer: "feedback.contacts_v2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replayed.replayed, replayed.failed), (1, 0));
    let response = client
        .get_response(GetResponseRequest {
            id: submitted.response_id,
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(response.contact_id, "");

    // A tenant's credential cannot reach them.
    let err = DeadLetterServiceClient::new(harness.feedback.tenant_channel(tenant))
        .list_dead_letters(ListDeadLettersRequest {
            consumer: "feedback.contacts_v2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn the_consumer_schema_matches_its_one_definition() {
    let harness = start().await;
    rapport_testkit::assert_consumer_matches_definition(
        &harness.db,
        "feedback",
        "rapport_feedback",
    )
    .await;
}
