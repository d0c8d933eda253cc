//! MergeContacts: folding a duplicate into a survivor.

mod common;

use common::{create, get, person};
use prost_types::Timestamp;
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn merge_folds_the_duplicate_into_the_survivor() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let survivor = create(
        &mut client,
        Contact {
            tags: vec!["vip".into()],
            ..person("ana@example.com")
        },
    )
    .await;
    let duplicate = create(
        &mut client,
        Contact {
            external_id: "shop-7".into(),
            phone: "+351912345678".into(),
            tags: vec!["buyer".into()],
            ..person("ana.other@example.com")
        },
    )
    .await;
    let event = Event {
        contact_id: duplicate.id.clone(),
        r#type: "order.placed".into(),
        channel: Channel::Web as i32,
        occur_time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..Default::default()
    };
    client
        .record_events(RecordEventsRequest {
            events: vec![event.clone()],
        })
        .await
        .unwrap();

    let merged = client
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.id.clone(),
            duplicate_id: duplicate.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.moved_event_count, 1);
    let contact = merged.contact.unwrap();
    assert_eq!(contact.id, survivor.id);
    assert_eq!(contact.email, "ana@example.com");
    assert_eq!(contact.external_id, "shop-7");
    assert_eq!(contact.phone, "+351912345678");
    assert_eq!(contact.tags, ["buyer", "vip"]);

    // The duplicate's id resolves to the survivor on Get...
    assert_eq!(
        get(&mut client, &duplicate.id).await.unwrap().id,
        survivor.id
    );
    // ...and events sent to it land on the survivor's timeline.
    client
        .record_events(RecordEventsRequest {
            events: vec![event],
        })
        .await
        .unwrap();
    let timeline = client
        .list_events(ListEventsRequest {
            contact_id: survivor.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.events.len(), 2);
    // Other calls on the duplicate's id say where it went.
    let err = client
        .delete_contact(DeleteContactRequest {
            id: duplicate.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "CONTACT_MERGED");
    use tonic_types::StatusExt as _;
    assert_eq!(
        err.get_error_details().error_info().unwrap().metadata["survivor_id"],
        survivor.id
    );

    let err = client
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.id.clone(),
            duplicate_id: survivor.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["duplicate_id"]);
}
