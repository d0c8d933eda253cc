//! PreviewRule within its time budget (an estimate, flagged, when the
//! exact count runs out of time) and ExplainMembership on hand-built
//! histories.

mod common;

use common::*;
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{Consent, ConsentStatus, Contact};
use rapport_proto::segmentation::v1::explain_membership_request::Target;
use rapport_proto::segmentation::v1::value::Kind;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn explain_shows_each_node_with_what_was_observed() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let ann = create_contact(
        &mut contacts,
        Contact {
            email: "ann@example.com".into(),
            consents: vec![Consent {
                channel: Channel::Email.into(),
                status: ConsentStatus::Subscribed.into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    // One order in the window, one before it.
    record(
        &mut contacts,
        &ann.id,
        &[
            ("order.placed", days_ago(10), None),
            ("order.placed", days_ago(120), None),
        ],
    )
    .await;
    harness.settle().await;
    let rule = all_of(vec![
        consent(Channel::Email, ConsentState::Subscribed),
        counted("order.placed", 90, Operator::GreaterOrEqual, 2.0),
        not(attribute(
            "plan",
            Operator::Equals,
            Kind::Text("free".into()),
        )),
    ]);
    let segment = create(&mut client, dynamic("Engaged", rule.clone())).await;
    built(&mut client, &segment.id, 1).await;

    let explained = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: ann.id.clone(),
            target: Some(Target::SegmentId(segment.id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!explained.matched);
    assert!(!explained.member);
    let root = explained.root.unwrap();
    assert_eq!(
        (root.path.as_str(), root.condition.as_str()),
        ("rule", "all of")
    );
    let nodes: Vec<(&str, bool, &str, &str)> = root
        .children
        .iter()
        .map(|n| {
            (
                n.path.as_str(),
                n.matched,
                n.condition.as_str(),
                n.observed.as_str(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            (
                "rule.all_of[0]",
                true,
                "consent on EMAIL is SUBSCRIBED",
                "SUBSCRIBED"
            ),
            (
                "rule.all_of[1]",
                false,
                "order.placed counted in the last 90 days >= 2",
                "counted 1"
            ),
            ("rule.all_of[2]", true, "not", ""),
        ]
    );
    let inner = &root.children[2].children[0];
    assert_eq!(inner.path, "rule.all_of[2].not");
    assert_eq!(inner.condition, "attribute plan = \"free\"");
    assert_eq!(inner.observed, "no such attribute");
    assert!(!inner.matched);

    // An unsaved rule: the 120-day-old order counts in a 365-day window.
    let explained = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: ann.id.clone(),
            target: Some(Target::Rule(counted(
                "order.placed",
                365,
                Operator::GreaterOrEqual,
                2.0,
            ))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(explained.matched);
    assert_eq!(explained.root.unwrap().observed, "counted 2");

    let error = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: Uuid::now_v7().to_string(),
            target: Some(Target::Rule(rule)),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), "CONTACT_NOT_FOUND");
    let error = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: ann.id.clone(),
            target: Some(Target::Rule(counted(
                "order.placed",
                0,
                Operator::Equals,
                1.0,
            ))),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["rule.event.window.within_days"]);
}

#[tokio::test]
async fn a_preview_that_runs_out_of_time_answers_with_a_flagged_estimate() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut client = harness.client(tenant);
    // Many contacts at once, written straight into the projection: half
    // renew after 2030, half renewed in 2020.
    let mut admin = harness.db.admin().await;
    sqlx::query(
        "INSERT INTO segmentation.profiles (tenant_id, contact_id, email_domain, locale, \
             time_zone, create_time, attributes, tags, stage, consents) \
         SELECT $1, gen_random_uuid(), '', '', '', now(), \
             jsonb_build_object('renewal', CASE WHEN i % 2 = 0 THEN '2020-01-01T00:00:00Z' \
                                               ELSE '2031-01-01T00:00:00Z' END), \
             '{}', 0, '{}' FROM generate_series(1, 200000) AS i",
    )
    .bind(tenant)
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("ANALYZE segmentation.profiles")
        .execute(&mut admin)
        .await
        .unwrap();
    // Reading a moment out of every contact's attributes is slow on
    // purpose here: it cannot finish in the 100 ms allowed.
    let rule = attribute("renewal", Operator::Less, Kind::DaysAgo(30));
    let estimated = client
        .preview_rule(PreviewRuleRequest {
            rule: Some(rule.clone()),
            sample_size: 5,
            time_budget: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(estimated.estimated);
    assert_eq!(estimated.contact_count, 200_000);
    // A 95% interval misses the truth one time in twenty; the estimate of
    // a share of one half from about 2,000 contacts is within five standard
    // errors (0.011 each, 2,200 contacts here) all but once in millions.
    assert!((estimated.count - 100_000).abs() < 12_000, "{estimated:?}");
    assert!(
        estimated.count_low < estimated.count && estimated.count < estimated.count_high,
        "{estimated:?}"
    );
    assert!(
        estimated.count_high - estimated.count_low < 20_000,
        "{estimated:?}"
    );

    // With time enough, the exact answer.
    let exact = client
        .preview_rule(PreviewRuleRequest {
            rule: Some(rule),
            sample_size: 5,
            time_budget: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!exact.estimated);
    assert_eq!(exact.count, 100_000);
    assert_eq!(exact.sample_contact_ids.len(), 5);

    let error = client
        .preview_rule(PreviewRuleRequest {
            rule: None,
            sample_size: 101,
            time_budget: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_000_000,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&error),
        ["rule", "sample_size", "time_budget"]
    );
}
