//! Segments through their API: builds that write only the difference,
//! versions, validation that names the node and writes nothing,
//! references between segments, archive, undelete and purge.

mod common;

use std::time::Duration;

use common::*;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn a_build_writes_only_who_entered_and_who_left() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let two = new_contact(&mut contacts, "two@example.com").await;
    let one = new_contact(&mut contacts, "one@example.com").await;
    let none = new_contact(&mut contacts, "none@example.com").await;
    record(
        &mut contacts,
        &two.id,
        &[
            ("order.placed", days_ago(1), None),
            ("order.placed", days_ago(10), None),
        ],
    )
    .await;
    record(
        &mut contacts,
        &one.id,
        &[("order.placed", days_ago(5), None)],
    )
    .await;
    // Too old to count in 90 days.
    record(
        &mut contacts,
        &none.id,
        &[("order.placed", days_ago(200), None)],
    )
    .await;
    harness.settle().await;

    let created = create(
        &mut client,
        dynamic(
            "Repeat buyers",
            counted("order.placed", 90, Operator::GreaterOrEqual, 2.0),
        ),
    )
    .await;
    assert_eq!(created.rule_version, 1);
    let segment = built(&mut client, &created.id, 1).await;
    let build = segment.build.unwrap();
    assert_eq!((build.entered_count, build.exited_count), (1, 0));
    assert_eq!(segment.member_count, 1);
    assert_eq!(
        member_ids(&mut client, &created.id).await,
        [two.id.as_str()]
    );

    // A looser rule is a new version; only `one` enters.
    let updated = client
        .update_segment(UpdateSegmentRequest {
            segment: Some(Segment {
                id: created.id.clone(),
                rule: Some(counted("order.placed", 90, Operator::GreaterOrEqual, 1.0)),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["rule".into()],
            }),
            etag: segment.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(updated.rule_version, 2);
    assert_eq!(updated.build.as_ref().unwrap().state(), BuildState::Pending);
    let segment = built(&mut client, &created.id, 2).await;
    let build = segment.build.unwrap();
    assert_eq!((build.entered_count, build.exited_count), (1, 0));
    assert_eq!(
        sorted(member_ids(&mut client, &created.id).await),
        sorted(vec![two.id.clone(), one.id.clone()])
    );

    // "Did not order in 90 days": both leave, `none` enters.
    client
        .update_segment(UpdateSegmentRequest {
            segment: Some(Segment {
                id: created.id.clone(),
                rule: Some(counted("order.placed", 90, Operator::Equals, 0.0)),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["rule".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap();
    let segment = built(&mut client, &created.id, 3).await;
    let build = segment.build.unwrap();
    assert_eq!((build.entered_count, build.exited_count), (1, 2));
    assert_eq!(segment.member_count, 1);
    assert_eq!(
        member_ids(&mut client, &created.id).await,
        [none.id.as_str()]
    );

    // Building again with nothing changed writes nothing.
    client
        .build_segment(BuildSegmentRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let segment = built(&mut client, &created.id, 3).await;
    let build = segment.build.unwrap();
    assert_eq!((build.entered_count, build.exited_count), (0, 0));

    // `one`'s record: entered by version 2, left by version 3.
    let mut export = client
        .export_contact_segments(ExportContactSegmentsRequest {
            contact_id: one.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let chunk = export.message().await.unwrap().unwrap();
    assert!(chunk.memberships.is_empty());
    let history: Vec<(bool, i64, ChangeCause)> = chunk
        .history
        .iter()
        .map(|change| (change.entered, change.rule_version, change.cause()))
        .collect();
    assert_eq!(
        history,
        [
            (true, 2, ChangeCause::RuleChange),
            (false, 3, ChangeCause::RuleChange)
        ]
    );
}

#[tokio::test]
async fn a_bad_rule_is_refused_at_its_node_and_nothing_is_written() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    let rule = all_of(vec![
        consent(
            rapport_proto::common::v1::Channel::Email,
            ConsentState::Subscribed,
        ),
        counted("order.placed", 90, Operator::GreaterOrEqual, 1.0),
        counted("order.placed", 0, Operator::GreaterOrEqual, 1.0),
    ]);
    let error = client
        .create_segment(CreateSegmentRequest {
            segment: Some(dynamic("Broken", rule)),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&error),
        ["segment.rule.all_of[2].event.window.within_days"]
    );

    let error = client
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                rule: Some(counted("x", 1, Operator::Equals, 0.0)),
                ..list("")
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["segment.name", "segment.rule"]);

    let listed = client
        .list_segments(ListSegmentsRequest {
            show_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.segments.is_empty());
}

fn member_of(id: &str) -> Rule {
    leaf(rule::Node::Segment(SegmentCondition {
        segment_id: id.into(),
    }))
}

#[tokio::test]
async fn segments_naming_segments_refuse_cycles_and_keep_what_they_name() {
    let harness = start_with(&["--segment-retention-days", "30"]).await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let vip = new_contact(&mut contacts, "vip@example.com").await;
    harness.settle().await;

    let base = create(&mut client, list("VIPs")).await;
    client
        .add_list_members(AddListMembersRequest {
            segment_id: base.id.clone(),
            contact_ids: vec![vip.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let derived = create(&mut client, dynamic("Not VIPs", not(member_of(&base.id)))).await;
    built(&mut client, &derived.id, 1).await;
    assert!(member_ids(&mut client, &derived.id).await.is_empty());
    let outer = create(
        &mut client,
        dynamic("VIPs again", not(member_of(&derived.id))),
    )
    .await;
    built(&mut client, &outer.id, 1).await;
    assert_eq!(member_ids(&mut client, &outer.id).await, [vip.id.as_str()]);

    // derived -> outer -> derived would be a cycle.
    let error = client
        .update_segment(UpdateSegmentRequest {
            segment: Some(Segment {
                id: derived.id.clone(),
                rule: Some(all_of(vec![member_of(&outer.id)])),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["rule".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&error),
        ["segment.rule.all_of[0].segment.segment_id"]
    );

    // A named segment cannot be archived; an unknown one cannot be named.
    let error = client
        .delete_segment(DeleteSegmentRequest {
            id: derived.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(reason(&error), "SEGMENT_IN_USE");
    let error = client
        .create_segment(CreateSegmentRequest {
            segment: Some(dynamic("Dangling", member_of(&Uuid::now_v7().to_string()))),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["segment.rule.segment.segment_id"]);

    // Archive the outer one: gone from the list, restorable, then purged.
    let archived = client
        .delete_segment(DeleteSegmentRequest {
            id: outer.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert!(archived.archive_time.is_some());
    let listed = client
        .list_segments(ListSegmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.segments.len(), 2);
    client
        .undelete_segment(UndeleteSegmentRequest {
            id: outer.id.clone(),
        })
        .await
        .unwrap();
    built(&mut client, &outer.id, 1).await;
    client
        .delete_segment(DeleteSegmentRequest {
            id: outer.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    harness
        .advance_clock(Duration::from_secs(31 * 24 * 3600))
        .await;
    for _ in 0..200 {
        let found = client
            .get_segment(GetSegmentRequest {
                id: outer.id.clone(),
            })
            .await;
        if let Err(error) = found {
            assert_eq!(error.code(), Code::NotFound);
            assert_eq!(reason(&error), "SEGMENT_NOT_FOUND");
            // Its members went with it.
            let mut admin = harness.db.admin().await;
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM segmentation.memberships WHERE segment_id = $1::uuid",
            )
            .bind(&outer.id)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            assert_eq!(left, 0);
            return;
        }
        // The builder looks at the clock about once a second.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the archived segment was not purged");
}

#[tokio::test]
async fn an_update_with_a_stale_etag_changes_nothing() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let created = create(&mut client, list("Newsletter")).await;
    let renamed = client
        .update_segment(UpdateSegmentRequest {
            segment: Some(Segment {
                id: created.id.clone(),
                name: "Weekly newsletter".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(renamed.name, "Weekly newsletter");
    assert_eq!(renamed.rule_version, 1);
    let error = client
        .update_segment(UpdateSegmentRequest {
            segment: Some(Segment {
                id: created.id.clone(),
                name: "Stale".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let segment = client
        .get_segment(GetSegmentRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(segment.name, "Weekly newsletter");
}

#[tokio::test]
async fn the_consumer_tables_match_their_one_definition() {
    let harness = start().await;
    rapport_testkit::assert_consumer_matches_definition(
        &harness.db,
        "segmentation",
        "rapport_segmentation",
    )
    .await;
}
