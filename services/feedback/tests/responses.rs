//! Invitations, public submission, listing, tagging, export and the summary,
//! against PostgreSQL.

mod common;

use common::*;
use futures::StreamExt as _;
use prost_types::FieldMask;
use rapport_proto::feedback::v1::question_summary::Figures;
use rapport_proto::feedback::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn an_invitation_is_answered_in_parts_and_only_once() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let survey = active_survey(&mut client, nps_survey()).await;
    let contact = harness.people(tenant, 1).await[0];
    let invited = invite(&mut client, &survey, &[contact]).await;
    let invitation = &invited.invitations[0];
    assert!(invitation.token.starts_with("fbi_"));
    assert_eq!(invitation.contact_id, contact.to_string());

    // A detractor saves a score first, then explains and completes.
    let partial = submit(&mut public, &invitation.token, vec![score("nps", 3)], false)
        .await
        .unwrap();
    assert_eq!(partial.status(), ResponseStatus::Partial);
    assert!(partial.resume_token.is_empty());
    let done = submit(
        &mut public,
        &invitation.token,
        vec![
            text("why", "Too slow"),
            choices("topics", &["speed", "staff"]),
        ],
        true,
    )
    .await
    .unwrap();
    assert_eq!(done.response_id, partial.response_id);
    assert_eq!(done.status(), ResponseStatus::Completed);

    // The second completion is refused and the first answer stands.
    let again = submit(&mut public, &invitation.token, vec![score("nps", 10)], true)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(reason(&again), "RESPONSE_ALREADY_COMPLETED");
    let response = client
        .get_response(GetResponseRequest {
            id: done.response_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(response.score, Some(3));
    assert_eq!(response.contact_id, contact.to_string());
    assert_eq!(response.touchpoint, "post-support");
    assert_eq!(response.invitation_id, invitation.id);
    assert_eq!(
        response
            .answers
            .iter()
            .map(|a| a.question_id.as_str())
            .collect::<Vec<_>>(),
        vec!["nps", "why", "topics"]
    );
    assert!(response.complete_time.is_some());
}

#[tokio::test]
async fn bad_answers_name_the_question_and_store_nothing() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let survey = active_survey(&mut client, nps_survey()).await;
    let invited = invite(&mut client, &survey, &harness.people(tenant, 1).await).await;
    let token = &invited.invitations[0].token;

    let status = submit(
        &mut public,
        token,
        vec![
            score("nps", 11),
            choices("topics", &["colour"]),
            score("csat", 4),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["answers[0]", "answers[1]"]);
    assert!(status.message().contains("\"nps\""), "{}", status.message());
    assert!(status.message().contains("0..10"), "{}", status.message());

    // A detractor must say why before completing.
    let status = submit(&mut public, token, vec![score("nps", 2)], true)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["answers"]);
    assert!(status.message().contains("\"why\" is required"));

    // A promoter is not asked why.
    let status = submit(
        &mut public,
        token,
        vec![score("nps", 10), text("why", "no reason")],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["answers[1]"]);

    // Text PostgreSQL cannot store is bad input, not an internal error.
    let status = submit(
        &mut public,
        token,
        vec![score("nps", 3), text("why", "a\0b")],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["answers[1]"]);

    let listed = client
        .list_responses(ListResponsesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.responses.is_empty(), "nothing was stored");

    let status = submit(&mut public, "fbi_not-a-real-token", vec![], true)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let forged = format!("fbi_{}", "A".repeat(43));
    let status = submit(&mut public, &forged, vec![], true)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "INVALID_SURVEY_TOKEN");
}

#[tokio::test]
async fn a_closed_survey_takes_no_answers_and_no_invitations() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let invited = invite(&mut client, &survey, &harness.people(tenant, 1).await).await;
    client
        .close_survey(CloseSurveyRequest {
            id: survey.id.clone(),
        })
        .await
        .unwrap();
    let status = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "SURVEY_NOT_ACTIVE");
    let status = client
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id,
            contact_ids: vec![Uuid::now_v7().to_string()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SURVEY_NOT_ACTIVE");
}

