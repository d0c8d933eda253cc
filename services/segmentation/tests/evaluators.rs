//! Two evaluators, one meaning: for random rules over random histories,
//! the set-based SQL a build runs (`store/compile/`) and the per-contact
//! evaluator that keeps membership current (`domain/evaluate.rs`) select
//! the same contacts. The histories are written straight into the
//! projections; proptest draws the rules and, on a disagreement, shrinks
//! the rule to the smallest that still disagrees.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use proptest::prelude::*;
use rapport_segmentation::domain::evaluate;
use rapport_segmentation::domain::reads::Reads;
use rapport_segmentation::domain::rule::*;
use rapport_segmentation::domain::scoring::{Model, ScoringRule};
use rapport_segmentation::store::compile::{Scope, compile};
use rapport_segmentation::store::facts;
use rapport_testkit::TestDatabase;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

const CONTACTS: u64 = 60;
const LIST: Uuid = Uuid::from_u128(0x11);
const TENANT: Uuid = Uuid::from_u128(0x7e);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// splitmix64: the histories are the same on every run.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A moment between `from` and `to` days from now, to the second.
    fn day(&mut self, from: i64, to: i64) -> DateTime<Utc> {
        let span = u64::try_from((to - from) * 86_400).unwrap();
        now() + Duration::days(from) + Duration::seconds(self.below(span) as i64)
    }
}

