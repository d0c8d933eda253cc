//! Feedback end to end through the gateway: a survey is created and
//! activated with an API key, a contact is invited, the customer answers
//! through the public SubmitResponse with no key, and the summary and the
//! change feed show the answer.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use rapport_core::credential::{Access, Grant, Scope};
use rapport_e2e::{Suite, create_contact, named};
use rapport_proto::common::v1::Channel;
use rapport_proto::events::v1::SubscribeRequest;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::feedback::v1::question_summary::Figures;
use rapport_proto::feedback::v1::*;
use rapport_testkit::reason;
use tonic::Code;

fn english(text: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("en".to_owned(), text.to_owned())])
}

fn nps_survey() -> Survey {
    Survey {
        name: "After purchase".into(),
        touchpoint: "post-purchase".into(),
        channel: Channel::Email.into(),
        languages: vec!["en".into()],
        title: english("Thanks for your order"),
        questions: vec![
            Question {
                id: "nps".into(),
                kind: QuestionKind::Nps.into(),
                required: true,
                text: english("How likely are you to recommend us?"),
                ..Default::default()
            },
            Question {
                id: "comment".into(),
                kind: QuestionKind::FreeText.into(),
                text: english("Anything else?"),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// A client of the gateway that sends no API key at all, as a customer's
/// browser or a survey page would.
fn anonymous(suite: &Suite) -> FeedbackServiceClient<tonic::transport::Channel> {
    FeedbackServiceClient::new(suite.gateway.channel.clone())
}

#[tokio::test]
async fn a_survey_goes_from_creation_to_summary_and_feed_through_the_gateway() {
    let suite = Suite::start().await;
    let key = suite
        .tenant(named("feedback e2e"), &["contacts:write", "feedback:write"])
        .await;
    let client = suite.client(&key.secret);
    let mut feedback = client.feedback();

    let survey = feedback
        .create_survey(CreateSurveyRequest {
            survey: Some(nps_survey()),
            request_id: "e2e-survey".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    feedback
        .activate_survey(ActivateSurveyRequest {
            id: survey.id.clone(),
        })
        .await
        .unwrap();
    let contact = create_contact(&client, "buyer@example.com").await;
    let invited = feedback
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: vec![contact.id.clone()],
            request_id: "e2e-invite".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = invited.invitations[0].token.clone();

    // The customer answers with the token only: no API key.
    let answer = SubmitResponseRequest {
        token: token.clone(),
        answers: vec![
            Answer {
                question_id: "nps".into(),
                value: Some(Value::Score(10)),
            },
            Answer {
                question_id: "comment".into(),
                value: Some(Value::Text("Fast delivery".into())),
            },
        ],
        complete: true,
        language: "en".into(),
        request_id: "answer-1".into(),
    };
    let answered = anonymous(&suite)
        .submit_response(answer.clone())
        .await
        .unwrap()
        .into_inner();
    // The reply was lost: the retry gets the same answer, and counts once.
    let retried = anonymous(&suite)
        .submit_response(answer)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, answered);
    assert_eq!(answered.status(), ResponseStatus::Completed);
    let twice = anonymous(&suite)
        .submit_response(SubmitResponseRequest {
            token,
            complete: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&twice), "RESPONSE_ALREADY_COMPLETED");

    let summary = feedback
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
    assert_eq!(summary.response_rate, Some(1.0));
    let Some(Figures::Nps(nps)) = &summary.questions[0].figures else {
        panic!("nps figures")
    };
    assert_eq!((nps.promoters, nps.nps), (1, 100.0));
    let response = feedback
        .get_response(GetResponseRequest {
            id: answered.response_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(response.contact_id, contact.id);

    // The answer is on the feedback feed, which internal consumers read
    // from the service itself (the gateway does not route feeds).
    let channel = suite.feedback.channel_for(&Grant {
        tenant_id: None,
        principal: "e2e-consumer".into(),
        scopes: vec![Scope::new("feedback", Access::Read)],
    });
    let mut stream = EventFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest {
            from_position: 0,
            types: vec!["feedback.response_submitted".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // Progress messages (no event) may come first: skip them.
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(event) = stream.next().await.unwrap().unwrap().event {
                return event;
            }
        }
    })
    .await
    .expect("the event arrives");
    assert_eq!(event.tenant_id, key.tenant_id);
    let payload: ResponseSubmitted = event.payload.unwrap().to_msg().unwrap();
    assert_eq!(payload.response_id, answered.response_id);
    assert_eq!(payload.scores[0].nps_category(), NpsCategory::Promoter);
}

#[tokio::test]
async fn only_submit_response_is_public() {
    let suite = Suite::start().await;
    let contacts_only = suite
        .tenant(named("no feedback scope"), &["contacts:write"])
        .await;

    // Every other feedback call needs a key...
    let status = anonymous(&suite)
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // ...with the feedback scope.
    let status = suite
        .client(&contacts_only.secret)
        .feedback()
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "MISSING_SCOPE");

    // SubmitResponse with a made-up token reaches the service, which refuses it.
    let status = anonymous(&suite)
        .submit_response(SubmitResponseRequest {
            token: format!("fbi_{}", "x".repeat(43)),
            complete: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN");
}

/// A SubmitResponse with `token` from loopback address `from`: its status
/// (a made-up token gets to the service, which refuses it).
async fn submit_from(suite: &Suite, from: &str, token: &str) -> tonic::Status {
    FeedbackServiceClient::new(suite.channel_from(from))
        .submit_response(SubmitResponseRequest {
            token: token.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err()
}

#[tokio::test]
async fn one_client_flooding_public_calls_does_not_refuse_another() {
    let suite = Suite::start_with(|config| {
        config.service.public_rate_per_second = 1;
        config.service.public_rate_burst = 3;
    })
    .await;
    let token = format!("fbi_{}", "y".repeat(43));
    for _ in 0..3 {
        let status = submit_from(&suite, "127.0.0.2", &token).await;
        assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN", "{status:?}");
    }
    for _ in 0..20 {
        let limited = submit_from(&suite, "127.0.0.2", &token).await;
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert_eq!(reason(&limited), "PUBLIC_RATE_LIMITED");
    }
    // Another client address has its own allowance.
    let status = submit_from(&suite, "127.0.0.3", &token).await;
    assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN", "{status:?}");
}

#[tokio::test]
async fn a_token_has_a_rate_of_its_own_whoever_sends_it() {
    let suite = Suite::start_with(|config| {
        config.service.public_token_rate_per_second = 1;
        config.service.public_token_rate_burst = 2;
    })
    .await;
    let invitation = format!("fbi_{}", "z".repeat(43));
    for from in ["127.0.0.2", "127.0.0.3"] {
        let status = submit_from(&suite, from, &invitation).await;
        assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN", "{status:?}");
    }
    // The same token from a third address: over the token's rate.
    let limited = submit_from(&suite, "127.0.0.4", &invitation).await;
    assert_eq!(reason(&limited), "TOKEN_RATE_LIMITED", "{limited:?}");
    // Gzipped, the token is read all the same.
    let mut client = FeedbackServiceClient::new(suite.channel_from("127.0.0.5"))
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let limited = client
        .submit_response(SubmitResponseRequest {
            token: invitation.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&limited), "TOKEN_RATE_LIMITED", "{limited:?}");
    // Another token is not held back.
    let status = submit_from(&suite, "127.0.0.4", &format!("fbi_{}", "w".repeat(43))).await;
    assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN", "{status:?}");
}

#[tokio::test]
async fn a_persons_export_gathers_their_part_from_every_service() {
    let suite = Suite::start().await;
    let key = suite
        .tenant(
            named("privacy e2e"),
            &["contacts:write", "feedback:write", "segmentation:write"],
        )
        .await;
    let client = suite.client(&key.secret);
    let mut feedback = client.feedback();
    let survey = feedback
        .create_survey(CreateSurveyRequest {
            survey: Some(nps_survey()),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    feedback
        .activate_survey(ActivateSurveyRequest {
            id: survey.id.clone(),
        })
        .await
        .unwrap();
    let contact = create_contact(&client, "person@example.com").await;
    let invited = feedback
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: vec![contact.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    anonymous(&suite)
        .submit_response(SubmitResponseRequest {
            token: invited.invitations[0].token.clone(),
            answers: vec![
                Answer {
                    question_id: "nps".into(),
                    value: Some(Value::Score(9)),
                },
                Answer {
                    question_id: "comment".into(),
                    value: Some(Value::Text("The parcel came wrapped in paper".into())),
                },
            ],
            complete: true,
            language: "en".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    // rapportctl, as an operator of the tenant would run it.
    let output = tokio::process::Command::new(
        rapport_testkit::process::sibling_binary("rapportctl").unwrap(),
    )
    .args([
        "--endpoint",
        &format!("http://{}", suite.gateway.addr),
        "privacy",
        "export",
        &contact.id,
    ])
    .env("RAPPORT_API_KEY", &key.secret)
    .output()
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let export: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let contacts = export["contacts"].to_string();
    assert!(contacts.contains("person@example.com"), "{contacts}");
    let feedback = export["feedback"].to_string();
    assert!(
        feedback.contains("The parcel came wrapped in paper"),
        "{feedback}"
    );
    assert!(
        !feedback.contains(&invited.invitations[0].token),
        "never a token"
    );
    assert!(export["segmentation"].is_array(), "{export}");
}
