//! Rules checked: each problem named at its node's path.

use rapport_proto::segmentation::v1::{
    AttributeCondition, EventCondition, RuleList, TimeWindow, Value, time_window, value,
};

use super::*;

fn leaf(node: Node) -> pb::Rule {
    pb::Rule { node: Some(node) }
}

fn all_of(rules: Vec<pb::Rule>) -> pb::Rule {
    leaf(Node::AllOf(RuleList { rules }))
}

fn within(days: i32) -> Option<TimeWindow> {
    Some(TimeWindow {
        window: Some(time_window::Window::WithinDays(days)),
    })
}

fn orders(days: i32) -> pb::Rule {
    leaf(Node::Event(EventCondition {
        r#type: "order.placed".into(),
        measure: PbMeasure::Count.into(),
        operator: Operator::GreaterOrEqual.into(),
        threshold: 2.0,
        window: within(days),
        ..Default::default()
    }))
}

fn fields(rule: &pb::Rule) -> Vec<String> {
    let mut violations = Violations::default();
    assert!(validate(rule, "rule", &Models::new(), &mut violations).is_none());
    violations.fields()
}

#[test]
fn a_bad_leaf_is_named_by_its_path() {
    let rule = all_of(vec![
        orders(90),
        leaf(Node::Consent(pb::ConsentCondition {
            channel: Channel::Email.into(),
            state: ConsentState::Subscribed.into(),
        })),
        orders(0),
    ]);
    assert_eq!(fields(&rule), ["rule.all_of[2].event.window.within_days"]);
}

#[test]
fn a_valid_tree_becomes_typed_nodes() {
    let mut violations = Violations::default();
    let typed = validate(
        &all_of(vec![orders(90)]),
        "rule",
        &Models::new(),
        &mut violations,
    )
    .unwrap();
    assert_eq!(
        typed,
        Rule::AllOf(vec![Rule::Leaf(Leaf::Event(EventTest {
            event_type: "order.placed".into(),
            channel: None,
            properties: Vec::new(),
            measure: Measure::Count,
            op: NumberOp::Order(Order::GreaterOrEqual),
            threshold: 2.0,
            window: Window::Within(90),
        }))])
    );
}

#[test]
fn operators_must_fit_their_values() {
    let attribute = |operator: Operator, value: Option<value::Kind>| {
        leaf(Node::Attribute(AttributeCondition {
            path: "plan".into(),
            operator: operator.into(),
            value: value.map(|kind| Value { kind: Some(kind) }),
            values: Vec::new(),
        }))
    };
    assert_eq!(
        fields(&attribute(
            Operator::Greater,
            Some(value::Kind::Text("x".into()))
        )),
        ["rule.attribute.value"]
    );
    assert_eq!(
        fields(&attribute(
            Operator::StartsWith,
            Some(value::Kind::Number(1.0))
        )),
        ["rule.attribute.value"]
    );
    assert_eq!(
        fields(&attribute(Operator::Exists, Some(value::Kind::Flag(true)))),
        ["rule.attribute.value"]
    );
    assert_eq!(
        fields(&attribute(Operator::Equals, None)),
        ["rule.attribute.value"]
    );
    assert_eq!(
        fields(&attribute(Operator::In, None)),
        ["rule.attribute.values"]
    );
    assert_eq!(
        fields(&attribute(
            Operator::Unspecified,
            Some(value::Kind::Flag(true))
        )),
        ["rule.attribute.operator"]
    );
}

#[test]
fn unknown_stages_channels_and_categories_are_refused() {
    let rule = all_of(vec![
        leaf(Node::LifecycleStage(pb::StageCondition {
            stages: vec![99],
        })),
        leaf(Node::Consent(pb::ConsentCondition {
            channel: 0,
            state: ConsentState::Subscribed.into(),
        })),
        leaf(Node::NpsCategory(pb::NpsCategoryCondition {
            categories: vec![0],
        })),
        leaf(Node::Segment(pb::SegmentCondition {
            segment_id: "nope".into(),
        })),
    ]);
    assert_eq!(
        fields(&rule),
        [
            "rule.all_of[0].lifecycle_stage.stages[0]",
            "rule.all_of[1].consent.channel",
            "rule.all_of[2].nps_category.categories[0]",
            "rule.all_of[3].segment.segment_id",
        ]
    );
}

