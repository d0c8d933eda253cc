//! The per-contact evaluator: a rule judged for one contact from what
//! segmentation knows of them ([`ContactFacts`]), in memory. It is the
//! second reading of the rule tree beside the set-based SQL of
//! `store/compile/`, used where a few contacts changed (each applied feed
//! batch, time passing, another segment's change); the two must agree, and
//! a property test (`tests/evaluators.rs`) holds them to it.
//!
//! Every comparison follows the SQL's meaning: JSON values compared as
//! PostgreSQL's `jsonb` compares them (numbers by value), paths read as
//! `#>` reads them, windows half-open (`[from, to)`), revenue summed
//! exactly before it is compared.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::attribute::attribute_holds;
use super::rule::*;
use super::{decay, scoring};

/// A contact's profile as the rules read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileFacts {
    pub email_domain: String,
    pub locale: String,
    pub time_zone: String,
    pub create_time: DateTime<Utc>,
    pub attributes: Value,
    pub tags: Vec<String>,
    pub stage: i16,
    /// `ConsentState` by channel, channel 1 first.
    pub consents: Vec<i16>,
}

/// One of the contact's events.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub event_type: String,
    pub occur_time: DateTime<Utc>,
    pub channel: i16,
    /// `None` without properties.
    pub properties: Option<Value>,
    pub currency: Option<String>,
    /// Exact decimal text.
    pub revenue: Option<String>,
}

/// One scored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerFact {
    /// `ScoreKind` number.
    pub kind: i16,
    pub score: i32,
    pub answer_time: DateTime<Utc>,
    pub response_id: Uuid,
    pub question_id: String,
}

/// Everything a rule can ask about one contact. Events need only be those
/// of the types the rules being judged name.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactFacts {
    pub profile: ProfileFacts,
    /// Stage entries: (stage, when).
    pub stages: Vec<(i16, DateTime<Utc>)>,
    pub events: Vec<EventFact>,
    pub answers: Vec<AnswerFact>,
    /// The segments the contact is a member of now.
    pub segments: HashSet<Uuid>,
}

/// Whether `rule` selects the contact at `now`.
pub fn holds(rule: &Rule, facts: &ContactFacts, now: DateTime<Utc>) -> bool {
    match rule {
        Rule::AllOf(children) => children.iter().all(|child| holds(child, facts, now)),
        Rule::AnyOf(children) => children.iter().any(|child| holds(child, facts, now)),
        Rule::Not(child) => !holds(child, facts, now),
        Rule::Leaf(leaf) => leaf_holds(leaf, facts, now),
    }
}

/// Whether one condition holds for the contact at `now`.
pub fn leaf_holds(leaf: &Leaf, facts: &ContactFacts, now: DateTime<Utc>) -> bool {
    let profile = &facts.profile;
    match leaf {
        Leaf::Attribute(test) => attribute_holds(Some(&profile.attributes), test, now),
        Leaf::EmailDomain(domains) => domains.contains(&profile.email_domain),
        Leaf::Locale(locales) => locales.contains(&profile.locale.to_lowercase()),
        Leaf::TimeZone(zones) => zones.contains(&profile.time_zone.to_lowercase()),
        Leaf::Created(window) => within(profile.create_time, *window, now),
        Leaf::Tags { matching, tags } => {
            let has = |tag: &String| profile.tags.contains(tag);
            match matching {
                TagMatch::Any => tags.iter().any(has),
                TagMatch::All => tags.iter().all(has),
                TagMatch::None => !tags.iter().any(has),
            }
        }
        Leaf::Stage(stages) => stages.contains(&profile.stage),
        Leaf::Consent { channel, state } => {
            let current = usize::try_from(*channel)
                .ok()
                .and_then(|channel| channel.checked_sub(1))
                .and_then(|index| profile.consents.get(index))
                .copied()
                .unwrap_or(1);
            current == *state
        }
        Leaf::StageEntered { stage, within_days } => facts.stages.iter().any(|(entered, at)| {
            entered == stage && within(*at, Window::Within(*within_days), now)
        }),
        Leaf::Event(test) => event_holds(test, &facts.events, now),
        Leaf::NpsCategory(categories) => latest_nps(&facts.answers)
            .and_then(nps_category)
            .is_some_and(|category| categories.contains(&category)),
        Leaf::Score(test) => facts.answers.iter().any(|answer| {
            answer.kind == test.kind
                && (test.min..=test.max).contains(&answer.score)
                && within(answer.answer_time, test.window, now)
        }),
        Leaf::Segment(segment) => facts.segments.contains(segment),
        Leaf::LeadScore(test) => test.holds(scoring::score(&test.model, facts, now).0),
    }
}

