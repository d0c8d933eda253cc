//! Survey RPCs against PostgreSQL: create, get, update, list, activate, close.

mod common;

use common::*;
use prost_types::FieldMask;
use rapport_proto::feedback::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn a_survey_is_created_read_and_listed() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let mut csat = question("csat", QuestionKind::Csat, true);
    csat.scale_max = 0;
    let mut survey = nps_survey();
    survey.questions.push({
        let mut text = question("more", QuestionKind::FreeText, false);
        text.max_length = 0;
        text
    });
    let created = create_survey(&mut client, survey).await;
    assert_eq!(created.status(), SurveyStatus::Draft);
    assert!(!created.etag.is_empty());
    // Defaults are spelled out: CSAT 1-5, free text 2000 characters.
    assert_eq!(created.questions[2].scale_max, 5);
    assert_eq!(created.questions[4].max_length, 2000);
    assert!(created.anonymous_link_token.is_empty());

    let got = client
        .get_survey(GetSurveyRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(got, created);

    let mut other = nps_survey();
    other.touchpoint = "onboarding".into();
    let second = active_survey(&mut client, other).await;
    let listed = client
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed.surveys.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, vec![second.id.clone(), created.id.clone()]);
    let active = client
        .list_surveys(ListSurveysRequest {
            status: SurveyStatus::Active.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.surveys.len(), 1);
    let page = client
        .list_surveys(ListSurveysRequest {
            page_size: 1,
            touchpoint: "post-support".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.surveys[0].id, created.id);
    assert!(page.next_page_token.is_empty());
}

/// The NPS survey in English and Brazilian Portuguese.
fn bilingual_survey() -> Survey {
    let mut survey = nps_survey();
    survey.languages.push("pt-BR".into());
    let translate = |texts: &mut std::collections::BTreeMap<String, String>| {
        let english = texts["en"].clone();
        texts.insert("pt-BR".into(), format!("{english} (pt)"));
    };
    translate(&mut survey.title);
    for question in &mut survey.questions {
        translate(&mut question.text);
        for choice in &mut question.choices {
            translate(&mut choice.label);
        }
    }
    survey
}

#[tokio::test]
async fn create_is_idempotent_by_request_id() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    // Several languages: maps must encode the same way on every retry.
    let request = CreateSurveyRequest {
        survey: Some(bilingual_survey()),
        request_id: "survey-1".into(),
    };
    let first = client
        .create_survey(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client.create_survey(request).await.unwrap().into_inner();
    assert_eq!(first, again);
    let listed = client
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.surveys.len(), 1);
}

#[tokio::test]
async fn invalid_surveys_name_every_bad_field_and_write_nothing() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let mut survey = nps_survey();
    survey.name = String::new();
    survey.channel = 0;
    survey.questions[0].kind = 0;
    survey.questions[3].choices.truncate(1);
    let status = client
        .create_survey(CreateSurveyRequest {
            survey: Some(survey),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec![
            "survey.name",
            "survey.channel",
            "survey.questions[0].kind",
            "survey.questions[3].choices",
        ]
    );
    let listed = client
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.surveys.is_empty());
}

