//! ExportContact and EraseContact.

mod common;

use common::{create, get, person};
use prost_types::Timestamp;
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_testkit::reason;
use sqlx::Row as _;
use uuid::Uuid;

#[tokio::test]
async fn export_streams_everything_and_erase_removes_it_for_good() {
    let h = common::start().await;
    let tenant = Uuid::now_v7();
    let mut client = h.client(tenant);
    let contact = create(
        &mut client,
        Contact {
            lifecycle_stage: LifecycleStage::Purchase as i32,
            ..person("gdpr@example.com")
        },
    )
    .await;
    let events: Vec<Event> = (0..1200)
        .map(|i| Event {
            contact_id: contact.id.clone(),
            r#type: "page.viewed".into(),
            channel: Channel::Web as i32,
            occur_time: Some(Timestamp {
                seconds: 1_700_000_000 + i,
                nanos: 0,
            }),
            ..Default::default()
        })
        .collect();
    for chunk in events.chunks(1000) {
        client
            .record_events(RecordEventsRequest {
                events: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
    // The same contact created with a request id keeps a stored response.
    client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: contact.id.clone(),
                first_name: "Grace".into(),
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await
        .unwrap();
    client
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            contacts: vec![person("gdpr@example.com")],
            request_id: "keep-me?".into(),
        })
        .await
        .unwrap();

    let mut stream = client
        .export_contact(ExportContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut parts = Vec::new();
    while let Some(part) = stream.message().await.unwrap() {
        parts.push(part.part.unwrap());
    }
    let export_contact_response::Part::Profile(profile) = &parts[0] else {
        panic!("profile first")
    };
    assert_eq!(profile.contact.as_ref().unwrap().id, contact.id);
    // The histories follow the profile in their own parts, then the timeline.
    let mut lifecycle = 0;
    let mut exported = 0;
    for part in &parts[1..] {
        match part {
            export_contact_response::Part::LifecycleChanges(page) => {
                assert_eq!(exported, 0, "histories come before the timeline");
                lifecycle += page.changes.len();
            }
            export_contact_response::Part::Events(chunk) => exported += chunk.events.len(),
            other => panic!("nothing else was stored: {other:?}"),
        }
    }
    assert_eq!(lifecycle, 1);
    assert_eq!(exported, 1200);

    let erased = client
        .erase_contact(EraseContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.erased_event_count, 1200);
    assert_eq!(erased.erased_history_count, 1);
    let err = get(&mut client, &contact.id).await.unwrap_err();
    assert_eq!(reason(&err), "CONTACT_ERASED");

    // Nothing personal is left in any table, stored responses included.
    let mut admin = h.db.admin().await;
    let id = Uuid::parse_str(&contact.id).unwrap();
    for (table, column) in [
        ("contacts", "id"),
        ("events", "contact_id"),
        ("lifecycle_history", "contact_id"),
        ("consent_history", "contact_id"),
    ] {
        let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM contacts.{table} WHERE {column} = $1"
        )))
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .get(0);
        assert_eq!(count, 0, "{table} still has rows");
    }
    let leftover: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts.idempotency_keys WHERE convert_from(response, 'LATIN1') LIKE '%gdpr@example.com%'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(leftover, 0);
}