/// The next moment decay alone can change `rule`'s verdict for the
/// contact: the nearest bound any of its lead scores will fall below.
pub fn next_crossing(
    rule: &Rule,
    facts: &ContactFacts,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    rule.leaves("rule")
        .into_iter()
        .filter_map(|(_, leaf)| match leaf {
            Leaf::LeadScore(test) => {
                let (_, contributions) = scoring::score(&test.model, facts, now);
                let parts = decay::ScoreParts::of(&test.model, &contributions);
                decay::next_crossing(test, parts, now)
            }
            _ => None,
        })
        .min()
}

/// Whether `at` falls in `window` at `now`: `[from, to)`.
pub fn within(at: DateTime<Utc>, window: Window, now: DateTime<Utc>) -> bool {
    let (from, to) = window.bounds(now);
    from.is_none_or(|from| at >= from) && to.is_none_or(|to| at < to)
}

/// The events `test` counts at `now`: its type, window, channel and
/// property conditions.
pub fn matching_events<'a>(
    test: &'a EventTest,
    events: &'a [EventFact],
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'a EventFact> {
    events.iter().filter(move |event| {
        event.event_type == test.event_type
            && within(event.occur_time, test.window, now)
            && test.channel.is_none_or(|channel| event.channel == channel)
            && test
                .properties
                .iter()
                .all(|property| attribute_holds(event.properties.as_ref(), property, now))
    })
}

fn event_holds(test: &EventTest, events: &[EventFact], now: DateTime<Utc>) -> bool {
    let matching = matching_events(test, events, now);
    let value = match &test.measure {
        Measure::Count => matching.count() as f64,
        Measure::Revenue(currency) => {
            let nanos: i128 = matching
                .filter(|event| event.currency.as_deref() == Some(currency.as_str()))
                .filter_map(|event| event.revenue.as_deref().and_then(decimal_nanos))
                .sum();
            nanos_to_f64(nanos)
        }
    };
    test.op.holds(value, test.threshold)
}