#[tokio::test]
async fn update_applies_the_mask_and_checks_the_etag() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let created = create_survey(&mut client, nps_survey()).await;
    let updated = client
        .update_survey(UpdateSurveyRequest {
            survey: Some(Survey {
                id: created.id.clone(),
                name: "After chat".into(),
                touchpoint: "ignored-not-in-mask".into(),
                anonymous_link_enabled: true,
                ..Default::default()
            }),
            update_mask: mask(&["name", "anonymous_link_enabled"]),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(updated.name, "After chat");
    assert_eq!(updated.touchpoint, "post-support");
    assert!(updated.anonymous_link_token.starts_with("fba_"));
    assert_ne!(updated.etag, created.etag);

    let stale = client
        .update_survey(UpdateSurveyRequest {
            survey: Some(Survey {
                id: created.id.clone(),
                name: "Late".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(reason(&stale), "ETAG_MISMATCH");

    let bad_path = client
        .update_survey(UpdateSurveyRequest {
            survey: Some(Survey {
                id: created.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["status"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_path), vec!["update_mask.paths[0]"]);
}

#[tokio::test]
async fn answered_questions_keep_their_meaning() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let invited = invite(&mut client, &survey, &harness.people(tenant, 1).await).await;
    submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap();

    let update = |questions: Vec<Question>| UpdateSurveyRequest {
        survey: Some(Survey {
            id: survey.id.clone(),
            questions,
            ..Default::default()
        }),
        update_mask: mask(&["questions"]),
        etag: String::new(),
    };
    // Adding a question and a choice, and rewording, are fine.
    let mut grown = survey.questions.clone();
    grown[0]
        .text
        .insert("en".into(), "Would you recommend us?".into());
    grown[3].choices.push(Choice {
        id: "docs".into(),
        label: [("en".to_owned(), "Docs".to_owned())].into(),
    });
    grown.push(question("extra", QuestionKind::Rating, false));
    client.update_survey(update(grown.clone())).await.unwrap();

    // Re-scaling the CSAT question is not.
    let mut rescaled = grown.clone();
    rescaled[2].scale_max = 7;
    let status = client.update_survey(update(rescaled)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "SURVEY_HAS_RESPONSES");
    assert!(
        status.message().contains("\"csat\""),
        "{}",
        status.message()
    );

    // Nor is deleting a question.
    let mut shrunk = grown;
    shrunk.pop();
    shrunk.remove(2);
    let status = client.update_survey(update(shrunk)).await.unwrap_err();
    assert_eq!(reason(&status), "SURVEY_HAS_RESPONSES");
}

#[tokio::test]
async fn status_changes_follow_the_survey_life() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let draft = create_survey(&mut client, nps_survey()).await;
    let status = client
        .close_survey(CloseSurveyRequest {
            id: draft.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SURVEY_NOT_ACTIVE");

    let mut empty = nps_survey();
    empty.questions.clear();
    let empty = create_survey(&mut client, empty).await;
    let status = client
        .activate_survey(ActivateSurveyRequest { id: empty.id })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SURVEY_HAS_NO_QUESTIONS");

    let active = client
        .activate_survey(ActivateSurveyRequest {
            id: draft.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(active.status(), SurveyStatus::Active);
    let closed = client
        .close_survey(CloseSurveyRequest {
            id: draft.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(closed.status(), SurveyStatus::Closed);
    // Closing again changes nothing.
    let again = client
        .close_survey(CloseSurveyRequest { id: draft.id })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(again.etag, closed.etag);

    let missing = client
        .get_survey(GetSurveyRequest {
            id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn settings_default_and_update() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let settings = client
        .get_feedback_settings(GetFeedbackSettingsRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(settings.fatigue_days, 0);
    let updated = client
        .update_feedback_settings(UpdateFeedbackSettingsRequest {
            settings: Some(FeedbackSettings { fatigue_days: 14 }),
            update_mask: mask(&["fatigue_days"]),
        })
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(updated.fatigue_days, 14);
    let status = client
        .update_feedback_settings(UpdateFeedbackSettingsRequest {
            settings: Some(FeedbackSettings { fatigue_days: 400 }),
            update_mask: mask(&["fatigue_days"]),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["settings.fatigue_days"]);
}

#[tokio::test]
async fn an_empty_mask_updates_the_fields_set_and_a_star_updates_every_field() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let created = create_survey(&mut client, nps_survey()).await;

    // Empty mask (AIP-134): every field set in the request, nothing else.
    let renamed = client
        .update_survey(UpdateSurveyRequest {
            survey: Some(Survey {
                id: created.id.clone(),
                name: "After chat".into(),
                fatigue_days: 14,
                ..Default::default()
            }),
            update_mask: None,
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(renamed.name, "After chat");
    assert_eq!(renamed.fatigue_days, 14);
    assert_eq!(renamed.touchpoint, created.touchpoint);
    assert_eq!(renamed.questions, created.questions);

    // `*`: every updatable field, so what the request leaves unset is cleared.
    let mut replacement = renamed.clone();
    replacement.fatigue_days = 0;
    replacement.name = "Replaced".into();
    let replaced = client
        .update_survey(UpdateSurveyRequest {
            survey: Some(replacement),
            update_mask: mask(&["*"]),
            etag: renamed.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(replaced.name, "Replaced");
    assert_eq!(replaced.fatigue_days, 0);
    assert_eq!(replaced.touchpoint, created.touchpoint);
    assert_eq!(replaced.questions, created.questions);
}