#[test]
fn revenue_needs_a_currency_and_count_refuses_one() {
    let mut event = EventCondition {
        r#type: "order.placed".into(),
        measure: PbMeasure::Revenue.into(),
        operator: Operator::Greater.into(),
        threshold: 100.0,
        window: Some(TimeWindow {
            window: Some(time_window::Window::Ever(true)),
        }),
        ..Default::default()
    };
    assert_eq!(
        fields(&leaf(Node::Event(event.clone()))),
        ["rule.event.currency"]
    );
    event.currency = "eur".into();
    let mut violations = Violations::default();
    let typed = validate(
        &leaf(Node::Event(event)),
        "rule",
        &Models::new(),
        &mut violations,
    )
    .unwrap();
    let Rule::Leaf(Leaf::Event(test)) = typed else {
        panic!("an event leaf")
    };
    assert_eq!(test.measure, Measure::Revenue("EUR".into()));
}

#[test]
fn depth_and_size_are_bounded() {
    let mut deep = orders(1);
    for _ in 0..MAX_DEPTH {
        deep = leaf(Node::Not(Box::new(deep)));
    }
    assert_eq!(fields(&deep).len(), 1);

    let wide = all_of(
        (0..5)
            .map(|_| all_of((0..MAX_CHILDREN).map(|_| orders(1)).collect()))
            .collect(),
    );
    assert_eq!(fields(&wide), ["rule"]);
}

#[test]
fn an_empty_node_and_an_unset_window_are_refused() {
    let rule = all_of(vec![
        pb::Rule { node: None },
        leaf(Node::CreateTime(pb::TimeCondition { window: None })),
        leaf(Node::CreateTime(pb::TimeCondition {
            window: Some(TimeWindow {
                window: Some(time_window::Window::Ever(true)),
            }),
        })),
    ]);
    assert_eq!(
        fields(&rule),
        [
            "rule.all_of[0]",
            "rule.all_of[1].create_time.window",
            "rule.all_of[2].create_time.window.ever",
        ]
    );
}

fn lead_score(model_id: &str, min: Option<f64>, max: Option<f64>) -> pb::Rule {
    leaf(Node::LeadScore(pb::LeadScoreCondition {
        model_id: model_id.into(),
        min,
        max,
    }))
}

#[test]
fn a_lead_score_names_a_model_of_the_tenant_and_a_sensible_range() {
    use std::sync::Arc;

    use crate::domain::scoring::Model;

    let known = uuid::Uuid::from_u128(7);
    let model = Arc::new(Model {
        rules: Vec::new(),
        half_life: chrono::Duration::days(7),
    });
    let models = Models::from([(known, model.clone())]);
    let check = |rule: &pb::Rule| {
        let mut violations = Violations::default();
        let typed = validate(rule, "rule", &models, &mut violations);
        (typed, violations.fields())
    };
    let (typed, _) = check(&lead_score(&known.to_string(), Some(10.0), None));
    assert_eq!(
        typed,
        Some(Rule::Leaf(Leaf::LeadScore(LeadScoreTest {
            model_id: known,
            model,
            min: Some(10.0),
            max: None,
        })))
    );
    let unknown = uuid::Uuid::from_u128(8).to_string();
    for (rule, field) in [
        (
            lead_score(&unknown, Some(1.0), None),
            "rule.lead_score.model_id",
        ),
        (lead_score("", Some(1.0), None), "rule.lead_score.model_id"),
        (
            lead_score(&known.to_string(), None, None),
            "rule.lead_score",
        ),
        (
            lead_score(&known.to_string(), Some(5.0), Some(5.0)),
            "rule.lead_score.max",
        ),
        (
            lead_score(&known.to_string(), Some(f64::NAN), None),
            "rule.lead_score.min",
        ),
        (
            lead_score(&known.to_string(), None, Some(f64::INFINITY)),
            "rule.lead_score.max",
        ),
    ] {
        let (typed, fields) = check(&rule);
        assert_eq!((typed, fields), (None, vec![field.to_owned()]), "{rule:?}");
    }
}
