//! The contacts API end to end against PostgreSQL: CRUD, lists, upserts,
//! merges, histories, validation and idempotency.

mod common;

use common::{Client, create, person};
use prost_types::{FieldMask, Timestamp};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_testkit::{reason, violated_fields};
use sqlx::Row as _;
use tonic::Code;
use uuid::Uuid;

fn attrs(json: serde_json::Value) -> Option<prost_types::Struct> {
    Some(rapport_core::convert::json_to_struct(
        json.as_object().unwrap(),
    ))
}

async fn get(client: &mut Client, id: &str) -> Result<Contact, tonic::Status> {
    client
        .get_contact(GetContactRequest { id: id.to_owned() })
        .await
        .map(|r| r.into_inner().contact.unwrap())
}

#[tokio::test]
async fn create_get_update_delete() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());

    let created = create(
        &mut client,
        Contact {
            external_id: "crm-1".into(),
            email: "Ana.Lima@Example.com".into(),
            phone: "+351912345678".into(),
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            locale: "pt-PT".into(),
            time_zone: "Europe/Lisbon".into(),
            attributes: attrs(serde_json::json!({"plan": "pro", "seats": 3.0})),
            tags: vec!["vip".into(), "beta".into()],
            lifecycle_stage: LifecycleStage::Education as i32,
            consents: vec![Consent {
                channel: Channel::Email as i32,
                status: ConsentStatus::Subscribed as i32,
                source: "signup".into(),
                change_time: None,
            }],
            ..Default::default()
        },
    )
    .await;
    let id = Uuid::parse_str(&created.id).expect("a UUID id");
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(created.tags, ["beta", "vip"]);
    assert_eq!(created.consents.len(), 1);
    assert!(created.consents[0].change_time.is_some());
    assert_eq!(get(&mut client, &created.id).await.unwrap(), created);

    // Email uniqueness ignores case.
    let err = client
        .create_contact(CreateContactRequest {
            contact: Some(person("ana.lima@example.com")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(reason(&err), "CONTACT_EMAIL_TAKEN");

    // Update with a field mask touches only the masked fields.
    let updated = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: created.id.clone(),
                first_name: "Anna".into(),
                last_name: "IGNORED".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["first_name".into()],
            }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(updated.first_name, "Anna");
    assert_eq!(updated.last_name, "Lima");
    assert_ne!(updated.etag, created.etag);

    // A stale etag is refused and changes nothing.
    let err = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: created.id.clone(),
                first_name: "Stale".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["first_name".into()],
            }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    assert_eq!(
        get(&mut client, &created.id).await.unwrap().first_name,
        "Anna"
    );

    // A masked field left empty is cleared.
    let cleared = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: created.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["phone".into(), "tags".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert!(cleared.phone.is_empty() && cleared.tags.is_empty());

    let err = client
        .delete_contact(DeleteContactRequest {
            id: created.id.clone(),
            etag: "999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    client
        .delete_contact(DeleteContactRequest {
            id: created.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let err = get(&mut client, &created.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "CONTACT_NOT_FOUND");
}

#[tokio::test]
async fn bad_input_names_each_field_and_writes_nothing() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());

    let err = client
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                email: "nope".into(),
                phone: "12345".into(),
                locale: "english_UK".into(),
                time_zone: "Moon/Base".into(),
                tags: vec!["".into()],
                lifecycle_stage: 99,
                first_name: "x".repeat(300),
                ..Default::default()
            }),
            request_id: "r".repeat(200),
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    for field in [
        "contact.email",
        "contact.phone",
        "contact.locale",
        "contact.time_zone",
        "contact.tags[0]",
        "contact.lifecycle_stage",
        "contact.first_name",
        "request_id",
    ] {
        assert!(
            fields.contains(&field.to_owned()),
            "{field} not in {fields:?}"
        );
    }

    let err = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: "not-a-uuid".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["create_time".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["contact.id", "update_mask.paths[0]"]
    );

    let err = client
        .list_contacts(ListContactsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page_size", "page_token"]);

    // One bad contact in a batch: nothing of the batch is written.
    let err = client
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            contacts: vec![
                person("ok@example.com"),
                Contact {
                    first_name: "no key".into(),
                    ..Default::default()
                },
            ],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["contacts[1].external_id"]);
    let listed = client
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.contacts.is_empty());
}