/// Writes random histories of `CONTACTS` contacts, and a list holding some.
async fn seed(conn: &mut PgConnection) {
    let mut dice = Dice(42);
    for n in 0..CONTACTS {
        let contact = Uuid::from_u128(0x1000 + u128::from(n));
        let tags: Vec<&str> = ["vip", "beta", "churned"]
            .into_iter()
            .filter(|_| dice.below(2) == 0)
            .collect();
        let mut attributes = serde_json::Map::new();
        if dice.below(4) > 0 {
            attributes.insert(
                "plan".into(),
                json!(dice.pick(&["gold", "silver", "golden"])),
            );
        }
        if dice.below(4) > 0 {
            // Whole numbers, and long fractions that 15 digits would round.
            let seats = match dice.below(3) {
                0 => dice.below(20) as f64,
                1 => dice.below(20) as f64 + 0.123_456_789_012_345_6,
                _ => dice.below(2000) as f64 / 100.0,
            };
            attributes.insert("seats".into(), json!(seats));
        }
        if dice.below(4) > 0 {
            let day = dice.day(-60, 10);
            // Forms of the grammar both evaluators read, and some outside it.
            let text = match dice.below(7) {
                0 => day.to_rfc3339(),
                1 => day.format("%Y-%m-%d").to_string(),
                2 => day.format("%Y-%m-%d %H:%M:%S").to_string(),
                3 => day.format("%Y-%m-%dT%H:%M:%S%.3f+02:00").to_string(),
                4 => day.format("%Y-%m-%dT%H:%M").to_string(),
                5 => day.format("%Y-%m-%dT%H:%M:%S+0200").to_string(),
                _ => day.format("%d/%m/%Y").to_string(),
            };
            attributes.insert("renewal".into(), json!(text));
        }
        if dice.below(3) == 0 {
            attributes.insert("labels".into(), json!(["a", dice.pick(&["b", "c"]), 3]));
        }
        let consents: Vec<i16> = (0..8).map(|_| 1 + dice.below(3) as i16).collect();
        sqlx::query(
            "INSERT INTO segmentation.profiles (tenant_id, contact_id, email_domain, locale, \
                 time_zone, create_time, attributes, tags, stage, consents) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(TENANT)
        .bind(contact)
        .bind(*dice.pick(&["example.com", "corp.io", ""]))
        .bind(*dice.pick(&["en-GB", "fr", ""]))
        .bind(*dice.pick(&["Europe/Paris", "UTC"]))
        .bind(dice.day(-90, 1))
        .bind(serde_json::Value::Object(attributes))
        .bind(&tags)
        .bind(dice.below(6) as i16)
        .bind(&consents)
        .execute(&mut *conn)
        .await
        .unwrap();
        for _ in 0..dice.below(3) {
            sqlx::query(
                "INSERT INTO segmentation.stage_changes VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(TENANT)
            .bind(contact)
            .bind(1 + dice.below(5) as i16)
            .bind(dice.day(-40, 1))
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        for _ in 0..dice.below(8) {
            let properties = (dice.below(2) == 0).then(|| json!({"total": dice.below(100) as f64}));
            let revenue =
                (dice.below(2) == 0).then(|| format!("{}.{:02}", dice.below(100), dice.below(100)));
            let currency = revenue.as_ref().map(|_| *dice.pick(&["EUR", "USD"]));
            sqlx::query(
                "INSERT INTO segmentation.events (tenant_id, contact_id, type, occur_time, event_id, \
                     channel, properties, currency, revenue) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::numeric)",
            )
            .bind(TENANT)
            .bind(contact)
            .bind(*dice.pick(&["order.placed", "page.viewed"]))
            .bind(dice.day(-120, 5))
            .bind(Uuid::from_u128(u128::from(dice.next())))
            .bind(1 + dice.below(3) as i16)
            .bind(properties)
            .bind(currency)
            .bind(revenue)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        for _ in 0..dice.below(3) {
            // A response answers one to three questions at one moment.
            let response = Uuid::from_u128(u128::from(dice.next()));
            let at = dice.day(-60, 1);
            for question in 0..1 + dice.below(3) {
                sqlx::query(
                    "INSERT INTO segmentation.answers (tenant_id, response_id, question_id, \
                         contact_id, kind, score, answer_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(TENANT)
                .bind(response)
                .bind(format!(
                    "{}{question}",
                    dice.pick(&["nps", "Nps2", "csat", "q-é"])
                ))
                .bind(contact)
                .bind(1 + dice.below(3) as i16)
                .bind(dice.below(11) as i32)
                .bind(at)
                .execute(&mut *conn)
                .await
                .unwrap();
            }
        }
        if dice.below(3) == 0 {
            sqlx::query("INSERT INTO segmentation.memberships VALUES ($1, $2, $3, $4, 0)")
                .bind(TENANT)
                .bind(LIST)
                .bind(contact)
                .bind(now())
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        (1..90i32).prop_map(Window::Within),
        (1..90i32).prop_map(Window::Before),
        ((-100..0i64), (0..60i64)).prop_map(|(start, length)| Window::Between(
            now() + Duration::days(start),
            now() + Duration::days(start + length)
        )),
        Just(Window::Ever),
    ]
}

fn order() -> impl Strategy<Value = Order> {
    prop_oneof![
        Just(Order::Less),
        Just(Order::LessOrEqual),
        Just(Order::Greater),
        Just(Order::GreaterOrEqual),
    ]
}

fn number_op() -> impl Strategy<Value = NumberOp> {
    prop_oneof![
        Just(NumberOp::Equals),
        Just(NumberOp::NotEquals),
        order().prop_map(NumberOp::Order),
    ]
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        prop_oneof![
            Just("gold"),
            Just("silver"),
            Just("gol"),
            Just("a"),
            Just("b")
        ]
        .prop_map(|text| Scalar::Text(text.to_owned())),
        (0..20u8).prop_map(|n| Scalar::Number(f64::from(n))),
        any::<bool>().prop_map(Scalar::Flag),
    ]
}

fn time_ref() -> impl Strategy<Value = TimeRef> {
    prop_oneof![
        (0..60i32).prop_map(TimeRef::DaysAgo),
        (-60..10i64).prop_map(|days| TimeRef::At(now() + Duration::days(days))),
    ]
}

fn attribute_test(paths: &'static [&'static str]) -> impl Strategy<Value = AttributeTest> {
    let comparison = prop_oneof![
        scalar().prop_map(Comparison::Equals),
        scalar().prop_map(Comparison::NotEquals),
        (
            order(),
            prop_oneof![
                (0..20u8).prop_map(f64::from),
                (0..2000u16).prop_map(|n| f64::from(n) / 100.0),
                (0..20u8).prop_map(|n| f64::from(n) + 0.123_456_789_012_345_6),
            ]
        )
            .prop_map(|(o, n)| Comparison::Order(o, Ordered::Number(n))),
        (order(), time_ref()).prop_map(|(o, t)| Comparison::Order(o, Ordered::Time(t))),
        scalar().prop_map(Comparison::Contains),
        prop_oneof![Just("go"), Just("s"), Just("2026")]
            .prop_map(|prefix| Comparison::StartsWith(prefix.to_owned())),
        Just(Comparison::Exists),
        proptest::collection::vec(scalar(), 1..3).prop_map(Comparison::In),
    ];
    (proptest::sample::select(paths), comparison).prop_map(|(path, comparison)| AttributeTest {
        path: path.split('.').map(str::to_owned).collect(),
        comparison,
    })
}

fn event_test() -> impl Strategy<Value = EventTest> {
    (
        prop_oneof![Just("order.placed"), Just("page.viewed")],
        proptest::option::of(1..4i16),
        proptest::collection::vec(attribute_test(&["total", "missing"]), 0..2),
        prop_oneof![
            Just(Measure::Count),
            Just(Measure::Revenue("EUR".to_owned()))
        ],
        number_op(),
        prop_oneof![
            (0..4u8).prop_map(f64::from),
            (0..200u16).prop_map(|n| f64::from(n) / 2.0)
        ],
        window(),
    )
        .prop_map(
            |(event_type, channel, properties, measure, op, threshold, window)| EventTest {
                event_type: event_type.to_owned(),
                channel,
                properties,
                measure,
                op,
                threshold,
                window,
            },
        )
}

/// A lead score over a model of event rules and standing conditions,
/// bounded below, above or both.
fn lead_score() -> impl Strategy<Value = Leaf> {
    let per_event = (event_test(), 1..20u8).prop_map(|(mut test, points)| {
        test.measure = Measure::Count;
        test.op = NumberOp::Order(Order::GreaterOrEqual);
        test.threshold = 1.0;
        ScoringRule {
            condition: Leaf::Event(test),
            points: f64::from(points),
        }
    });
    let standing =
        (attribute_test(&["plan", "seats"]), -10..10i8).prop_map(|(test, points)| ScoringRule {
            condition: Leaf::Attribute(test),
            points: f64::from(points),
        });
    (
        proptest::collection::vec(prop_oneof![2 => per_event, 1 => standing], 1..4),
        1..30i64,
        -10..40i16,
        0..3u8,
        1..20i16,
    )
        .prop_map(|(rules, half_life_days, low, shape, width)| {
            let low = f64::from(low);
            let (min, max) = match shape {
                0 => (Some(low), None),
                1 => (None, Some(low)),
                _ => (Some(low), Some(low + f64::from(width))),
            };
            Leaf::LeadScore(LeadScoreTest {
                model_id: Uuid::from_u128(0x5c),
                model: Arc::new(Model {
                    rules,
                    half_life: Duration::days(half_life_days),
                }),
                min,
                max,
            })
        })
}

fn leaf() -> impl Strategy<Value = Leaf> {
    let texts = |items: &'static [&'static str]| {
        proptest::sample::subsequence(items, 1..=items.len())
            .prop_map(|chosen| chosen.into_iter().map(str::to_owned).collect::<Vec<_>>())
    };
    prop_oneof![
        4 => attribute_test(&["plan", "seats", "renewal", "labels", "labels.0", "labels.-1", "nothing"])
            .prop_map(Leaf::Attribute),
        1 => texts(&["example.com", "corp.io"]).prop_map(Leaf::EmailDomain),
        1 => texts(&["en-gb", "fr"]).prop_map(Leaf::Locale),
        1 => texts(&["europe/paris", "utc"]).prop_map(Leaf::TimeZone),
        1 => window().prop_map(Leaf::Created),
        1 => (
            prop_oneof![Just(TagMatch::Any), Just(TagMatch::All), Just(TagMatch::None)],
            texts(&["vip", "beta", "churned"])
        )
            .prop_map(|(matching, tags)| Leaf::Tags { matching, tags }),
        1 => proptest::collection::vec(0..6i16, 1..3).prop_map(Leaf::Stage),
        1 => ((1..9i16), (1..4i16)).prop_map(|(channel, state)| Leaf::Consent { channel, state }),
        1 => ((1..6i16), (1..40i32))
            .prop_map(|(stage, within_days)| Leaf::StageEntered { stage, within_days }),
        5 => event_test().prop_map(Leaf::Event),
        1 => proptest::collection::vec(1..4i16, 1..3).prop_map(Leaf::NpsCategory),
        1 => ((1..4i16), (0..11i32), (0..11i32), window()).prop_map(|(kind, a, b, window)| {
            Leaf::Score(ScoreTest {
                kind,
                min: a.min(b),
                max: a.max(b),
                window,
            })
        }),
        1 => Just(Leaf::Segment(LIST)),
        2 => lead_score(),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    leaf()
        .prop_map(Rule::Leaf)
        .prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Rule::AllOf),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Rule::AnyOf),
                inner.prop_map(|rule| Rule::Not(Box::new(rule))),
            ]
        })
}

