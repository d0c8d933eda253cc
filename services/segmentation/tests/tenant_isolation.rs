//! A tenant never sees another tenant's segments, members or contacts,
//! whatever id it sends.

mod common;

use common::*;
use rapport_proto::segmentation::v1::explain_membership_request::Target;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn another_tenants_ids_reach_nothing() {
    let harness = start().await;
    let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    let mut their_contacts = harness.contacts(theirs);
    let their_contact = new_contact(&mut their_contacts, "them@example.com").await;
    record(
        &mut their_contacts,
        &their_contact.id,
        &[("order.placed", days_ago(1), None)],
    )
    .await;
    harness.settle().await;
    let mut their_client = harness.client(theirs);
    let their_list = create(&mut their_client, list("Theirs")).await;
    their_client
        .add_list_members(AddListMembersRequest {
            segment_id: their_list.id.clone(),
            contact_ids: vec![their_contact.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();

    let mut client = harness.client(mine);
    let not_found = |error: tonic::Status| {
        assert_eq!(error.code(), Code::NotFound, "{error:?}");
        reason(&error)
    };
    let error = client
        .get_segment(GetSegmentRequest {
            id: their_list.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "SEGMENT_NOT_FOUND");
    let error = client
        .list_segment_members(ListSegmentMembersRequest {
            segment_id: their_list.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "SEGMENT_NOT_FOUND");
    let error = client
        .count_segment(CountSegmentRequest {
            segment_id: their_list.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "SEGMENT_NOT_FOUND");
    let error = client
        .delete_segment(DeleteSegmentRequest {
            id: their_list.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "SEGMENT_NOT_FOUND");
    let error = client
        .export_segment_members(ExportSegmentMembersRequest {
            segment_id: their_list.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "SEGMENT_NOT_FOUND");
    let error = client
        .list_contact_segments(ListContactSegmentsRequest {
            contact_id: their_contact.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "CONTACT_NOT_FOUND");
    let error = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: their_contact.id.clone(),
            target: Some(Target::Rule(counted(
                "order.placed",
                30,
                Operator::GreaterOrEqual,
                1.0,
            ))),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found(error), "CONTACT_NOT_FOUND");

    // Their segment cannot be named in my rules, their contacts not added
    // to my lists, and my previews count none of theirs.
    let error = client
        .create_segment(CreateSegmentRequest {
            segment: Some(dynamic(
                "Borrowed",
                leaf(rule::Node::Segment(SegmentCondition {
                    segment_id: their_list.id.clone(),
                })),
            )),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["segment.rule.segment.segment_id"]);
    let mine_list = create(&mut client, list("Mine")).await;
    let added = client
        .add_list_members(AddListMembersRequest {
            segment_id: mine_list.id.clone(),
            contact_ids: vec![their_contact.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added_count, 0);
    assert_eq!(added.unknown_contact_ids, [their_contact.id.as_str()]);
    let previewed = preview(
        &mut client,
        counted("order.placed", 30, Operator::GreaterOrEqual, 1.0),
    )
    .await;
    assert_eq!((previewed.count, previewed.contact_count), (0, 0));
    let listed = client
        .list_segments(ListSegmentsRequest {
            show_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.segments.len(), 1);
    let mut export = client
        .export_contact_segments(ExportContactSegmentsRequest {
            contact_id: their_contact.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let chunk = export.message().await.unwrap().unwrap();
    assert!(chunk.memberships.is_empty() && chunk.history.is_empty());
}
