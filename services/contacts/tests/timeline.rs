//! The timeline: recording events once and listing them.

mod common;

use common::{attrs, create, person};
use prost_types::Timestamp;
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::*;
use rapport_testkit::violated_fields;
use uuid::Uuid;

#[tokio::test]
async fn events_are_recorded_once_and_listed_newest_first() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = create(
        &mut client,
        Contact {
            external_id: "crm-1".into(),
            ..person("t@example.com")
        },
    )
    .await;
    let at = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
    let events = vec![
        Event {
            contact_id: contact.id.clone(),
            client_event_id: "e1".into(),
            r#type: "email.opened".into(),
            channel: Channel::Email as i32,
            occur_time: at(1_700_000_000),
            ..Default::default()
        },
        Event {
            contact_external_id: "crm-1".into(),
            client_event_id: "e2".into(),
            r#type: "order.placed".into(),
            channel: Channel::Web as i32,
            occur_time: at(1_700_000_100),
            properties: attrs(serde_json::json!({"sku": "A-1"})),
            revenue: Some(rapport_proto::common::v1::Money {
                currency_code: "EUR".into(),
                units: 49,
                nanos: 990_000_000,
            }),
            ..Default::default()
        },
        Event {
            contact_id: contact.id.clone(),
            r#type: "email.clicked".into(),
            channel: Channel::Email as i32,
            occur_time: at(1_700_000_050),
            ..Default::default()
        },
    ];
    let first = client
        .record_events(RecordEventsRequest {
            events: events.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.recorded_count, first.duplicate_count), (3, 0));
    // A retry: the two with client ids are skipped; the one without is new.
    let retry = client
        .record_events(RecordEventsRequest {
            events: events[..2].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((retry.recorded_count, retry.duplicate_count), (0, 2));

    let timeline = client
        .list_events(ListEventsRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let types: Vec<_> = timeline.events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(types, ["order.placed", "email.clicked"]);
    assert_eq!(timeline.events[0].revenue.as_ref().unwrap().units, 49);
    let rest = client
        .list_events(ListEventsRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            page_token: timeline.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let email_only = client
        .list_events(ListEventsRequest {
            contact_id: contact.id.clone(),
            channels: vec![Channel::Email as i32],
            types: vec!["email.opened".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(email_only.events.len(), 1);
    let windowed = client
        .list_events(ListEventsRequest {
            contact_id: contact.id.clone(),
            start_time: at(1_700_000_010),
            end_time: at(1_700_000_100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(windowed.events.len(), 1);

    let err = client
        .record_events(RecordEventsRequest {
            events: vec![
                events[0].clone(),
                Event {
                    contact_id: Uuid::now_v7().to_string(),
                    ..events[2].clone()
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["events[1].contact_id"]);
}
