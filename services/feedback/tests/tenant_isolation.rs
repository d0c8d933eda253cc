//! Tenant B calls every feedback RPC with tenant A's ids and sees NOT_FOUND
//! or empty results, never A's data; a respondent's token opens one
//! invitation and nothing else; and the database keeps rows apart.

mod common;

use common::*;
use futures::StreamExt as _;
use prost_types::FieldMask;
use rapport_proto::feedback::v1::*;
use sqlx::{Connection as _, PgConnection};
use tonic::Code;
use uuid::Uuid;

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("another tenant's id must not be found");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn another_tenant_never_sees_or_touches_a_tenants_feedback() {
    let h = start().await;
    let tenant_a = Uuid::now_v7();
    let mut a = h.client(tenant_a);
    let mut b = h.client(Uuid::now_v7());
    let mut survey = nps_survey();
    survey.anonymous_link_enabled = true;
    let survey = active_survey(&mut a, survey).await;
    let contact = h.people(tenant_a, 1).await[0];
    let invited = invite(&mut a, &survey, &[contact]).await;
    let submitted = submit(
        &mut h.public(),
        &invited.invitations[0].token,
        vec![score("nps", 2), text("why", "secret complaint")],
        true,
    )
    .await
    .unwrap();
    let id = survey.id.clone();
    let response_id = submitted.response_id.clone();

    assert_not_found(b.get_survey(GetSurveyRequest { id: id.clone() }).await);
    assert_not_found(
        b.update_survey(UpdateSurveyRequest {
            survey: Some(Survey {
                id: id.clone(),
                name: "Mallory".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
            etag: String::new(),
        })
        .await,
    );
    assert_not_found(
        b.activate_survey(ActivateSurveyRequest { id: id.clone() })
            .await,
    );
    assert_not_found(b.close_survey(CloseSurveyRequest { id: id.clone() }).await);
    assert_not_found(
        b.create_invitations(CreateInvitationsRequest {
            survey_id: id.clone(),
            contact_ids: vec![contact.to_string()],
            ..Default::default()
        })
        .await,
    );
    assert_not_found(
        b.get_response(GetResponseRequest {
            id: response_id.clone(),
        })
        .await,
    );
    assert_not_found(
        b.tag_response(TagResponseRequest {
            id: response_id.clone(),
            add_tags: vec!["pwned".into()],
            remove_tags: vec![],
        })
        .await,
    );
    assert_not_found(
        b.get_survey_summary(GetSurveySummaryRequest {
            survey_id: id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_not_found(
        b.export_responses(ExportResponsesRequest {
            survey_id: id.clone(),
            completed_only: false,
        })
        .await,
    );
    let surveys = b
        .list_surveys(ListSurveysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(surveys.surveys.is_empty());
    // Nor invite the other tenant's contact to a survey of its own.
    let own = active_survey(&mut b, nps_survey()).await;
    let invited = invite(&mut b, &own, &[contact]).await;
    assert!(invited.invitations.is_empty());
    assert_eq!(invited.skipped[0].reason(), SkipReason::ContactNotFound);
    for filter in [
        ListResponsesRequest::default(),
        ListResponsesRequest {
            survey_id: id.clone(),
            ..Default::default()
        },
        ListResponsesRequest {
            contact_id: contact.to_string(),
            ..Default::default()
        },
    ] {
        let listed = b.list_responses(filter).await.unwrap().into_inner();
        assert!(listed.responses.is_empty());
    }
    let settings = b
        .update_feedback_settings(UpdateFeedbackSettingsRequest {
            settings: Some(FeedbackSettings { fatigue_days: 9 }),
            update_mask: Some(FieldMask {
                paths: vec!["fatigue_days".into()],
            }),
        })
        .await
        .unwrap();
    assert_eq!(settings.into_inner().settings.unwrap().fatigue_days, 9);
    let a_settings = a
        .get_feedback_settings(GetFeedbackSettingsRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(a_settings.fatigue_days, 0, "B's settings are B's own");

    // A's data is intact.
    let response = a
        .get_response(GetResponseRequest { id: response_id })
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert!(response.tags.is_empty());
    let mut export = a
        .export_responses(ExportResponsesRequest {
            survey_id: id,
            completed_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut rows = 0;
    while let Some(chunk) = export.next().await {
        rows += String::from_utf8(chunk.unwrap().csv_chunk)
            .unwrap()
            .lines()
            .count();
    }
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn submit_needs_a_gateway_credential() {
    let h = start().await;
    let tenant = Uuid::now_v7();
    let mut a = h.client(tenant);
    let survey = active_survey(&mut a, nps_survey()).await;
    let invited = invite(&mut a, &survey, &h.people(tenant, 1).await).await;
    // Straight to the service without a credential: refused before the token is looked at.
    let mut bare = rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient::new(
        h.feedback.channel.clone(),
    );
    let status = bare
        .submit_response(SubmitResponseRequest {
            token: invited.invitations[0].token.clone(),
            answers: vec![score("nps", 9)],
            complete: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // The public credential opens nothing but SubmitResponse.
    let status = h
        .public()
        .get_survey(GetSurveyRequest { id: survey.id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn row_level_security_binds_the_service_role() {
    let h = start().await;
    let tenant = Uuid::now_v7();
    let mut client = h.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let invited = invite(&mut client, &survey, &h.people(tenant, 1).await).await;

    let mut conn = PgConnection::connect(&h.db.url(Some("rapport_feedback")))
        .await
        .unwrap();
    // No tenant and no token set: tenant tables error, token tables show nothing.
    let err = sqlx::query("SELECT count(*) FROM feedback.responses")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("app.tenant_id"), "{err}");
    for table in ["feedback.surveys", "feedback.invitations"] {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(count, 0, "{table} shows nothing without a tenant");
    }

    let mut tx = conn.begin().await.unwrap();
    rapport_core::db::set_local(&mut tx, &[("app.tenant_id", &Uuid::now_v7().to_string())])
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.invitations")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 0, "another tenant sees no rows");
    drop(tx);

    // A token's hash reveals its own row, for reading only.
    let hash = rapport_feedback::domain::token::hash(&invited.invitations[0].token);
    let mut tx = conn.begin().await.unwrap();
    rapport_core::db::set_local(&mut tx, &[("app.token_hash", &hash)])
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.invitations")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let updated = sqlx::query("UPDATE feedback.invitations SET channel = 0")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 0, "the token opens no write");
    drop(tx);

    // A projection reset (no tenant) reads nothing and deletes every
    // tenant's noted contacts, and only those.
    let mut admin = h.db.admin().await;
    let noted = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let noted: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.contacts")
                .fetch_one(&mut admin)
                .await
                .unwrap();
            if noted > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(noted.is_ok(), "the feed noted the invited contact");
    let mut tx = conn.begin().await.unwrap();
    rapport_events::consumer::forget_projection(&mut tx, &["feedback.contacts"])
        .await
        .unwrap();
    rapport_core::db::set_local(&mut tx, &[("app.projection_reset", "on")])
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.contacts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0, "a reset reads nothing");
    let invitations = sqlx::query("DELETE FROM feedback.invitations")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(invitations, 0, "a reset deletes nothing else");
    tx.commit().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback.contacts")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "the reset forgot every noted contact");
}
