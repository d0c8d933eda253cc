//! The projections follow the feeds: profile changes, lifecycle and
//! consent changes, feedback answers; a merge makes the duplicate's
//! behaviour count for the survivor; an erasure leaves nothing behind.

mod common;

use std::collections::BTreeMap;

use common::*;
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::{
    ChangeConsentRequest, ChangeLifecycleStageRequest, Consent, ConsentStatus, EraseContactRequest,
    MergeContactsRequest,
};
use rapport_proto::feedback::v1 as fb;
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::reason;
use tonic::Code;
use uuid::Uuid;

/// Answers an NPS survey as `contact` with `score`, through the feedback
/// API and its public SubmitResponse.
async fn answer_nps(harness: &Harness, tenant: Uuid, contact: &str, score: i32) {
    let mut feedback = FeedbackServiceClient::new(harness.feedback.tenant_channel(tenant));
    let english = |text: &str| BTreeMap::from([("en".to_owned(), text.to_owned())]);
    let survey = feedback
        .create_survey(fb::CreateSurveyRequest {
            survey: Some(fb::Survey {
                name: "NPS".into(),
                touchpoint: "quarterly".into(),
                channel: Channel::Email.into(),
                languages: vec!["en".into()],
                title: english("How likely..."),
                questions: vec![fb::Question {
                    id: "nps".into(),
                    kind: fb::QuestionKind::Nps.into(),
                    required: true,
                    text: english("nps"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    feedback
        .activate_survey(fb::ActivateSurveyRequest {
            id: survey.id.clone(),
        })
        .await
        .unwrap();
    let invited = feedback
        .create_invitations(fb::CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: vec![contact.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = invited.invitations[0].token.clone();
    let mut public =
        FeedbackServiceClient::new(harness.feedback.channel_for(&rapport_core::Grant {
            tenant_id: None,
            principal: "public".into(),
            scopes: Vec::new(),
        }));
    public
        .submit_response(fb::SubmitResponseRequest {
            token,
            answers: vec![fb::Answer {
                question_id: "nps".into(),
                value: Some(fb::answer::Value::Score(score)),
            }],
            complete: true,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn promoters() -> Rule {
    leaf(rule::Node::NpsCategory(NpsCategoryCondition {
        categories: vec![NpsCategory::Promoter.into()],
    }))
}

fn nps_between(min: i32, max: i32) -> Rule {
    leaf(rule::Node::Score(ScoreCondition {
        kind: ScoreKind::Nps.into(),
        min,
        max,
        window: within(30),
    }))
}

#[tokio::test]
async fn changes_on_both_feeds_reach_the_rules() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    let bob = new_contact(&mut contacts, "bob@example.com").await;
    contacts
        .change_consent(ChangeConsentRequest {
            contact_id: ann.id.clone(),
            consent: Some(Consent {
                channel: Channel::Sms.into(),
                status: ConsentStatus::Subscribed.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    contacts
        .change_lifecycle_stage(ChangeLifecycleStageRequest {
            contact_id: bob.id.clone(),
            lifecycle_stage: LifecycleStage::Advocacy.into(),
            source: "test".into(),
        })
        .await
        .unwrap();
    answer_nps(&harness, tenant, &ann.id, 10).await;
    answer_nps(&harness, tenant, &bob.id, 3).await;
    harness.settle().await;

    let sms = preview(&mut client, consent(Channel::Sms, ConsentState::Subscribed)).await;
    assert_eq!(sms.sample_contact_ids, [ann.id.as_str()]);
    let advocates = preview(
        &mut client,
        leaf(rule::Node::StageEntered(StageEnteredCondition {
            stage: LifecycleStage::Advocacy.into(),
            within_days: 1,
        })),
    )
    .await;
    assert_eq!(advocates.sample_contact_ids, [bob.id.as_str()]);
    assert_eq!(
        preview(&mut client, promoters()).await.sample_contact_ids,
        [ann.id.as_str()]
    );
    assert_eq!(
        preview(&mut client, nps_between(0, 6))
            .await
            .sample_contact_ids,
        [bob.id.as_str()]
    );

    // Bob's later answer makes him a promoter: the latest counts.
    answer_nps(&harness, tenant, &bob.id, 9).await;
    harness.settle().await;
    assert_eq!(preview(&mut client, promoters()).await.count, 2);
    // Scores age out of a window.
    harness
        .advance_clock(std::time::Duration::from_secs(31 * 24 * 3600))
        .await;
    assert_eq!(preview(&mut client, nps_between(0, 10)).await.count, 0);
}

#[tokio::test]
async fn a_merged_duplicates_behaviour_counts_for_the_survivor() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let survivor = new_contact(&mut contacts, "ann@example.com").await;
    let duplicate = new_contact(&mut contacts, "ann.work@example.com").await;
    record(
        &mut contacts,
        &survivor.id,
        &[("order.placed", days_ago(2), None)],
    )
    .await;
    record(
        &mut contacts,
        &duplicate.id,
        &[("order.placed", days_ago(3), None)],
    )
    .await;
    harness.settle().await;
    let twice = counted("order.placed", 30, Operator::GreaterOrEqual, 2.0);
    assert_eq!(preview(&mut client, twice.clone()).await.count, 0);
    let segment = create(&mut client, list("Known")).await;
    client
        .add_list_members(AddListMembersRequest {
            segment_id: segment.id.clone(),
            contact_ids: vec![duplicate.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();

    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.id.clone(),
            duplicate_id: duplicate.id.clone(),
        })
        .await
        .unwrap();
    harness.settle().await;
    let merged = preview(&mut client, twice).await;
    assert_eq!(merged.sample_contact_ids, [survivor.id.as_str()]);
    assert_eq!(merged.contact_count, 1);
    // The duplicate is no one's member any more, and counts show it.
    let count = client
        .count_segment(CountSegmentRequest {
            segment_id: segment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.member_count, 0);
}

#[tokio::test]
async fn an_erased_person_leaves_nothing_behind() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    record(
        &mut contacts,
        &ann.id,
        &[("order.placed", days_ago(2), Some(10))],
    )
    .await;
    answer_nps(&harness, tenant, &ann.id, 9).await;
    harness.settle().await;
    let buyers = create(
        &mut client,
        dynamic(
            "Buyers",
            counted("order.placed", 30, Operator::GreaterOrEqual, 1.0),
        ),
    )
    .await;
    built(&mut client, &buyers.id, 1).await;
    assert_eq!(member_ids(&mut client, &buyers.id).await, [ann.id.as_str()]);

    contacts
        .erase_contact(EraseContactRequest { id: ann.id.clone() })
        .await
        .unwrap();
    harness.settle().await;

    let error = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: ann.id.clone(),
            target: Some(explain_membership_request::Target::SegmentId(
                buyers.id.clone(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(reason(&error), "CONTACT_NOT_FOUND");
    assert!(member_ids(&mut client, &buyers.id).await.is_empty());
    let mut admin = harness.db.admin().await;
    for table in [
        "profiles",
        "stage_changes",
        "events",
        "answers",
        "memberships",
        "membership_changes",
    ] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM segmentation.{table} WHERE contact_id = $1::uuid"
        )))
        .bind(&ann.id)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} still holds the erased contact");
    }
    let segment = client
        .get_segment(GetSegmentRequest { id: buyers.id })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(segment.member_count, 0);
}