#[tokio::test]
async fn expired_invitations_cannot_be_answered() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let invited = invite(&mut client, &survey, &harness.people(tenant, 1).await).await;
    let mut admin = harness.db.admin().await;
    sqlx::query("UPDATE feedback.invitations SET expire_time = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .unwrap();
    let status = submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "INVITATION_EXPIRED");
}

#[tokio::test]
async fn fatigue_rules_skip_and_report_contacts() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let mut first = nps_survey();
    first.fatigue_days = 30;
    let first = active_survey(&mut client, first).await;
    let second = active_survey(&mut client, nps_survey()).await;
    let people = harness.people(tenant, 3).await;
    let (a, b, c) = (people[0], people[1], people[2]);

    let invited = invite(&mut client, &first, &[a, b]).await;
    assert_eq!(invited.invitations.len(), 2);
    // a answers; b leaves the invitation open.
    submit(
        &mut public,
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap();

    let again = invite(&mut client, &first, &[a, b, c]).await;
    let skipped: Vec<(String, SkipReason)> = again
        .skipped
        .iter()
        .map(|s| (s.contact_id.clone(), s.reason()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (a.to_string(), SkipReason::SurveyFatigue),
            (b.to_string(), SkipReason::AlreadyInvited),
        ]
    );
    assert!(again.skipped.iter().all(|s| s.last_invite_time.is_some()));
    assert_eq!(again.invitations.len(), 1);
    assert_eq!(again.invitations[0].contact_id, c.to_string());

    // No tenant rule yet: a may be asked about another survey.
    let other = invite(&mut client, &second, &[a]).await;
    assert_eq!(other.invitations.len(), 1);

    client
        .update_feedback_settings(UpdateFeedbackSettingsRequest {
            settings: Some(FeedbackSettings { fatigue_days: 7 }),
            update_mask: Some(FieldMask {
                paths: vec!["fatigue_days".into()],
            }),
        })
        .await
        .unwrap();
    let third = active_survey(&mut client, nps_survey()).await;
    let fresh = harness.people(tenant, 1).await[0];
    let tenant_rule = invite(&mut client, &third, &[c, fresh]).await;
    assert_eq!(tenant_rule.skipped.len(), 1);
    assert_eq!(tenant_rule.skipped[0].reason(), SkipReason::TenantFatigue);
    assert_eq!(tenant_rule.invitations[0].contact_id, fresh.to_string());
}

#[tokio::test]
async fn the_fatigue_window_ends_when_the_test_clock_passes_it() {
    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut survey = nps_survey();
    survey.fatigue_days = 30;
    let survey = active_survey(&mut client, survey).await;
    let contact = harness.people(tenant, 1).await[0];
    let invited = invite(&mut client, &survey, &[contact]).await;
    submit(
        &mut harness.public(),
        &invited.invitations[0].token,
        vec![score("nps", 9)],
        true,
    )
    .await
    .unwrap();

    harness.advance_clock(29 * DAY).await;
    let within = invite(&mut client, &survey, &[contact]).await;
    assert_eq!(within.skipped[0].reason(), SkipReason::SurveyFatigue);

    harness.advance_clock(2 * DAY).await;
    let after = invite(&mut client, &survey, &[contact]).await;
    assert!(after.skipped.is_empty(), "{after:?}");
    assert_eq!(after.invitations[0].contact_id, contact.to_string());
}

#[tokio::test]
async fn invitations_are_idempotent_and_bounded() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let request = CreateInvitationsRequest {
        survey_id: survey.id.clone(),
        contact_ids: harness
            .people(tenant, 2)
            .await
            .iter()
            .map(Uuid::to_string)
            .collect(),
        request_id: "batch-1".into(),
        ..Default::default()
    };
    let first = client
        .create_invitations(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .create_invitations(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry, "a retry hands out the same invitations");
    assert!(retry.skipped.is_empty());

    let too_many = client
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: (0..1001).map(|_| Uuid::now_v7().to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_many), vec!["contact_ids"]);
    let repeated = Uuid::now_v7().to_string();
    let status = client
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id,
            contact_ids: vec![repeated.clone(), "nope".into(), repeated],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec!["contact_ids[1]", "contact_ids[2]"]
    );
}

