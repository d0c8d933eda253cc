//! Every kind of rule leaf evaluated against hand-built contacts through
//! the real feeds: PreviewRule's count and sample name exactly the
//! contacts worked out by hand.

mod common;

use common::*;
use rapport_core::convert::json_to_struct;
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::{Consent, ConsentStatus, Contact};
use rapport_proto::segmentation::v1::value::Kind;
use rapport_proto::segmentation::v1::*;
use serde_json::json;
use uuid::Uuid;

fn attributes(value: serde_json::Value) -> Option<prost_types::Struct> {
    let serde_json::Value::Object(map) = value else {
        panic!("an object")
    };
    Some(json_to_struct(&map))
}

fn texts(node: fn(TextSetCondition) -> rule::Node, values: &[&str]) -> Rule {
    leaf(node(TextSetCondition {
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }))
}

fn tags(matching: TagMatch, tags: &[&str]) -> Rule {
    leaf(rule::Node::Tags(TagCondition {
        r#match: matching.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }))
}

fn event(condition: EventCondition) -> Rule {
    leaf(rule::Node::Event(condition))
}

fn ever() -> Option<TimeWindow> {
    Some(TimeWindow {
        window: Some(time_window::Window::Ever(true)),
    })
}

#[tokio::test]
async fn each_leaf_selects_the_contacts_worked_out_by_hand() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);

    let ann = create_contact(
        &mut contacts,
        Contact {
            email: "ann@Acme.com".into(),
            locale: "en-GB".into(),
            time_zone: "Europe/London".into(),
            attributes: attributes(json!({
                "plan": {"tier": "gold"},
                "seats": 12,
                "renewal": "2020-01-01T00:00:00Z",
                "beta": true,
                "langs": ["en", "fr"],
            })),
            tags: vec!["vip".into(), "newsletter".into()],
            lifecycle_stage: LifecycleStage::Purchase.into(),
            consents: vec![Consent {
                channel: Channel::Email.into(),
                status: ConsentStatus::Subscribed.into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let bob = create_contact(
        &mut contacts,
        Contact {
            email: "bob@other.org".into(),
            locale: "fr-FR".into(),
            attributes: attributes(json!({
                "plan": {"tier": "silver"},
                "seats": "12",
                "renewal": "not a date",
            })),
            tags: vec!["newsletter".into()],
            lifecycle_stage: LifecycleStage::Discovery.into(),
            consents: vec![Consent {
                channel: Channel::Email.into(),
                status: ConsentStatus::Unsubscribed.into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let carl = new_contact(&mut contacts, "carl@example.com").await;
    contacts
        .record_events(rapport_proto::contacts::v1::RecordEventsRequest {
            events: vec![
                rapport_proto::contacts::v1::Event {
                    contact_id: ann.id.clone(),
                    r#type: "order.placed".into(),
                    channel: Channel::Web.into(),
                    occur_time: at(days_ago(3)),
                    properties: attributes(json!({"sku": "A1"})),
                    revenue: Some(rapport_proto::common::v1::Money {
                        currency_code: "EUR".into(),
                        units: 50,
                        nanos: 500_000_000,
                    }),
                    ..Default::default()
                },
                rapport_proto::contacts::v1::Event {
                    contact_id: ann.id.clone(),
                    r#type: "order.placed".into(),
                    channel: Channel::Web.into(),
                    occur_time: at(days_ago(20)),
                    properties: attributes(json!({"sku": "B2"})),
                    revenue: Some(rapport_proto::common::v1::Money {
                        currency_code: "EUR".into(),
                        units: 49,
                        nanos: 500_000_000,
                    }),
                    ..Default::default()
                },
            ],
        })
        .await
        .unwrap();
    record(
        &mut contacts,
        &bob.id,
        &[("order.placed", days_ago(100), Some(20))],
    )
    .await;
    record(
        &mut contacts,
        &bob.id,
        &[
            ("page.viewed", days_ago(1), None),
            ("page.viewed", days_ago(2), None),
        ],
    )
    .await;
    harness.settle().await;

    let (a, b, c) = (ann.id.as_str(), bob.id.as_str(), carl.id.as_str());
    let cases: Vec<(&str, Rule, Vec<&str>)> = vec![
        (
            "tier = gold",
            attribute("plan.tier", Operator::Equals, Kind::Text("gold".into())),
            vec![a],
        ),
        (
            "tier != gold (missing too)",
            attribute("plan.tier", Operator::NotEquals, Kind::Text("gold".into())),
            vec![b, c],
        ),
        (
            "seats > 10 (a text is no number)",
            attribute("seats", Operator::Greater, Kind::Number(10.0)),
            vec![a],
        ),
        (
            "seats = 12",
            attribute("seats", Operator::Equals, Kind::Number(12.0)),
            vec![a],
        ),
        (
            "renewal more than 30 days ago",
            attribute("renewal", Operator::Less, Kind::DaysAgo(30)),
            vec![a],
        ),
        (
            "langs contains fr",
            attribute("langs", Operator::Contains, Kind::Text("fr".into())),
            vec![a],
        ),
        (
            "tier starts with sil",
            attribute("plan.tier", Operator::StartsWith, Kind::Text("sil".into())),
            vec![b],
        ),
        (
            "tier contains ol",
            attribute("plan.tier", Operator::Contains, Kind::Text("ol".into())),
            vec![a],
        ),
        (
            "beta = true",
            attribute("beta", Operator::Equals, Kind::Flag(true)),
            vec![a],
        ),
        (
            "tier in gold, silver",
            leaf(rule::Node::Attribute(AttributeCondition {
                path: "plan.tier".into(),
                operator: Operator::In.into(),
                value: None,
                values: vec![
                    Value {
                        kind: Some(Kind::Text("gold".into())),
                    },
                    Value {
                        kind: Some(Kind::Text("silver".into())),
                    },
                ],
            })),
            vec![a, b],
        ),
        (
            "beta exists",
            leaf(rule::Node::Attribute(AttributeCondition {
                path: "beta".into(),
                operator: Operator::Exists.into(),
                value: None,
                values: Vec::new(),
            })),
            vec![a],
        ),
        (
            "email domain, any case",
            texts(rule::Node::EmailDomain, &["ACME.com"]),
            vec![a],
        ),
        ("locale", texts(rule::Node::Locale, &["EN-gb"]), vec![a]),
        (
            "time zone",
            texts(rule::Node::TimeZone, &["europe/london"]),
            vec![a],
        ),
        (
            "created in the last day",
            leaf(rule::Node::CreateTime(TimeCondition { window: within(1) })),
            vec![a, b, c],
        ),
        ("has any of vip", tags(TagMatch::Any, &["vip"]), vec![a]),
        (
            "has all of vip, newsletter",
            tags(TagMatch::All, &["vip", "newsletter"]),
            vec![a],
        ),
        (
            "has none of vip",
            tags(TagMatch::None, &["vip"]),
            vec![b, c],
        ),
        (
            "stage purchase or discovery",
            leaf(rule::Node::LifecycleStage(StageCondition {
                stages: vec![
                    LifecycleStage::Purchase.into(),
                    LifecycleStage::Discovery.into(),
                ],
            })),
            vec![a, b],
        ),
        (
            "entered purchase this week",
            leaf(rule::Node::StageEntered(StageEnteredCondition {
                stage: LifecycleStage::Purchase.into(),
                within_days: 7,
            })),
            vec![a],
        ),
        (
            "email subscribed",
            consent(Channel::Email, ConsentState::Subscribed),
            vec![a],
        ),
        (
            "email unsubscribed",
            consent(Channel::Email, ConsentState::Unsubscribed),
            vec![b],
        ),
        (
            "email never asked",
            consent(Channel::Email, ConsentState::Unknown),
            vec![c],
        ),
        (
            "sms never asked",
            consent(Channel::Sms, ConsentState::Unknown),
            vec![a, b, c],
        ),
        (
            "ordered in 90 days",
            counted("order.placed", 90, Operator::GreaterOrEqual, 1.0),
            vec![a],
        ),
        (
            "ordered twice in 90 days",
            counted("order.placed", 90, Operator::Equals, 2.0),
            vec![a],
        ),
        (
            "did not order in 90 days",
            counted("order.placed", 90, Operator::Equals, 0.0),
            vec![b, c],
        ),
        (
            "ordered ever",
            event(EventCondition {
                r#type: "order.placed".into(),
                measure: Measure::Count.into(),
                operator: Operator::Greater.into(),
                threshold: 0.0,
                window: ever(),
                ..Default::default()
            }),
            vec![a, b],
        ),
        (
            "spent at least 100 EUR ever (50.5 + 49.5)",
            event(EventCondition {
                r#type: "order.placed".into(),
                measure: Measure::Revenue.into(),
                currency: "EUR".into(),
                operator: Operator::GreaterOrEqual.into(),
                threshold: 100.0,
                window: ever(),
                ..Default::default()
            }),
            vec![a],
        ),
        (
            "spent under 30 EUR ever (nothing counts as 0)",
            event(EventCondition {
                r#type: "order.placed".into(),
                measure: Measure::Revenue.into(),
                currency: "EUR".into(),
                operator: Operator::Less.into(),
                threshold: 30.0,
                window: ever(),
                ..Default::default()
            }),
            vec![b, c],
        ),
        (
            "ordered sku A1",
            event(EventCondition {
                r#type: "order.placed".into(),
                properties: vec![AttributeCondition {
                    path: "sku".into(),
                    operator: Operator::Equals.into(),
                    value: Some(Value {
                        kind: Some(Kind::Text("A1".into())),
                    }),
                    values: Vec::new(),
                }],
                measure: Measure::Count.into(),
                operator: Operator::GreaterOrEqual.into(),
                threshold: 1.0,
                window: ever(),
                ..Default::default()
            }),
            vec![a],
        ),
        (
            "ordered by email",
            event(EventCondition {
                r#type: "order.placed".into(),
                channel: Channel::Email.into(),
                measure: Measure::Count.into(),
                operator: Operator::GreaterOrEqual.into(),
                threshold: 1.0,
                window: ever(),
                ..Default::default()
            }),
            vec![],
        ),
        (
            "ordered between 120 and 60 days ago",
            event(EventCondition {
                r#type: "order.placed".into(),
                measure: Measure::Count.into(),
                operator: Operator::GreaterOrEqual.into(),
                threshold: 1.0,
                window: Some(TimeWindow {
                    window: Some(time_window::Window::Between(TimeRange {
                        start: at(days_ago(120)),
                        end: at(days_ago(60)),
                    })),
                }),
                ..Default::default()
            }),
            vec![b],
        ),
        (
            "not viewing pages lately",
            not(counted("page.viewed", 30, Operator::GreaterOrEqual, 1.0)),
            vec![a, c],
        ),
        (
            "gold or French",
            leaf(rule::Node::AnyOf(RuleList {
                rules: vec![
                    attribute("plan.tier", Operator::Equals, Kind::Text("gold".into())),
                    texts(rule::Node::Locale, &["fr-fr"]),
                ],
            })),
            vec![a, b],
        ),
        (
            "subscribed and ordered lately",
            all_of(vec![
                consent(Channel::Email, ConsentState::Subscribed),
                counted("order.placed", 90, Operator::GreaterOrEqual, 1.0),
            ]),
            vec![a],
        ),
    ];
    for (name, rule, expected) in cases {
        let found = preview(&mut client, rule).await;
        let mut expected: Vec<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        expected.sort();
        assert_eq!(found.sample_contact_ids, expected, "{name}");
        assert_eq!(found.count, expected.len() as i64, "{name}");
        assert!(!found.estimated, "{name}");
        assert_eq!(found.contact_count, 3, "{name}");
    }
}
