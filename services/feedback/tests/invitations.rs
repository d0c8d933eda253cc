//! Invitations go to the tenant's contacts only: the contacts feed's
//! projection answers for the contacts it has brought, the contacts service
//! for the rest.

mod common;

use std::time::Duration;

use common::*;
use rapport_proto::contacts::v1::{
    DeleteContactRequest, EraseContactRequest, MergeContactsRequest,
};
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::feedback::v1::*;
use rapport_testkit::reason;
use sqlx::PgConnection;
use tonic::Code;
use uuid::Uuid;

/// Waits until feedback's projection notes `contact`, gone or not.
async fn until_noted(admin: &mut PgConnection, contact: Uuid, gone: bool) {
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let noted: Option<bool> =
                sqlx::query_scalar("SELECT gone FROM feedback.contacts WHERE contact_id = $1")
                    .bind(contact)
                    .fetch_optional(&mut *admin)
                    .await
                    .unwrap();
            if noted == Some(gone) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the feed never noted {contact} (gone: {gone})"
    );
}

async fn invitations(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM feedback.invitations")
        .fetch_one(admin)
        .await
        .unwrap()
}

fn skipped(response: &CreateInvitationsResponse) -> Vec<(String, SkipReason)> {
    response
        .skipped
        .iter()
        .map(|s| (s.contact_id.clone(), s.reason()))
        .collect()
}

#[tokio::test]
async fn ids_that_name_no_contact_are_skipped() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let people = harness.people(tenant, 4).await;
    let (live, deleted, survivor, duplicate) = (people[0], people[1], people[2], people[3]);
    let mut admin = harness.db.admin().await;
    for person in &people {
        until_noted(&mut admin, *person, false).await;
    }
    let mut contacts = harness.contacts(tenant);
    contacts
        .delete_contact(DeleteContactRequest {
            id: deleted.to_string(),
            etag: String::new(),
        })
        .await
        .unwrap();
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.to_string(),
            duplicate_id: duplicate.to_string(),
        })
        .await
        .unwrap();
    until_noted(&mut admin, deleted, true).await;
    until_noted(&mut admin, duplicate, true).await;

    // An id the feed never brought: the contacts service says it is none.
    let never = Uuid::now_v7();
    let invited = invite(&mut client, &survey, &[never]).await;
    assert_eq!(
        skipped(&invited),
        [(never.to_string(), SkipReason::ContactNotFound)]
    );
    assert!(invited.skipped[0].last_invite_time.is_none());

    // Without the contacts service, the feed's word is enough for the ids
    // it brought; the others cannot be told apart, and nothing is written.
    let Harness {
        feedback,
        contacts,
        db,
    } = harness;
    contacts.shutdown().await.unwrap();
    let mut client: Client = FeedbackServiceClient::new(feedback.tenant_channel(tenant));
    let invited = invite(&mut client, &survey, &[live, deleted, duplicate]).await;
    let ids: Vec<String> = invited
        .invitations
        .iter()
        .map(|i| i.contact_id.clone())
        .collect();
    assert_eq!(ids, [live.to_string()]);
    assert_eq!(
        skipped(&invited),
        [
            (deleted.to_string(), SkipReason::ContactNotFound),
            (duplicate.to_string(), SkipReason::ContactNotFound),
        ]
    );
    let status = client
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: vec![Uuid::now_v7().to_string(), survivor.to_string()],
            request_id: Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "CONTACTS_UNAVAILABLE");
    assert_eq!(invitations(&mut admin).await, 1, "only the live contact's");
    drop(feedback);
    drop(db);
}

#[tokio::test]
async fn a_contact_created_a_moment_ago_is_invited() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let earlier = harness.people(tenant, 1).await[0];
    let mut admin = harness.db.admin().await;
    until_noted(&mut admin, earlier, false).await;

    // The consumer cannot move its cursor, so nothing it applies commits:
    // the feed brings the new contact to feedback only once this ends.
    let mut held = harness.db.admin().await;
    sqlx::query("BEGIN").execute(&mut held).await.unwrap();
    sqlx::query(
        "SELECT * FROM feedback.feed_cursors WHERE consumer = 'feedback.contacts_v2' FOR UPDATE",
    )
    .execute(&mut held)
    .await
    .unwrap();
    let fresh = harness.contact(tenant, "fresh@example.com").await;
    let invited = invite(&mut client, &survey, &[fresh]).await;
    assert!(invited.skipped.is_empty(), "{invited:?}");
    assert_eq!(invited.invitations[0].contact_id, fresh.to_string());
    let noted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM feedback.contacts WHERE contact_id = $1")
            .bind(fresh)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(noted, 0, "the contacts service, not the feed, answered");
    sqlx::query("ROLLBACK").execute(&mut held).await.unwrap();
    until_noted(&mut admin, fresh, false).await;
}

#[tokio::test]
async fn a_consumer_without_a_cursor_learns_the_contacts_from_the_snapshot() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let survey = active_survey(&mut client, nps_survey()).await;
    let people = harness.people(tenant, 3).await;
    let (kept, duplicate, erased) = (people[0], people[1], people[2]);
    let mut contacts = harness.contacts(tenant);
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: kept.to_string(),
            duplicate_id: duplicate.to_string(),
        })
        .await
        .unwrap();
    contacts
        .erase_contact(EraseContactRequest {
            id: erased.to_string(),
        })
        .await
        .unwrap();
    let mut admin = harness.db.admin().await;
    until_noted(&mut admin, erased, true).await;
    // A reply kept for retries that names the erased contact.
    let request = CreateInvitationsRequest {
        survey_id: survey.id.clone(),
        contact_ids: vec![kept.to_string(), erased.to_string()],
        request_id: Uuid::now_v7().to_string(),
        ..Default::default()
    };
    let first = client
        .create_invitations(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        skipped(&first),
        [(erased.to_string(), SkipReason::ContactErased)]
    );

    // Feedback starts again as if for the first time: no cursor, nothing
    // noted. It loads the snapshot, erasures included, again.
    let Harness {
        feedback,
        contacts,
        db,
    } = harness;
    feedback.shutdown().await.unwrap();
    sqlx::query("DELETE FROM feedback.feed_cursors WHERE consumer = 'feedback.contacts_v2'")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("DELETE FROM feedback.contacts")
        .execute(&mut admin)
        .await
        .unwrap();
    let feedback = start_feedback(&db, &contacts).await;
    let harness = Harness {
        feedback,
        contacts,
        db,
    };
    until_noted(&mut admin, kept, false).await;
    until_noted(&mut admin, duplicate, true).await;
    until_noted(&mut admin, erased, true).await;

    // The erasure loaded again left the kept reply alone.
    let again = harness
        .client(tenant)
        .create_invitations(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
}