/// Exact decimal text with at most nine decimals, in billionths.
fn decimal_nanos(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > 9 {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = format!("{fraction:0<9}").parse().ok()?;
    let nanos = whole * 1_000_000_000 + fraction;
    Some(if negative { -nanos } else { nanos })
}

/// The nearest `f64` to an exact sum in billionths, as PostgreSQL rounds
/// `numeric` to `float8` (by way of its decimal text).
fn nanos_to_f64(nanos: i128) -> f64 {
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    format!(
        "{sign}{}.{:09}",
        magnitude / 1_000_000_000,
        magnitude % 1_000_000_000
    )
    .parse()
    .unwrap_or(f64::NAN)
}

/// The latest NPS answer's score: the latest answer time, then the
/// greatest response id and question id (as the SQL orders them).
fn latest_nps(answers: &[AnswerFact]) -> Option<i32> {
    answers
        .iter()
        .filter(|answer| answer.kind == 1)
        .max_by_key(|answer| (answer.answer_time, answer.response_id, &answer.question_id))
        .map(|answer| answer.score)
}

/// `NpsCategory`: promoter (3) from 9, passive (2) from 7, detractor (1)
/// from 0.
fn nps_category(score: i32) -> Option<i16> {
    match score {
        9.. => Some(3),
        7.. => Some(2),
        0.. => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone as _};
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn facts() -> ContactFacts {
        ContactFacts {
            profile: ProfileFacts {
                email_domain: "example.com".into(),
                locale: "en-GB".into(),
                time_zone: "Europe/London".into(),
                create_time: now() - Duration::days(10),
                attributes: json!({"plan": {"seats": 12, "name": "gold"}, "tags": ["a", 2],
                                   "renewal": "2026-05-01T00:00:00Z", "nothing": null}),
                tags: vec!["vip".into()],
                stage: 3,
                consents: vec![2, 1, 1],
            },
            stages: vec![(3, now() - Duration::days(5))],
            events: Vec::new(),
            answers: Vec::new(),
            segments: HashSet::new(),
        }
    }

    fn order(days_ago: i64, revenue: &str) -> EventFact {
        EventFact {
            event_type: "order.placed".into(),
            occur_time: now() - Duration::days(days_ago),
            channel: 1,
            properties: Some(json!({"total": 10})),
            currency: Some("EUR".into()),
            revenue: Some(revenue.into()),
        }
    }

    fn attribute(path: &[&str], comparison: Comparison) -> Rule {
        Rule::Leaf(Leaf::Attribute(AttributeTest {
            path: path.iter().map(|key| key.to_string()).collect(),
            comparison,
        }))
    }

    fn orders(measure: Measure, op: NumberOp, threshold: f64, window: Window) -> Rule {
        Rule::Leaf(Leaf::Event(EventTest {
            event_type: "order.placed".into(),
            channel: None,
            properties: Vec::new(),
            measure,
            op,
            threshold,
            window,
        }))
    }

    const AT_LEAST: NumberOp = NumberOp::Order(Order::GreaterOrEqual);

    #[test]
    fn attribute_paths_read_objects_and_arrays_like_jsonb() {
        let facts = facts();
        let seats = |n: f64| attribute(&["plan", "seats"], Comparison::Equals(Scalar::Number(n)));
        assert!(holds(&seats(12.0), &facts, now()));
        assert!(!holds(&seats(13.0), &facts, now()));
        let second = attribute(&["tags", "-1"], Comparison::Equals(Scalar::Number(2.0)));
        assert!(holds(&second, &facts, now()));
        let first = attribute(&["tags", "0"], Comparison::StartsWith("a".into()));
        assert!(holds(&first, &facts, now()));
        // A missing value is unequal to anything, and null does not exist.
        let missing = attribute(
            &["plan", "owner"],
            Comparison::NotEquals(Scalar::Text("x".into())),
        );
        assert!(holds(&missing, &facts, now()));
        assert!(!holds(
            &attribute(&["nothing"], Comparison::Exists),
            &facts,
            now()
        ));
        assert!(holds(
            &attribute(&["plan"], Comparison::Exists),
            &facts,
            now()
        ));
    }

    #[test]
    fn comparisons_never_cross_types() {
        let facts = facts();
        let name_above = attribute(
            &["plan", "name"],
            Comparison::Order(Order::Greater, Ordered::Number(1.0)),
        );
        assert!(!holds(&name_above, &facts, now()));
        let contains_two = attribute(&["tags"], Comparison::Contains(Scalar::Number(2.0)));
        assert!(holds(&contains_two, &facts, now()));
        let contains_text = attribute(
            &["plan", "name"],
            Comparison::Contains(Scalar::Text("ol".into())),
        );
        assert!(holds(&contains_text, &facts, now()));
        let in_list = attribute(
            &["plan", "seats"],
            Comparison::In(vec![Scalar::Text("12".into()), Scalar::Number(12.0)]),
        );
        assert!(holds(&in_list, &facts, now()));
    }

    #[test]
    fn relative_times_move_with_now() {
        // The renewal was 31 days before now.
        let renewed_over_30_days_ago = attribute(
            &["renewal"],
            Comparison::Order(Order::Less, Ordered::Time(TimeRef::DaysAgo(30))),
        );
        assert!(holds(&renewed_over_30_days_ago, &facts(), now()));
        assert!(!holds(
            &renewed_over_30_days_ago,
            &facts(),
            now() - Duration::days(2)
        ));
    }

    #[test]
    fn windows_are_half_open_and_future_events_have_not_happened() {
        let mut facts = facts();
        facts.events = vec![order(90, "5"), order(-1, "5")];
        let in_90_days = orders(Measure::Count, AT_LEAST, 1.0, Window::Within(90));
        // 90 days ago to the second is inside [now - 90d, now).
        assert!(holds(&in_90_days, &facts, now()));
        assert!(!holds(&in_90_days, &facts, now() + Duration::seconds(1)));
        // The order dated tomorrow counts once tomorrow has come.
        assert!(holds(&in_90_days, &facts, now() + Duration::days(2)));
        let twice_ever = orders(Measure::Count, AT_LEAST, 2.0, Window::Ever);
        assert!(holds(&twice_ever, &facts, now()));
    }

    #[test]
    fn revenue_sums_exactly_in_its_currency() {
        let mut facts = facts();
        facts.events = vec![order(1, "0.1"), order(2, "0.2"), order(3, "0.000000001")];
        let mut dollars = order(4, "100");
        dollars.currency = Some("USD".into());
        facts.events.push(dollars);
        // 0.1 + 0.2 in f64 is 0.30000000000000004; the exact sum is not.
        let exactly = orders(
            Measure::Revenue("EUR".into()),
            NumberOp::Order(Order::LessOrEqual),
            0.300000001,
            Window::Ever,
        );
        assert!(holds(&exactly, &facts, now()));
        assert_eq!(decimal_nanos("-3.25"), Some(-3_250_000_000));
        assert_eq!(nanos_to_f64(300_000_001), 0.300000001);
    }

    #[test]
    fn did_not_do_x_holds_without_events() {
        let never = orders(Measure::Count, NumberOp::Equals, 0.0, Window::Within(30));
        assert!(holds(&never, &facts(), now()));
    }

    #[test]
    fn the_latest_nps_answer_decides_the_category() {
        let mut facts = facts();
        let answer = |score, days_ago, id| AnswerFact {
            kind: 1,
            score,
            answer_time: now() - Duration::days(days_ago),
            response_id: Uuid::from_u128(id),
            question_id: "nps".into(),
        };
        facts.answers = vec![answer(10, 5, 1), answer(3, 1, 2)];
        let detractor = Rule::Leaf(Leaf::NpsCategory(vec![1]));
        assert!(holds(&detractor, &facts, now()));
        // Same moment: the greater response id is the latest.
        facts.answers = vec![answer(3, 1, 2), answer(9, 1, 3)];
        assert!(!holds(&detractor, &facts, now()));
    }

    #[test]
    fn profile_leaves_read_the_profile() {
        let facts = facts();
        assert!(holds(
            &Rule::Leaf(Leaf::Locale(vec!["en-gb".into()])),
            &facts,
            now()
        ));
        assert!(holds(
            &Rule::Leaf(Leaf::Consent {
                channel: 1,
                state: 2
            }),
            &facts,
            now()
        ));
        // A channel past the known slots is unknown (1).
        assert!(holds(
            &Rule::Leaf(Leaf::Consent {
                channel: 7,
                state: 1
            }),
            &facts,
            now()
        ));
        assert!(holds(
            &Rule::Leaf(Leaf::StageEntered {
                stage: 3,
                within_days: 7
            }),
            &facts,
            now()
        ));
        assert!(!holds(
            &Rule::Not(Box::new(Rule::Leaf(Leaf::Tags {
                matching: TagMatch::All,
                tags: vec!["vip".into()]
            }))),
            &facts,
            now()
        ));
    }
}
