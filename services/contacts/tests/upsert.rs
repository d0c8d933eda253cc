//! BatchUpsertContacts: matching, all-or-nothing, and safe retries.

mod common;

use common::{attrs, create, person};
use rapport_proto::contacts::v1::*;
use rapport_testkit::violated_fields;
use uuid::Uuid;

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
