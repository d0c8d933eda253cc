//! Tenant B calls every contacts RPC with tenant A's ids and sees NOT_FOUND
//! or empty results, never A's data; and the database itself refuses to
//! show rows without a tenant.

mod common;

use common::{create, person};
use prost_types::Timestamp;
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_testkit::{reason, violated_fields};
use sqlx::{Connection as _, PgConnection};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn another_tenant_never_sees_or_touches_a_tenants_contacts() {
    let h = common::start().await;
    let mut a = h.client(Uuid::now_v7());
    let mut b = h.client(Uuid::now_v7());

    let contact = create(&mut a, pb_contact()).await;
    let other = create(&mut a, person("other@example.com")).await;
    let id = contact.id.clone();
    a.record_events(RecordEventsRequest {
        events: vec![Event {
            contact_id: id.clone(),
            client_event_id: "evt-1".into(),
            r#type: "order.placed".into(),
            channel: Channel::Web as i32,
            occur_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }],
    })
    .await
    .unwrap();

    assert_not_found(b.get_contact(GetContactRequest { id: id.clone() }).await);
    assert_not_found(
        b.update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: id.clone(),
                first_name: "Mallory".into(),
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await,
    );
    assert_not_found(
        b.delete_contact(DeleteContactRequest {
            id: id.clone(),
            etag: String::new(),
        })
        .await,
    );
    assert_not_found(
        b.merge_contacts(MergeContactsRequest {
            survivor_id: id.clone(),
            duplicate_id: other.id.clone(),
        })
        .await,
    );
    assert_not_found(
        b.change_lifecycle_stage(ChangeLifecycleStageRequest {
            contact_id: id.clone(),
            lifecycle_stage: LifecycleStage::Advocacy as i32,
            source: String::new(),
        })
        .await,
    );
    assert_not_found(
        b.list_lifecycle_history(ListLifecycleHistoryRequest {
            contact_id: id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_not_found(
        b.change_consent(ChangeConsentRequest {
            contact_id: id.clone(),
            consent: Some(Consent {
                channel: Channel::Email as i32,
                status: ConsentStatus::Unsubscribed as i32,
                ..Default::default()
            }),
        })
        .await,
    );
    assert_not_found(
        b.list_consent_history(ListConsentHistoryRequest {
            contact_id: id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_not_found(
        b.list_events(ListEventsRequest {
            contact_id: id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_not_found(
        b.export_contact(ExportContactRequest { id: id.clone() })
            .await,
    );
    assert_not_found(
        b.erase_contact(EraseContactRequest { id: id.clone() })
            .await,
    );

    // Recording events against A's contact, by id or external id, fails as unknown.
    let err = b
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: id.clone(),
                r#type: "order.placed".into(),
                channel: Channel::Web as i32,
                occur_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["events[0].contact_id"]);

    // Lists are empty, with or without filters that match A's data.
    let listed = b
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.contacts.is_empty());
    let by_email = b
        .list_contacts(ListContactsRequest {
            email: "secret@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_email.contacts.is_empty());

    // Unique keys are per tenant: B can use A's email and external id, and
    // the same client event id, without learning anything.
    let mine = create(&mut b, pb_contact()).await;
    assert_ne!(mine.id, id);
    let upserted = b
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            contacts: vec![pb_contact()],
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(upserted.contacts[0].id, mine.id);
    let recorded = b
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: mine.id.clone(),
                client_event_id: "evt-1".into(),
                r#type: "order.placed".into(),
                channel: Channel::Web as i32,
                occur_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.recorded_count, 1);

    // A's data is untouched.
    let still = a
        .get_contact(GetContactRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(still, contact);
    let timeline = a
        .list_events(ListEventsRequest {
            contact_id: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.events.len(), 1);
}

/// The call failed exactly as for an id that never existed.
fn assert_not_found<T>(result: Result<T, tonic::Status>) {
    let Err(status) = result else {
        panic!("tenant B must not succeed")
    };
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(!status.message().contains("secret@example.com"));
    assert_eq!(reason(&status), "CONTACT_NOT_FOUND");
}

fn pb_contact() -> Contact {
    Contact {
        external_id: "crm-42".into(),
        ..person("secret@example.com")
    }
}

#[tokio::test]
async fn row_level_security_binds_the_service_role() {
    let h = common::start().await;
    let tenant = Uuid::now_v7();
    let mut client = h.client(tenant);
    create(&mut client, person("rls@example.com")).await;

    let mut conn = PgConnection::connect(&h.db.url(Some("rapport_contacts")))
        .await
        .unwrap();
    // No tenant set: the policy errors rather than showing every row.
    let err = sqlx::query("SELECT count(*) FROM contacts.contacts")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("app.tenant_id"), "{err}");

    let mut tx = rapport_testkit::begin_tenant(&mut conn, Uuid::now_v7()).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts.contacts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 0, "another tenant sees no rows");
    let insert = sqlx::query("INSERT INTO contacts.contacts (tenant_id, id, create_time, update_time) VALUES ($1, $2, now(), now())")
        .bind(tenant)
        .bind(Uuid::now_v7())
        .execute(&mut *tx)
        .await;
    assert!(
        insert.is_err(),
        "writing a row of another tenant is refused"
    );
    drop(tx);

    let mut tx = rapport_testkit::begin_tenant(&mut conn, tenant).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts.contacts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 1);
    tx.commit().await.unwrap();

    // The setting does not outlive its transaction on the pooled session.
    let err = sqlx::query("SELECT count(*) FROM contacts.contacts")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("uuid") || err.to_string().contains("app.tenant_id"),
        "{err}"
    );
}
