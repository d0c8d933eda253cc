//! Segmentation killed with SIGKILL mid-batch, twice, under a steady
//! stream of orders: afterwards every buyer entered the segment exactly
//! once, in its membership, its count, its history and on its feed. (A
//! test binary of its own, so it does not run beside the other crash
//! tests on a small machine.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use rapport_client::with_retries;
use rapport_e2e::{create_tenant, keyed_client, named};
use rapport_proto::common::v1::Channel as EventChannel;
use rapport_proto::contacts::v1::*;
use rapport_proto::segmentation::v1::{
    BuildState, CreateSegmentRequest, EventCondition, GetSegmentRequest, Measure, Operator, Rule,
    Segment, SegmentKind, TimeWindow, rule, time_window,
};
use rapport_testkit::TestDatabase;
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY};
use sqlx::PgPool;

#[tokio::test]
async fn a_killed_segmentation_enters_every_contact_exactly_once() {
    let mut stack = ProcessStack::start(TestDatabase::create().await, &[])
        .await
        .unwrap();
    let db = PgPool::connect(&stack.db.url(None)).await.unwrap();
    let operator = keyed_client(stack.gateway.channel.clone(), STACK_OPERATOR_KEY);
    let key = create_tenant(
        &operator,
        named("segment crashes"),
        &["contacts:write", "segmentation:write"],
    )
    .await;
    let client = keyed_client(stack.gateway.channel.clone(), &key.secret);
    let buyers = client
        .segmentation()
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                name: "ever ordered".into(),
                kind: SegmentKind::Dynamic.into(),
                rule: Some(Rule {
                    node: Some(rule::Node::Event(EventCondition {
                        r#type: "order.placed".into(),
                        measure: Measure::Count.into(),
                        operator: Operator::GreaterOrEqual.into(),
                        threshold: 1.0,
                        window: Some(TimeWindow {
                            window: Some(time_window::Window::Ever(true)),
                        }),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();

    let mut segmentation = client.segmentation();
    for _ in 0..200 {
        let segment = segmentation
            .get_segment(GetSegmentRequest {
                id: buyers.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap();
        if segment.build.unwrap_or_default().state() == BuildState::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // New contacts keep ordering (each order retried with its client event
    // id until recorded), earlier ones order again.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids: Vec<String> = Vec::new();
            while writing.load(Ordering::Relaxed) {
                let contact = with_retries(60, || {
                    let client = client.clone();
                    let email = format!("buyer{}@example.com", ids.len());
                    async move {
                        let created = client
                            .contacts()
                            .create_contact(CreateContactRequest {
                                request_id: email.clone(),
                                contact: Some(Contact {
                                    email,
                                    ..Default::default()
                                }),
                            })
                            .await?;
                        Ok(created.into_inner().contact.unwrap())
                    }
                })
                .await
                .expect("every contact is created in the end");
                ids.push(contact.id);
                let again = ids[ids.len() / 2].clone();
                let request = RecordEventsRequest {
                    events: [ids.last().unwrap().clone(), again]
                        .into_iter()
                        .enumerate()
                        .map(|(i, contact_id)| Event {
                            client_event_id: format!("{}-{i}", ids.len()),
                            contact_id,
                            r#type: "order.placed".into(),
                            channel: EventChannel::Web as i32,
                            occur_time: Some(std::time::SystemTime::now().into()),
                            ..Default::default()
                        })
                        .collect(),
                };
                with_retries(60, || {
                    let mut contacts = client.contacts();
                    let request = request.clone();
                    async move { contacts.record_events(request).await }
                })
                .await
                .expect("every order is recorded in the end");
            }
            ids.len()
        })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Segmentation dies inside a batch's transaction.
        stack.restart_segmentation(Signal::SIGKILL).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writing.store(false, Ordering::Relaxed);
    let buyers_count = writer.await.unwrap() as i64;
    assert!(buyers_count > 20, "{buyers_count} buyers");

    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let behind: bool = sqlx::query_scalar(
                "SELECT (SELECT last_position FROM contacts.outbox_state) \
                      > coalesce((SELECT position FROM segmentation.feed_cursors \
                                  WHERE consumer = 'segmentation.contacts'), 0) \
                     OR EXISTS (SELECT 1 FROM contacts.outbox WHERE position IS NULL)",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "segmentation caught up with the contacts feed"
    );
    let segment: uuid::Uuid = buyers.id.parse().unwrap();
    let (members, counted, entries, events, contacts_entered): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM segmentation.memberships WHERE segment_id = $1), \
                (SELECT member_count FROM segmentation.segments WHERE id = $1), \
                (SELECT count(*) FROM segmentation.membership_changes WHERE segment_id = $1), \
                (SELECT count(*) FROM segmentation.outbox WHERE type = 'segment.entered'), \
                (SELECT count(DISTINCT aggregate_id) FROM segmentation.outbox \
                 WHERE type = 'segment.entered')",
        )
        .bind(segment)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(members, buyers_count, "every buyer is a member");
    assert_eq!(counted, members, "the segment's count matches its rows");
    assert_eq!(entries, buyers_count, "each entered once in the history");
    assert_eq!(
        (events, contacts_entered),
        (buyers_count, buyers_count),
        "each entered once on the feed"
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM segmentation.dead_letters")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}
