//! Membership kept current: a recorded event puts a contact in a segment
//! at once, time passing takes them out, a list's change reaches the
//! segments built on it; every entry and exit is in the history and on
//! segmentation's own feed, with its cause.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use prost::Message as _;
use rapport_core::credential::{Access, Grant, Scope};
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{EventEnvelope, SubscribeRequest};
use rapport_proto::segmentation::v1::*;
use uuid::Uuid;

/// Segmentation's feed, from the start.
async fn feed(harness: &Harness) -> BoxStream<'static, EventEnvelope> {
    let channel = harness.segmentation.channel_for(&Grant {
        tenant_id: None,
        principal: "test-consumer".into(),
        scopes: vec![Scope::new("segmentation", Access::Read)],
    });
    EventFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner()
        .filter_map(|message| async move { message.unwrap().event })
        .boxed()
}

/// The next entry or exit on the feed: (entered, segment, contact, cause).
async fn next_change(
    feed: &mut BoxStream<'static, EventEnvelope>,
) -> (bool, String, String, ChangeCause) {
    let event = tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("the change reaches the feed")
        .expect("the feed goes on");
    let payload = event.payload.unwrap();
    match event.r#type.as_str() {
        "segment.entered" => {
            let entered = SegmentEntered::decode(payload.value.as_slice()).unwrap();
            let cause = entered.cause();
            (true, entered.segment_id, entered.contact_id, cause)
        }
        "segment.exited" => {
            let exited = SegmentExited::decode(payload.value.as_slice()).unwrap();
            let cause = exited.cause();
            (false, exited.segment_id, exited.contact_id, cause)
        }
        other => panic!("unexpected event {other}"),
    }
}

/// Waits until the sweeper has swept `segment` past `moved` from now
/// (the service's clock having been moved by that).
async fn swept_past(harness: &Harness, segment: &str, moved: chrono::Duration) {
    let segment: Uuid = segment.parse().unwrap();
    let past = chrono::Utc::now() + moved - chrono::Duration::seconds(5);
    let mut admin = harness.db.admin().await;
    for _ in 0..400 {
        let until: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT swept_until FROM segmentation.sweeps WHERE segment_id = $1")
                .bind(segment)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
        if until.is_some_and(|until| until >= past) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("segment {segment} was not swept in 20 s");
}

#[tokio::test]
async fn an_event_lets_a_contact_in_at_once_and_time_takes_them_out() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let buyers = create_built(
        &mut client,
        "ordered this month",
        counted("order.placed", 30, Operator::GreaterOrEqual, 1.0),
    )
    .await;
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    let mut feed = feed(&harness).await;

    record(
        &mut contacts,
        &ann.id,
        &[("order.placed", days_ago(1), None)],
    )
    .await;
    assert_eq!(
        next_change(&mut feed).await,
        (true, buyers.id.clone(), ann.id.clone(), ChangeCause::Event)
    );
    assert_eq!(member_ids(&mut client, &buyers.id).await, [ann.id.as_str()]);

    // A page view and a second order change nothing.
    record(
        &mut contacts,
        &ann.id,
        &[
            ("page.viewed", days_ago(0), None),
            ("order.placed", days_ago(0), None),
        ],
    )
    .await;
    harness.settle().await;
    assert_eq!(history(&mut client, &buyers.id).await.len(), 1);

    // 29 days on, the older order has aged out and the newer one not yet.
    harness
        .advance_clock(Duration::from_secs(29 * 86_400))
        .await;
    swept_past(&harness, &buyers.id, chrono::Duration::days(29)).await;
    assert_eq!(member_ids(&mut client, &buyers.id).await, [ann.id.as_str()]);
    // Two days later neither counts: the sweep takes Ann out.
    harness.advance_clock(Duration::from_secs(2 * 86_400)).await;
    assert_eq!(
        next_change(&mut feed).await,
        (false, buyers.id.clone(), ann.id.clone(), ChangeCause::Time)
    );
    assert!(member_ids(&mut client, &buyers.id).await.is_empty());
    assert_eq!(
        history(&mut client, &buyers.id).await,
        [
            (false, ann.id.clone(), ChangeCause::Time),
            (true, ann.id.clone(), ChangeCause::Event),
        ]
    );
    assert_eq!(member_count(&mut client, &buyers.id).await, 0);
}

