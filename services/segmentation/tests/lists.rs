//! Static lists: contacts added and removed by id, retries by request id,
//! unknown contacts reported, and the other kind refused.

mod common;

use common::*;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn a_list_takes_known_contacts_once_and_retries_answer_the_same() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    let bob = new_contact(&mut contacts, "bob@example.com").await;
    harness.settle().await;
    let segment = create(&mut client, list("Beta testers")).await;
    let stranger = Uuid::now_v7().to_string();

    let add = AddListMembersRequest {
        segment_id: segment.id.clone(),
        contact_ids: vec![ann.id.clone(), ann.id.clone(), stranger.clone()],
        request_id: "add-1".into(),
    };
    let first = client
        .add_list_members(add.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.added_count, 1);
    assert_eq!(first.unchanged_count, 0);
    assert_eq!(first.unknown_contact_ids, [stranger.as_str()]);
    // A retry is answered from the first call, even though Ann is a member now.
    let retry = client.add_list_members(add).await.unwrap().into_inner();
    assert_eq!(retry, first);

    let second = client
        .add_list_members(AddListMembersRequest {
            segment_id: segment.id.clone(),
            contact_ids: vec![ann.id.clone(), bob.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((second.added_count, second.unchanged_count), (1, 1));
    let count = client
        .count_segment(CountSegmentRequest {
            segment_id: segment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.member_count, 2);

    let removed = client
        .remove_list_members(RemoveListMembersRequest {
            segment_id: segment.id.clone(),
            contact_ids: vec![ann.id.clone(), stranger],
            request_id: "remove-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((removed.removed_count, removed.unchanged_count), (1, 1));
    assert_eq!(
        member_ids(&mut client, &segment.id).await,
        [bob.id.as_str()]
    );
    // Bob's segments, a page at a time.
    let other = create(&mut client, list("Newsletter")).await;
    client
        .add_list_members(AddListMembersRequest {
            segment_id: other.id.clone(),
            contact_ids: vec![bob.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut of_bob = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_contact_segments(ListContactSegmentsRequest {
                contact_id: bob.id.clone(),
                page_size: 1,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.memberships.len(), 1);
        of_bob.extend(page.memberships.into_iter().map(|m| m.segment_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(of_bob, sorted(vec![segment.id.clone(), other.id.clone()]));

    // The export streams the same members.
    let mut export = client
        .export_segment_members(ExportSegmentMembersRequest {
            segment_id: segment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = Vec::new();
    while let Some(chunk) = export.message().await.unwrap() {
        exported.extend(chunk.contact_ids);
    }
    assert_eq!(exported, [bob.id]);
}

#[tokio::test]
async fn list_calls_check_their_ids_and_the_segment_kind() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let error = client
        .add_list_members(AddListMembersRequest {
            segment_id: "x".into(),
            contact_ids: vec![Uuid::now_v7().to_string(), "nope".into()],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["segment_id", "contact_ids[1]"]);

    let error = client
        .add_list_members(AddListMembersRequest {
            segment_id: Uuid::now_v7().to_string(),
            contact_ids: Vec::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["contact_ids"]);

    let rule_based = create(
        &mut client,
        dynamic(
            "Buyers",
            counted("order.placed", 30, Operator::GreaterOrEqual, 1.0),
        ),
    )
    .await;
    let error = client
        .add_list_members(AddListMembersRequest {
            segment_id: rule_based.id.clone(),
            contact_ids: vec![Uuid::now_v7().to_string()],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(reason(&error), "WRONG_SEGMENT_KIND");

    let missing = client
        .add_list_members(AddListMembersRequest {
            segment_id: Uuid::now_v7().to_string(),
            contact_ids: vec![Uuid::now_v7().to_string()],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "SEGMENT_NOT_FOUND");
}