#[tokio::test]
async fn list_pages_in_a_stable_order_with_filters() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let mut ids = Vec::new();
    for i in 0..7 {
        let contact = Contact {
            email: format!("p{i}@example.com"),
            tags: if i % 2 == 0 {
                vec!["even".into()]
            } else {
                vec![]
            },
            lifecycle_stage: if i < 3 {
                LifecycleStage::Purchase as i32
            } else {
                0
            },
            ..Default::default()
        };
        ids.push(create(&mut client, contact).await.id);
    }

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_contacts(ListContactsRequest {
                page_size: 3,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.contacts.len() <= 3);
        seen.extend(page.contacts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);

    let tagged = client
        .list_contacts(ListContactsRequest {
            tag: "even".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.contacts.len(), 4);
    let staged = client
        .list_contacts(ListContactsRequest {
            lifecycle_stage: LifecycleStage::Purchase as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staged.contacts.len(), 3);
    let by_email = client
        .list_contacts(ListContactsRequest {
            email: "P4@EXAMPLE.COM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_email.contacts.len(), 1);
    let future = client
        .list_contacts(ListContactsRequest {
            updated_since: Some(Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(future.contacts.is_empty());

    // A token cannot be replayed under other filters.
    let first = client
        .list_contacts(ListContactsRequest {
            page_size: 1,
            tag: "even".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .list_contacts(ListContactsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page_token"]);
}

#[tokio::test]
async fn create_with_request_id_happens_once() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let request = CreateContactRequest {
        contact: Some(person("once@example.com")),
        request_id: "req-1".into(),
    };
    let first = client
        .create_contact(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = client.create_contact(request).await.unwrap().into_inner();
    assert_eq!(first, retry);

    let err = client
        .create_contact(CreateContactRequest {
            contact: Some(person("other@example.com")),
            request_id: "req-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["request_id"]);
    let listed = client
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts.len(), 1);
}

#[tokio::test]
async fn batch_upsert_matches_by_external_id_then_email_and_retries_safely() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let by_email = create(
        &mut client,
        Contact {
            email: "known@example.com".into(),
            last_name: "Known".into(),
            attributes: attrs(serde_json::json!({"a": 1.0})),
            ..Default::default()
        },
    )
    .await;
    let by_external = create(
        &mut client,
        Contact {
            external_id: "crm-9".into(),
            first_name: "Old".into(),
            ..Default::default()
        },
    )
    .await;

    let request = BatchUpsertContactsRequest {
        contacts: vec![
            Contact {
                email: "KNOWN@example.com".into(),
                first_name: "Kim".into(),
                attributes: attrs(serde_json::json!({"b": 2.0})),
                ..Default::default()
            },
            Contact {
                external_id: "crm-9".into(),
                first_name: "New".into(),
                ..Default::default()
            },
            Contact {
                external_id: "crm-10".into(),
                email: "fresh@example.com".into(),
                ..Default::default()
            },
        ],
        request_id: "import-1".into(),
    };
    let response = client
        .batch_upsert_contacts(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.created, [false, false, true]);
    assert_eq!(response.contacts[0].id, by_email.id);
    assert_eq!(
        response.contacts[0].last_name, "Known",
        "unset fields keep their value"
    );
    assert_eq!(response.contacts[0].first_name, "Kim");
    let merged_attrs =
        rapport_core::convert::struct_to_json(response.contacts[0].attributes.as_ref().unwrap())
            .unwrap();
    assert_eq!(
        serde_json::Value::Object(merged_attrs),
        serde_json::json!({"a": 1.0, "b": 2.0})
    );
    assert_eq!(response.contacts[1].id, by_external.id);
    assert_eq!(response.contacts[1].first_name, "New");

    let retry = client
        .batch_upsert_contacts(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, response);
    let listed = client
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts.len(), 3);

    let err = client
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            contacts: vec![person("dup@example.com"), person("DUP@example.com")],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["contacts[1].email"]);

    let too_many = (0..1001)
        .map(|i| person(&format!("x{i}@example.com")))
        .collect();
    let err = client
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            contacts: too_many,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["contacts"]);
}

#[tokio::test]
async fn lifecycle_and_consent_changes_keep_history() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = create(
        &mut client,
        Contact {
            lifecycle_stage: LifecycleStage::Discovery as i32,
            ..person("h@example.com")
        },
    )
    .await;

    for stage in [LifecycleStage::Education, LifecycleStage::Purchase] {
        client
            .change_lifecycle_stage(ChangeLifecycleStageRequest {
                contact_id: contact.id.clone(),
                lifecycle_stage: stage as i32,
                source: "journey".into(),
            })
            .await
            .unwrap();
    }
    let history = client
        .list_lifecycle_history(ListLifecycleHistoryRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let stages: Vec<_> = history
        .changes
        .iter()
        .map(|c| (c.from_stage, c.to_stage))
        .collect();
    assert_eq!(
        stages,
        [
            (
                LifecycleStage::Education as i32,
                LifecycleStage::Purchase as i32
            ),
            (
                LifecycleStage::Discovery as i32,
                LifecycleStage::Education as i32
            )
        ]
    );
    assert_eq!(history.changes[0].source, "journey");
    let rest = client
        .list_lifecycle_history(ListLifecycleHistoryRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            page_token: history.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(
        rest.changes[0].from_stage,
        LifecycleStage::Unspecified as i32
    );
    assert!(rest.next_page_token.is_empty());

    let consent = |status: ConsentStatus| Consent {
        channel: Channel::Sms as i32,
        status: status as i32,
        change_time: None,
        source: "sms-keyword".into(),
    };
    client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Subscribed)),
        })
        .await
        .unwrap();
    // Same status again: no new history entry.
    client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Subscribed)),
        })
        .await
        .unwrap();
    let after = client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Unsubscribed)),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(after.consents[0].status, ConsentStatus::Unsubscribed as i32);
    let consent_history = client
        .list_consent_history(ListConsentHistoryRequest {
            contact_id: contact.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<_> = consent_history
        .changes
        .iter()
        .map(|c| (c.from_status, c.to_status))
        .collect();
    assert_eq!(
        statuses,
        [
            (
                ConsentStatus::Subscribed as i32,
                ConsentStatus::Unsubscribed as i32
            ),
            (
                ConsentStatus::Unspecified as i32,
                ConsentStatus::Subscribed as i32
            ),
        ]
    );

    let err = client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(Consent {
                channel: Channel::Web as i32,
                status: 0,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["consent.channel", "consent.status"]);
}

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
    assert_eq!(profile.lifecycle_history.len(), 1);
    let exported: usize = parts[1..]
        .iter()
        .map(|p| match p {
            export_contact_response::Part::Events(chunk) => chunk.events.len(),
            export_contact_response::Part::Profile(_) => panic!("one profile only"),
        })
        .sum();
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