#[tokio::test]
async fn an_event_dated_ahead_counts_once_its_time_comes() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let buyers = create_built(
        &mut client,
        "ordered this month",
        counted("order.placed", 30, Operator::GreaterOrEqual, 1.0),
    )
    .await;
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    let mut feed = feed(&harness).await;

    // An order booked for tomorrow has not happened yet.
    record(
        &mut contacts,
        &ann.id,
        &[(
            "order.placed",
            days_ago(-1) - chrono::Duration::hours(12),
            None,
        )],
    )
    .await;
    harness.settle().await;
    assert!(member_ids(&mut client, &buyers.id).await.is_empty());
    // A day on it has: the sweep lets Ann in.
    harness.advance_clock(Duration::from_secs(86_400)).await;
    assert_eq!(
        next_change(&mut feed).await,
        (true, buyers.id.clone(), ann.id.clone(), ChangeCause::Time)
    );
}

#[tokio::test]
async fn a_list_change_reaches_the_segments_built_on_it() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    harness.settle().await;
    let vips = create(&mut client, list("vips")).await;
    let not_vips = create(
        &mut client,
        dynamic(
            "everyone but the vips",
            not(leaf(rule::Node::Segment(SegmentCondition {
                segment_id: vips.id.clone(),
            }))),
        ),
    )
    .await;
    built(&mut client, &not_vips.id, 1).await;
    assert_eq!(
        member_ids(&mut client, &not_vips.id).await,
        [ann.id.as_str()]
    );

    client
        .add_list_members(AddListMembersRequest {
            segment_id: vips.id.clone(),
            contact_ids: vec![ann.id.clone()],
            request_id: "add-ann".into(),
        })
        .await
        .unwrap();
    assert!(member_ids(&mut client, &not_vips.id).await.is_empty());
    assert_eq!(
        history(&mut client, &vips.id).await,
        [(true, ann.id.clone(), ChangeCause::List)]
    );
    assert_eq!(
        history(&mut client, &not_vips.id).await,
        [
            (false, ann.id.clone(), ChangeCause::Event),
            (true, ann.id.clone(), ChangeCause::Build),
        ]
    );

    // The feed has all three, in the order they happened.
    let mut feed = feed(&harness).await;
    let expected = [
        (
            true,
            not_vips.id.clone(),
            ann.id.clone(),
            ChangeCause::Build,
        ),
        (true, vips.id.clone(), ann.id.clone(), ChangeCause::List),
        (
            false,
            not_vips.id.clone(),
            ann.id.clone(),
            ChangeCause::Event,
        ),
    ];
    for change in expected {
        assert_eq!(next_change(&mut feed).await, change);
    }
}

