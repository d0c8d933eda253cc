//! Contacts: create, get, update, delete, list, and retries by request id.

mod common;

use common::{attrs, create, get, person};
use prost_types::{FieldMask, Timestamp};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

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
async fn list_by_ids_answers_which_contacts_live() {
    let h = common::start().await;
    let tenant = Uuid::now_v7();
    let mut client = h.client(tenant);
    let live = create(&mut client, person("live@example.com")).await;
    let survivor = create(&mut client, person("survivor@example.com")).await;
    let duplicate = create(&mut client, person("duplicate@example.com")).await;
    let deleted = create(&mut client, person("deleted@example.com")).await;
    client
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.id.clone(),
            duplicate_id: duplicate.id.clone(),
        })
        .await
        .unwrap();
    client
        .delete_contact(DeleteContactRequest {
            id: deleted.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let elsewhere = create(&mut h.client(Uuid::now_v7()), person("live@example.com")).await;
    let never = Uuid::now_v7().to_string();

    let asked = [
        &live.id,
        &duplicate.id,
        &deleted.id,
        &elsewhere.id,
        &never,
        &survivor.id,
    ];
    let found = client
        .list_contacts(ListContactsRequest {
            ids: asked.iter().map(|id| (*id).clone()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = vec![live.id.clone(), survivor.id.clone()];
    expected.sort();
    let ids: Vec<String> = found.contacts.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, expected);

    let err = client
        .list_contacts(ListContactsRequest {
            ids: vec![live.id.clone(), "not-an-id".into(), live.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["ids[1]", "ids[2]"]);
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
async fn an_empty_mask_updates_the_fields_set_and_a_star_updates_every_field() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let created = create(
        &mut client,
        Contact {
            email: "mask@example.com".into(),
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            ..Default::default()
        },
    )
    .await;

    // Empty mask (AIP-134): every field set in the request, nothing else.
    let renamed = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: created.id.clone(),
                first_name: "Bea".into(),
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(renamed.first_name, "Bea");
    assert_eq!(renamed.last_name, "Lima");
    assert_eq!(renamed.email, "mask@example.com");

    // `*`: every updatable field, so what the request leaves unset is cleared.
    let replaced = client
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: created.id.clone(),
                email: "mask@example.com".into(),
                first_name: "Cleo".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["*".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(replaced.first_name, "Cleo");
    assert_eq!(replaced.last_name, "");
}