#[tokio::test]
async fn an_anonymous_link_starts_responses_that_can_be_resumed() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let mut survey = nps_survey();
    survey.anonymous_link_enabled = true;
    let survey = active_survey(&mut client, survey).await;
    let link = survey.anonymous_link_token.clone();
    assert!(link.starts_with("fba_"));
    // A link call with no answer would only store an empty response.
    let empty = submit(&mut public, &link, vec![], false).await.unwrap_err();
    assert_eq!(violated_fields(&empty), vec!["answers"]);

    let first = submit(&mut public, &link, vec![score("nps", 4)], false)
        .await
        .unwrap();
    assert!(first.resume_token.starts_with("fbi_"));
    let finished = submit(
        &mut public,
        &first.resume_token,
        vec![text("why", "Price")],
        true,
    )
    .await
    .unwrap();
    assert_eq!(finished.response_id, first.response_id);
    // The link itself starts a new response each time.
    let second = submit(&mut public, &link, vec![score("nps", 10)], true)
        .await
        .unwrap();
    assert_ne!(second.response_id, first.response_id);
    assert!(second.resume_token.is_empty());

    let response = client
        .get_response(GetResponseRequest {
            id: first.response_id,
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert!(response.contact_id.is_empty());
    assert!(response.invitation_id.is_empty());

    // Anonymous answers are not invitations: no response rate.
    let summary = summary(&mut client, &survey.id).await;
    assert_eq!(summary.completed_count, 2);
    assert_eq!(summary.invited_count, 0);
    assert_eq!(summary.response_rate, None);
}

#[tokio::test]
async fn an_anonymous_link_begins_at_most_its_hourly_limit_of_responses() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let mut survey = nps_survey();
    survey.anonymous_link_enabled = true;
    survey.anonymous_link_hourly_limit = -1;
    let refused = client
        .create_survey(CreateSurveyRequest {
            survey: Some(survey.clone()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        vec!["survey.anonymous_link_hourly_limit"]
    );
    survey.anonymous_link_hourly_limit = 2;
    let survey = active_survey(&mut client, survey).await;
    let link = survey.anonymous_link_token.clone();

    let partial = submit(&mut public, &link, vec![score("nps", 4)], false)
        .await
        .unwrap();
    submit(&mut public, &link, vec![score("nps", 8)], true)
        .await
        .unwrap();
    let limited = submit(&mut public, &link, vec![score("nps", 9)], true)
        .await
        .unwrap_err();
    assert_eq!(limited.code(), tonic::Code::ResourceExhausted);
    assert_eq!(rapport_testkit::reason(&limited), "ANONYMOUS_LINK_LIMITED");
    // A response already begun is finished whatever the link's count.
    submit(
        &mut public,
        &partial.resume_token,
        vec![text("why", "ok")],
        true,
    )
    .await
    .unwrap();

    // The next hour, the link begins responses again.
    harness
        .advance_clock(std::time::Duration::from_secs(3600))
        .await;
    submit(&mut public, &link, vec![score("nps", 9)], true)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_answer_with_its_request_id_counts_once() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let mut survey = nps_survey();
    survey.anonymous_link_enabled = true;
    let survey = active_survey(&mut client, survey).await;
    let answer = |request_id: &str| SubmitResponseRequest {
        token: survey.anonymous_link_token.clone(),
        answers: vec![score("nps", 10)],
        complete: true,
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    let first = public
        .submit_response(answer("r-1"))
        .await
        .unwrap()
        .into_inner();
    let retried = public
        .submit_response(answer("r-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first, "the retry gets the first call's answer");
    let other = public
        .submit_response(answer("r-2"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.response_id, first.response_id);
    // The same id with other answers is a mistake, not a retry.
    let mut changed = answer("r-1");
    changed.answers = vec![score("nps", 0)];
    let reused = public.submit_response(changed).await.unwrap_err();
    assert_eq!(reused.code(), tonic::Code::InvalidArgument);

    let summary = summary(&mut client, &survey.id).await;
    assert_eq!(summary.completed_count, 2);
}

#[tokio::test]
async fn responses_are_filtered_tagged_and_exported() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let survey = active_survey(&mut client, nps_survey()).await;
    let contacts = harness.people(tenant, 3).await;
    let invited = invite(&mut client, &survey, &contacts).await;
    let tokens: Vec<&str> = invited
        .invitations
        .iter()
        .map(|i| i.token.as_str())
        .collect();
    let detractor = submit(
        &mut public,
        tokens[0],
        vec![score("nps", 2), text("why", "=cmd|' /C calc'!A0, \"slow\"")],
        true,
    )
    .await
    .unwrap();
    submit(
        &mut public,
        tokens[1],
        vec![score("nps", 9), score("csat", 5)],
        true,
    )
    .await
    .unwrap();
    submit(&mut public, tokens[2], vec![score("nps", 8)], false)
        .await
        .unwrap();

    let list = |filter: ListResponsesRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_responses(filter)
                .await
                .unwrap()
                .into_inner()
                .responses
                .into_iter()
                .map(|r| r.score.unwrap_or(-1))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(ListResponsesRequest::default()).await, vec![8, 9, 2]);
    assert_eq!(
        list(ListResponsesRequest {
            max_score: Some(6),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        list(ListResponsesRequest {
            has_comment: Some(true),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        list(ListResponsesRequest {
            status: ResponseStatus::Completed.into(),
            min_score: Some(7),
            ..Default::default()
        })
        .await,
        vec![9]
    );
    assert_eq!(
        list(ListResponsesRequest {
            contact_id: contacts[1].to_string(),
            touchpoint: "post-support".into(),
            ..Default::default()
        })
        .await,
        vec![9]
    );
    assert_eq!(
        list(ListResponsesRequest {
            touchpoint: "onboarding".into(),
            ..Default::default()
        })
        .await,
        Vec::<i32>::new()
    );

    let tagged = client
        .tag_response(TagResponseRequest {
            id: detractor.response_id.clone(),
            add_tags: vec!["support".into(), "pricing".into()],
            remove_tags: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(tagged.tags, vec!["pricing", "support"]);
    let retagged = client
        .tag_response(TagResponseRequest {
            id: detractor.response_id.clone(),
            add_tags: vec![],
            remove_tags: vec!["pricing".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(retagged.tags, vec!["support"]);
    let bad = client
        .tag_response(TagResponseRequest {
            id: detractor.response_id.clone(),
            add_tags: vec!["Bad Tag".into()],
            remove_tags: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), vec!["add_tags[0]"]);
    // At most 50 tags: the call that would pass it changes nothing.
    let tag_call = |range: std::ops::Range<usize>| TagResponseRequest {
        id: detractor.response_id.clone(),
        add_tags: range.map(|i| format!("theme-{i}")).collect(),
        remove_tags: vec![],
    };
    client.tag_response(tag_call(0..20)).await.unwrap();
    client.tag_response(tag_call(20..40)).await.unwrap();
    let over = client.tag_response(tag_call(40..50)).await.unwrap_err();
    assert_eq!(violated_fields(&over), vec!["add_tags"]);
    let kept = client
        .get_response(GetResponseRequest {
            id: detractor.response_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(kept.tags.len(), 41);
    for range in [0..20, 20..40] {
        let cleared = client
            .tag_response(TagResponseRequest {
                id: detractor.response_id.clone(),
                add_tags: vec![],
                remove_tags: range.map(|i| format!("theme-{i}")).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .response
            .unwrap();
        assert!(cleared.tags.len() <= 21);
    }

    let mut stream = client
        .export_responses(ExportResponsesRequest {
            survey_id: survey.id.clone(),
            completed_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut csv = Vec::new();
    while let Some(chunk) = stream.next().await {
        csv.extend(chunk.unwrap().csv_chunk);
    }
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "header and two completed responses:\n{csv}");
    assert!(lines[0].starts_with("response_id,invitation_id,contact_id,status,"));
    assert!(lines[0].ends_with(",q_nps,q_why,q_csat,q_topics"));
    assert!(lines[1].starts_with(&detractor.response_id));
    assert!(lines[1].contains(",completed,email,post-support,en,2,support,"));
    // The formula is defused and the quotes and comma escaped.
    assert!(
        lines[1].ends_with(",2,\"'=cmd|' /C calc'!A0, \"\"slow\"\"\",,"),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn the_summary_counts_answers_per_question() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let mut public = harness.public();
    let survey = active_survey(&mut client, nps_survey()).await;
    let contacts = harness.people(tenant, 6).await;
    let invited = invite(&mut client, &survey, &contacts).await;
    let token = |i: usize| invited.invitations[i].token.clone();
    // NPS: 10, 9, 8, 3 → 2 promoters, 1 passive, 1 detractor of 4: NPS 25.
    // CSAT answered by two (5 and 2): 50%, mean 3.5; skipped by two.
    // Topics: price twice, speed once, by two responses.
    let answers = [
        vec![
            score("nps", 10),
            score("csat", 5),
            choices("topics", &["price", "speed"]),
        ],
        vec![score("nps", 9)],
        vec![
            score("nps", 8),
            score("csat", 2),
            choices("topics", &["price"]),
        ],
        vec![score("nps", 3), text("why", "Waited a week")],
    ];
    for (i, answers) in answers.into_iter().enumerate() {
        submit(&mut public, &token(i), answers, true).await.unwrap();
    }
    // One partial, one never answered.
    submit(&mut public, &token(4), vec![score("nps", 0)], false)
        .await
        .unwrap();

    let summary = summary(&mut client, &survey.id).await;
    assert_eq!(summary.completed_count, 4);
    assert_eq!(summary.partial_count, 1);
    assert_eq!(summary.invited_count, 6);
    assert_eq!(summary.invitations_completed_count, 4);
    assert!((summary.response_rate.unwrap() - 4.0 / 6.0).abs() < 1e-9);

    let by_id = |id: &str| {
        summary
            .questions
            .iter()
            .find(|q| q.question_id == id)
            .unwrap()
            .clone()
    };
    let nps = by_id("nps");
    let Some(Figures::Nps(figures)) = nps.figures else {
        panic!("nps figures")
    };
    assert_eq!(
        (figures.promoters, figures.passives, figures.detractors),
        (2, 1, 1)
    );
    assert!((figures.nps - 25.0).abs() < 1e-9);
    // p = 0.5, d = 0.25: variance 0.75 − 0.0625 = 0.6875; margin
    // 1.959964 × √(0.6875 / 4) × 100 = 81.26.
    assert!(
        (figures.margin_of_error - 81.26).abs() < 0.01,
        "{}",
        figures.margin_of_error
    );

    let csat = by_id("csat");
    assert_eq!((csat.answered_count, csat.skipped_count), (2, 2));
    let Some(Figures::Csat(figures)) = csat.figures else {
        panic!("csat figures")
    };
    assert!((figures.csat_percent - 50.0).abs() < 1e-9);
    assert!((figures.mean - 3.5).abs() < 1e-9);

    let why = by_id("why");
    assert_eq!((why.answered_count, why.skipped_count), (1, 3));
    let topics = by_id("topics");
    let Some(Figures::Choice(figures)) = topics.figures else {
        panic!("choice figures")
    };
    let counts: Vec<(String, i64)> = figures
        .counts
        .into_iter()
        .map(|c| (c.choice_id, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("price".into(), 2),
            ("speed".into(), 1),
            ("staff".into(), 0)
        ]
    );

    // Today as a whole day (from the running counts) and the minutes
    // around now (counted from the answers) both hold every response.
    let today = chrono::Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let now = chrono::Utc::now();
    for (from, to) in [
        (today, today + chrono::Duration::days(1)),
        (
            now - chrono::Duration::minutes(5),
            now + chrono::Duration::minutes(5),
        ),
    ] {
        let ranged = client
            .get_survey_summary(GetSurveySummaryRequest {
                survey_id: survey.id.clone(),
                start_time: Some(rapport_core::convert::to_timestamp(from)),
                end_time: Some(rapport_core::convert::to_timestamp(to)),
            })
            .await
            .unwrap()
            .into_inner()
            .summary
            .unwrap();
        assert_eq!(
            (
                ranged.questions.clone(),
                ranged.completed_count,
                ranged.invited_count
            ),
            (summary.questions.clone(), 4, 6),
            "{from}..{to}"
        );
    }

    // A range before any completion holds nothing.
    let empty = client
        .get_survey_summary(GetSurveySummaryRequest {
            survey_id: survey.id,
            start_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(empty.completed_count, 0);
    assert!(empty.questions.iter().all(|q| q.figures.is_none()));
}