#[tokio::test]
async fn history_needs_a_segment_or_a_contact_and_keeps_to_the_tenant() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let refused = client
        .list_membership_history(ListMembershipHistoryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("segment_id"), "{refused:?}");

    let mut other = harness.client(Uuid::now_v7());
    let theirs = create(&mut other, list("theirs")).await;
    let unknown = client
        .list_membership_history(ListMembershipHistoryRequest {
            segment_id: theirs.id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn the_outbox_matches_its_one_definition() {
    let harness = start().await;
    rapport_testkit::assert_outbox_matches_definition(
        &harness.db,
        "segmentation",
        "rapport_segmentation",
    )
    .await;
}

#[tokio::test]
async fn evaluate_rule_answers_once_the_given_feed_position_is_applied() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    harness.settle().await;
    record(
        &mut contacts,
        &ann.id,
        &[("order.placed", days_ago(0), None)],
    )
    .await;
    // The position a journey would read off the contacts feed.
    let mut admin = harness.db.admin().await;
    let mut position = None;
    while position.is_none() {
        position = sqlx::query_scalar(
            "SELECT position FROM contacts.outbox WHERE type = 'contact.event_recorded'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let position: i64 = position.unwrap();
    let ordered = counted("order.placed", 1, Operator::GreaterOrEqual, 1.0);
    let request = |min: i64, wait_ms: i32| EvaluateRuleRequest {
        contact_id: ann.id.clone(),
        target: Some(evaluate_rule_request::Target::Rule(ordered.clone())),
        min_positions: vec![FeedPosition {
            producer: "contacts".into(),
            position: min,
        }],
        max_wait: Some(prost_types::Duration {
            seconds: i64::from(wait_ms / 1000),
            nanos: (wait_ms % 1000) * 1_000_000,
        }),
    };
    let judged = client
        .evaluate_rule(request(position, 10_000))
        .await
        .unwrap()
        .into_inner();
    assert!(judged.matched, "the event at {position} is counted");
    let applied = &judged.applied_positions[0];
    assert_eq!(applied.producer, "contacts");
    assert!(applied.position >= position);

    // A position segmentation will not reach in time.
    let behind = client
        .evaluate_rule(request(position + 1_000, 200))
        .await
        .unwrap_err();
    assert_eq!(behind.code(), tonic::Code::Unavailable);
    assert_eq!(rapport_testkit::reason(&behind), "FEED_BEHIND");
    assert!(behind.message().contains("asked for"), "{behind:?}");

    let mut unknown = request(position, 100);
    unknown.min_positions[0].producer = "campaigns".into();
    let refused = client.evaluate_rule(unknown).await.unwrap_err();
    assert_eq!(
        rapport_testkit::violated_fields(&refused),
        ["min_positions[0].producer"]
    );
}

#[tokio::test]
async fn a_new_contact_enters_did_not_do_x_at_once_and_a_merged_duplicate_leaves() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let never = create_built(
        &mut client,
        "never ordered",
        counted("order.placed", 30, Operator::Equals, 0.0),
    )
    .await;
    let mut feed = feed(&harness).await;
    // Nothing about Ann but her creation: every rule judges her.
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    assert_eq!(
        next_change(&mut feed).await,
        (true, never.id.clone(), ann.id.clone(), ChangeCause::Event)
    );
    let bob = new_contact(&mut contacts, "bob@example.com").await;
    assert_eq!(
        next_change(&mut feed).await,
        (true, never.id.clone(), bob.id.clone(), ChangeCause::Event)
    );

    // Bob is merged into Ann: he leaves, on the record and on the feed.
    contacts
        .merge_contacts(rapport_proto::contacts::v1::MergeContactsRequest {
            survivor_id: ann.id.clone(),
            duplicate_id: bob.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        (false, never.id.clone(), bob.id.clone(), ChangeCause::Event)
    );
    assert_eq!(member_ids(&mut client, &never.id).await, [ann.id.as_str()]);
    assert_eq!(member_count(&mut client, &never.id).await, 1);
}

#[tokio::test]
async fn the_feed_snapshot_holds_every_current_membership() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    harness.settle().await;
    let vips = create(&mut client, list("vips")).await;
    client
        .add_list_members(AddListMembersRequest {
            segment_id: vips.id.clone(),
            contact_ids: vec![ann.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let channel = harness.segmentation.channel_for(&Grant {
        tenant_id: None,
        principal: "test-consumer".into(),
        scopes: vec![Scope::new("segmentation", Access::Read)],
    });
    let mut snapshot = EventFeedServiceClient::new(channel)
        .get_snapshot(rapport_proto::events::v1::GetSnapshotRequest {
            kinds: vec!["rapport.segmentation.v1.ContactMemberships".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut items = Vec::new();
    while let Some(message) = snapshot.message().await.unwrap() {
        items.extend(message.items);
    }
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].tenant_id, tenant.to_string());
    let held =
        ContactMemberships::decode(items[0].payload.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(held.contact_id, ann.id);
    assert_eq!(held.memberships.len(), 1);
    assert_eq!(held.memberships[0].segment_id, vips.id);
}
