//! Judging beside other work: the judges of a tenant (feed consumers,
//! sweeps, list edits) take turns, and a build under way holds up no
//! entry and writes only the difference when it ends.

mod common;

use std::time::Duration;

use common::*;
use rapport_proto::segmentation::v1::*;
use sqlx::Connection as _;
use uuid::Uuid;

#[tokio::test]
async fn the_judges_of_a_tenant_take_turns() {
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
    harness.settle().await;

    // Another judge of the tenant holds the turn: the batch with Ann's
    // order waits for it to commit, so it judges with that judge's changes.
    let mut admin = harness.db.admin().await;
    let mut other = admin.begin().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('segmentation.judge ' || $1::text, 0))",
    )
    .bind(tenant)
    .execute(&mut *other)
    .await
    .unwrap();
    record(
        &mut contacts,
        &ann.id,
        &[("order.placed", days_ago(1), None)],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(member_ids(&mut client, &buyers.id).await.is_empty());
    other.commit().await.unwrap();
    eventually("the batch judges Ann once its turn comes", || {
        let mut client = client.clone();
        let buyers = buyers.id.clone();
        async move { member_ids(&mut client, &buyers).await.len() == 1 }
    })
    .await;
}

#[tokio::test]
async fn a_build_under_way_holds_up_no_entry_and_writes_only_the_difference() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let viewers = create_built(
        &mut client,
        "viewed this week",
        counted("page.viewed", 7, Operator::GreaterOrEqual, 1.0),
    )
    .await;
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    harness.settle().await;

    // A rebuild of the segment is under way (held at its start, where a
    // build takes the segment's lock) while Ann views a page.
    let mut admin = harness.db.admin().await;
    let mut building = admin.begin().await.unwrap();
    let segment: Uuid = viewers.id.parse().unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(segment)
        .execute(&mut *building)
        .await
        .unwrap();
    client
        .build_segment(BuildSegmentRequest {
            id: viewers.id.clone(),
        })
        .await
        .unwrap();
    record(
        &mut contacts,
        &ann.id,
        &[("page.viewed", days_ago(0), None)],
    )
    .await;
    eventually("Ann enters while the build waits", || {
        let mut client = client.clone();
        let viewers = viewers.id.clone();
        async move { member_ids(&mut client, &viewers).await.len() == 1 }
    })
    .await;
    building.commit().await.unwrap();
    let first_build = viewers.build.clone().unwrap_or_default().finish_time;
    eventually("the build ends", || {
        let mut client = client.clone();
        let viewers = viewers.id.clone();
        async move {
            let segment = client
                .get_segment(GetSegmentRequest { id: viewers })
                .await
                .unwrap()
                .into_inner()
                .segment
                .unwrap();
            let build = segment.build.unwrap_or_default();
            build.state() == BuildState::Ready && build.finish_time != first_build
        }
    })
    .await;
    let built = client
        .get_segment(GetSegmentRequest {
            id: viewers.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(built.build.unwrap().entered_count, 0);
    // The build found Ann already in: one entry, from the event.
    assert_eq!(
        history(&mut client, &viewers.id).await,
        [(true, ann.id.clone(), ChangeCause::Event)]
    );
}
