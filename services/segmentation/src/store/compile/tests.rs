//! The SQL rules compile to, checked text for text.

use chrono::TimeZone as _;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn tenant() -> Uuid {
    Uuid::from_u128(7)
}

fn orders(threshold: f64, op: NumberOp) -> Rule {
    Rule::Leaf(Leaf::Event(EventTest {
        event_type: "order.placed".to_owned(),
        channel: None,
        properties: Vec::new(),
        measure: Measure::Count,
        op,
        threshold,
        window: Window::Within(90),
    }))
}

#[test]
fn an_event_leaf_is_a_per_contact_aggregate_joined_once() {
    let rule = orders(2.0, NumberOp::Order(Order::GreaterOrEqual));
    let compiled = compile(&rule, tenant(), now(), &Scope::All);
    assert_eq!(
        compiled.from,
        "segmentation.profiles p LEFT JOIN (SELECT contact_id, count(*)::float8 AS v \
         FROM segmentation.events WHERE tenant_id = $1 AND type = $2::text AND \
         occur_time >= $3::timestamptz AND occur_time < $4::timestamptz GROUP BY contact_id) l0 \
         ON l0.contact_id = p.contact_id"
    );
    assert_eq!(
        compiled.predicate,
        "p.tenant_id = $1 AND coalesce(coalesce(l0.v, 0) >= $5::float8, false)"
    );
    assert_eq!(
        compiled.params,
        vec![
            Param::Uuid(tenant()),
            Param::Text("order.placed".to_owned()),
            Param::Time(Utc.with_ymd_and_hms(2026, 3, 3, 12, 0, 0).unwrap()),
            Param::Time(now()),
            Param::Float(2.0),
        ]
    );
}

#[test]
fn did_not_do_x_counts_contacts_without_any_event() {
    // count < 2 must hold for a contact with no row in the join.
    let fewer = compile(
        &orders(2.0, NumberOp::Order(Order::Less)),
        tenant(),
        now(),
        &Scope::All,
    );
    assert!(fewer.predicate.contains("coalesce(l0.v, 0) < $5::float8"));
    // "Never" is an anti-join on the contact's own events, left bare
    // so PostgreSQL can plan it as one.
    let never = compile(&orders(0.0, NumberOp::Equals), tenant(), now(), &Scope::All);
    assert_eq!(never.from, "segmentation.profiles p");
    assert_eq!(
        never.predicate,
        "p.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM segmentation.events \
         WHERE tenant_id = $1 AND type = $2::text AND occur_time >= $3::timestamptz AND \
         occur_time < $4::timestamptz AND contact_id = p.contact_id)"
    );
}

#[test]
fn at_least_one_event_is_a_hashable_in_at_the_root_and_exists_below_any_of() {
    let once = orders(1.0, NumberOp::Order(Order::GreaterOrEqual));
    let root = compile(
        &Rule::AllOf(vec![once.clone()]),
        tenant(),
        now(),
        &Scope::All,
    );
    assert_eq!(
        root.predicate,
        "p.tenant_id = $1 AND (p.contact_id IN (SELECT contact_id FROM segmentation.events \
         WHERE tenant_id = $1 AND type = $2::text AND occur_time >= $3::timestamptz AND \
         occur_time < $4::timestamptz))"
    );
    let nested = compile(&Rule::AnyOf(vec![once]), tenant(), now(), &Scope::All);
    assert!(
        nested
            .predicate
            .contains("(EXISTS (SELECT 1 FROM segmentation.events")
    );
    assert!(
        nested
            .predicate
            .ends_with("AND contact_id = p.contact_id))")
    );
}

#[test]
fn combinations_nest_and_not_negates_a_never_null_leaf() {
    let rule = Rule::AllOf(vec![
        Rule::Leaf(Leaf::Stage(vec![3])),
        Rule::Not(Box::new(Rule::AnyOf(vec![
            Rule::Leaf(Leaf::Tags {
                matching: TagMatch::Any,
                tags: vec!["vip".to_owned()],
            }),
            Rule::AnyOf(Vec::new()),
        ]))),
        Rule::AllOf(Vec::new()),
    ]);
    let compiled = compile(&rule, tenant(), now(), &Scope::All);
    assert_eq!(
        compiled.predicate,
        "p.tenant_id = $1 AND (coalesce(p.stage = ANY($2::int2[]), false) AND \
         NOT (coalesce(p.tags && $3::text[], false) OR false) AND true)"
    );
    assert_eq!(compiled.leaves.len(), 2);
}

#[test]
fn a_scope_narrows_the_profiles_and_every_aggregate() {
    let contact = Uuid::from_u128(9);
    let compiled = compile(
        &orders(3.0, NumberOp::Order(Order::GreaterOrEqual)),
        tenant(),
        now(),
        &Scope::Contacts(vec![contact]),
    );
    assert!(
        compiled
            .from
            .contains("AND contact_id = ANY($2::uuid[]) GROUP BY")
    );
    assert!(
        compiled
            .predicate
            .ends_with("AND p.contact_id = ANY($2::uuid[])")
    );
    assert_eq!(compiled.params[1], Param::Uuids(vec![contact]));
}

#[test]
fn attribute_comparisons_never_cast_a_value_of_another_type() {
    let rule = Rule::Leaf(Leaf::Attribute(AttributeTest {
        path: vec!["plan".to_owned(), "seats".to_owned()],
        comparison: Comparison::Order(Order::Greater, Ordered::Number(10.0)),
    }));
    let compiled = compile(&rule, tenant(), now(), &Scope::All);
    assert_eq!(
        compiled.predicate,
        "p.tenant_id = $1 AND coalesce(CASE WHEN jsonb_typeof((p.attributes #> $2::text[])) \
         = 'number' THEN ((p.attributes #> $2::text[]) #>> '{}')::numeric > $3::text::numeric \
         END, false)"
    );
    assert_eq!(
        compiled.params[1],
        Param::Texts(vec!["plan".to_owned(), "seats".to_owned()])
    );
}

#[test]
fn relative_times_resolve_at_the_moment_of_compilation() {
    let rule = Rule::Leaf(Leaf::Attribute(AttributeTest {
        path: vec!["renewal".to_owned()],
        comparison: Comparison::Order(Order::Less, Ordered::Time(TimeRef::DaysAgo(30))),
    }));
    let compiled = compile(&rule, tenant(), now(), &Scope::All);
    assert_eq!(
        compiled.params[2],
        Param::Time(Utc.with_ymd_and_hms(2026, 5, 2, 12, 0, 0).unwrap())
    );
    assert!(
        compiled.predicate.contains(
            "segmentation.attribute_time((p.attributes #> $2::text[])) < $3::timestamptz"
        )
    );
}

#[test]
fn in_lists_compare_json_values() {
    let rule = Rule::Leaf(Leaf::Attribute(AttributeTest {
        path: vec!["plan".to_owned()],
        comparison: Comparison::In(vec![
            Scalar::Text("gold".to_owned()),
            Scalar::Number(3.0),
            Scalar::Flag(true),
        ]),
    }));
    let compiled = compile(&rule, tenant(), now(), &Scope::All);
    assert_eq!(
        compiled.params[2],
        Param::Texts(vec![
            "\"gold\"".to_owned(),
            "3.0".to_owned(),
            "true".to_owned()
        ])
    );
}