async fn set_based(conn: &mut PgConnection, rule: &Rule) -> BTreeSet<Uuid> {
    let compiled = compile(rule, TENANT, now(), &Scope::All);
    sqlx::query_scalar_with(
        sqlx::AssertSqlSafe(compiled.members()),
        compiled.arguments().unwrap(),
    )
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn per_contact(conn: &mut PgConnection, rule: &Rule) -> BTreeSet<Uuid> {
    let contacts: Vec<Uuid> = (0..CONTACTS)
        .map(|n| Uuid::from_u128(0x1000 + u128::from(n)))
        .collect();
    let facts = facts::load(conn, TENANT, &contacts, &Reads::of(rule), now())
        .await
        .unwrap();
    facts
        .into_iter()
        .filter(|(_, facts)| evaluate::holds(rule, facts, now()))
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn the_per_contact_evaluator_selects_what_the_set_based_build_selects() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (db, conn) = runtime.block_on(async {
        let db = TestDatabase::create().await;
        rapport_core::db::migrate(&db.url(None), &rapport_segmentation::MIGRATOR)
            .await
            .unwrap();
        let mut conn = db.admin().await;
        seed(&mut conn).await;
        (db, conn)
    });
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // proptest calls the test through `Fn`: the connection is lent.
    let conn = std::cell::RefCell::new(conn);
    // Rules that select some contacts and not others: the ones that can
    // tell the evaluators apart.
    let splitting = std::cell::Cell::new(0);
    proptest!(config.clone(), |(rule in rule())| {
        let mut lent = conn.borrow_mut();
        let conn: &mut PgConnection = &mut lent;
        let (set, each) = runtime.block_on(async {
            (set_based(conn, &rule).await, per_contact(conn, &rule).await)
        });
        prop_assert_eq!(&set, &each, "rule {:?}", rule);
        if !set.is_empty() && set.len() < CONTACTS as usize {
            splitting.set(splitting.get() + 1);
        }
    });
    eprintln!(
        "{} of {} rules split the contacts",
        splitting.get(),
        config.cases
    );
    assert!(
        splitting.get() > config.cases / 4,
        "the rules drawn hardly split the contacts"
    );
    drop(conn);
    runtime.block_on(async move { drop(db) });
}
