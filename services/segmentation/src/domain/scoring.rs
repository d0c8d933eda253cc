//! Lead scoring: what a model is, its checks, and a contact's score. A
//! score is the sum of the model's rules' points: an event rule earns its
//! points for each event it matches, halved every half-life since the
//! event (points × 0.5^(age / half-life)); any other rule earns them while
//! it holds. Scores are worked out from the facts when asked for, so they
//! are always current, decay included.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rapport_core::Violations;
use rapport_proto::segmentation::v1 as pb;

use uuid::Uuid;

use super::decay::decay;
use super::evaluate::{self, ContactFacts};
use super::explain::describe;
use super::rule::{Leaf, Measure};
use super::validate;

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_POINTS: f64 = 1_000_000.0;
const MIN_HALF_LIFE: Duration = Duration::hours(1);
const MAX_HALF_LIFE: Duration = Duration::days(3650);

/// A model's rules and half-life, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub rules: Vec<ScoringRule>,
    pub half_life: Duration,
}

/// A tenant's checked models by id, for checking and judging the rules
/// that name them.
pub type Models = HashMap<Uuid, Arc<Model>>;

/// One rule: a condition and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringRule {
    pub condition: Leaf,
    pub points: f64,
}

/// What one rule contributes to a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Events matched (event rules), or 1 while the condition holds.
    pub matched: i64,
    /// Its points after decay.
    pub contributed: f64,
}

/// Checks `model` (at `path`), returning its rules and half-life.
pub fn validate(
    model: &pb::ScoringModel,
    path: &str,
    violations: &mut Violations,
) -> Option<Model> {
    let name = model.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        violations.add(
            format!("{path}.name"),
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        );
    }
    if model.description.chars().count() > MAX_DESCRIPTION_CHARS {
        violations.add(
            format!("{path}.description"),
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
    }
    let half_life = model
        .half_life
        .filter(|d| d.nanos == 0)
        .and_then(|d| Duration::try_seconds(d.seconds))
        .filter(|d| (MIN_HALF_LIFE..=MAX_HALF_LIFE).contains(d));
    if half_life.is_none() {
        violations.add(
            format!("{path}.half_life"),
            "must be whole seconds, 1 hour to 3,650 days",
        );
    }
    if model.rules.is_empty() {
        violations.add(format!("{path}.rules"), "must hold 1 to 50 rules");
    }
    let rules: Vec<Option<ScoringRule>> = model
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| scoring_rule(rule, &format!("{path}.rules[{i}]"), violations))
        .collect();
    let rules = rules.into_iter().collect::<Option<Vec<_>>>()?;
    Some(Model {
        rules,
        half_life: half_life?,
    })
}

fn scoring_rule(
    rule: &pb::ScoringRule,
    path: &str,
    violations: &mut Violations,
) -> Option<ScoringRule> {
    let condition_path = format!("{path}.condition");
    let condition = match &rule.condition {
        None => {
            violations.add(&condition_path, "is required");
            None
        }
        Some(pb::Rule {
            node: Some(pb::rule::Node::LeadScore(_)),
        }) => {
            violations.add(&condition_path, "must not name a scoring model");
            None
        }
        Some(condition) => {
            let no_models = Models::new();
            match validate::validate(
                &with_count_implied(condition),
                &condition_path,
                &no_models,
                violations,
            )? {
                super::rule::Rule::Leaf(Leaf::Segment(_)) => {
                    violations.add(&condition_path, "must not name a segment");
                    None
                }
                super::rule::Rule::Leaf(leaf) => Some(leaf),
                _ => {
                    violations.add(
                        &condition_path,
                        "must be one condition, not all_of, any_of or not",
                    );
                    None
                }
            }
        }
    };
    let points = rule.points;
    if !points.is_finite() || points == 0.0 || points.abs() > MAX_POINTS {
        violations.add(
            format!("{path}.points"),
            "must be non-zero, from -1,000,000 to 1,000,000",
        );
    }
    if let Some(Leaf::Event(test)) = &condition {
        if test.measure != Measure::Count {
            violations.add(
                format!("{condition_path}.event.measure"),
                "must be COUNT: an event rule earns its points per event",
            );
        } else if test.existence() != Some(true) {
            violations.add(
                format!("{condition_path}.event.operator"),
                "must be unset or count at least one: an event rule earns its points per event",
            );
        }
        if points < 0.0 {
            violations.add(
                format!("{path}.points"),
                "must be positive for an event rule; give negative points with another condition",
            );
        }
    }
    Some(ScoringRule {
        condition: condition?,
        points,
    })
}

/// An event condition as a scoring rule may give it: with its measure and
/// comparison left unset (COUNT is meant, the comparison unused), the
/// checks see "counted at least once".
fn with_count_implied(condition: &pb::Rule) -> pb::Rule {
    let mut condition = condition.clone();
    if let Some(pb::rule::Node::Event(event)) = &mut condition.node {
        if event.measure == pb::Measure::Unspecified as i32 {
            event.measure = pb::Measure::Count.into();
        }
        if event.operator == pb::Operator::Unspecified as i32 {
            event.operator = pb::Operator::GreaterOrEqual.into();
            event.threshold = 1.0;
        }
    }
    condition
}

/// The contact's score at `now`, and each rule's contribution in order.
pub fn score(model: &Model, facts: &ContactFacts, now: DateTime<Utc>) -> (f64, Vec<Contribution>) {
    let contributions: Vec<Contribution> = model
        .rules
        .iter()
        .map(|rule| match &rule.condition {
            Leaf::Event(test) => {
                let mut matched = 0;
                let mut weight = 0.0;
                // Under "ever" or "between" an event dated after now counts
                // as happened for segments; it earns nothing until it has.
                for event in evaluate::matching_events(test, &facts.events, now)
                    .filter(|event| event.occur_time <= now)
                {
                    matched += 1;
                    weight += decay(event.occur_time, now, model.half_life);
                }
                Contribution {
                    matched,
                    contributed: rule.points * weight,
                }
            }
            condition => {
                let holds = evaluate::leaf_holds(condition, facts, now);
                Contribution {
                    matched: i64::from(holds),
                    contributed: if holds { rule.points } else { 0.0 },
                }
            }
        })
        .collect();
    (
        contributions.iter().map(|c| c.contributed).sum(),
        contributions,
    )
}

/// What a rule asks, for a person reading a score.
pub fn describe_rule(rule: &ScoringRule) -> String {
    match &rule.condition {
        Leaf::Event(test) => format!("each {} {}", test.event_type, test.window.describe()),
        condition => describe(condition),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use crate::domain::decay::{ScoreParts, next_crossing};
    use crate::domain::evaluate::{EventFact, ProfileFacts};
    use crate::domain::rule::LeadScoreTest;
    use crate::domain::rule::{EventTest, NumberOp, Order, Window};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn event(kind: &str, days_ago: f64) -> EventFact {
        EventFact {
            event_type: kind.into(),
            occur_time: now() - Duration::seconds((days_ago * 86_400.0) as i64),
            channel: 1,
            properties: None,
            currency: None,
            revenue: None,
        }
    }

    fn facts(events: Vec<EventFact>) -> ContactFacts {
        ContactFacts {
            profile: ProfileFacts {
                email_domain: "example.com".into(),
                locale: "en".into(),
                time_zone: "UTC".into(),
                create_time: now() - Duration::days(100),
                attributes: json!({"plan": "pro"}),
                tags: vec!["vip".into()],
                stage: 2,
                consents: vec![1; 8],
            },
            stages: Vec::new(),
            events,
            answers: Vec::new(),
            segments: HashSet::new(),
        }
    }

    fn each(kind: &str, window: Window, points: f64) -> ScoringRule {
        ScoringRule {
            condition: Leaf::Event(EventTest {
                event_type: kind.into(),
                channel: None,
                properties: Vec::new(),
                measure: Measure::Count,
                op: NumberOp::Order(Order::GreaterOrEqual),
                threshold: 1.0,
                window,
            }),
            points,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_score_sums_decayed_events_and_standing_conditions() {
        // Half-life 7 days. Orders 0, 7 and 14 days ago at 10 points:
        // 10 + 5 + 2.5 = 17.5; a page view 7 days ago at 1 point: 0.5; the
        // pro plan, 20 points while it holds; a tag the contact lacks, -5.
        let model = Model {
            rules: vec![
                each("order.placed", Window::Ever, 10.0),
                each("page.viewed", Window::Within(30), 1.0),
                ScoringRule {
                    condition: Leaf::Tags {
                        matching: crate::domain::rule::TagMatch::Any,
                        tags: vec!["vip".into()],
                    },
                    points: 20.0,
                },
                ScoringRule {
                    condition: Leaf::Stage(vec![5]),
                    points: -5.0,
                },
            ],
            half_life: Duration::days(7),
        };
        let facts = facts(vec![
            event("order.placed", 0.0),
            event("order.placed", 7.0),
            event("order.placed", 14.0),
            event("page.viewed", 7.0),
            // Outside the page-view rule's 30 days: earns nothing.
            event("page.viewed", 31.0),
        ]);
        let (total, contributions) = score(&model, &facts, now());
        assert!(close(total, 17.5 + 0.5 + 20.0), "{total}");
        assert_eq!(
            contributions.iter().map(|c| c.matched).collect::<Vec<_>>(),
            [3, 1, 1, 0]
        );
        assert!(close(contributions[0].contributed, 17.5));
        assert_eq!(contributions[3].contributed, 0.0);
        // A week later every event's points have halved; the standing
        // condition has not.
        let (later, _) = score(&model, &facts, now() + Duration::days(7));
        assert!(close(later, 8.75 + 0.25 + 20.0), "{later}");
    }

    #[test]
    fn a_model_is_checked_rule_by_rule() {
        let rule = |node| pb::Rule { node: Some(node) };
        let model = pb::ScoringModel {
            name: "Leads".into(),
            rules: vec![
                pb::ScoringRule {
                    condition: Some(rule(pb::rule::Node::Segment(pb::SegmentCondition {
                        segment_id: uuid::Uuid::now_v7().to_string(),
                    }))),
                    points: 5.0,
                },
                pb::ScoringRule {
                    condition: Some(rule(pb::rule::Node::Event(pb::EventCondition {
                        r#type: "order.placed".into(),
                        measure: pb::Measure::Count.into(),
                        operator: pb::Operator::GreaterOrEqual.into(),
                        threshold: 1.0,
                        window: Some(pb::TimeWindow {
                            window: Some(pb::time_window::Window::Ever(true)),
                        }),
                        ..Default::default()
                    }))),
                    points: -3.0,
                },
                pb::ScoringRule {
                    condition: None,
                    points: f64::NAN,
                },
            ],
            half_life: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut violations = Violations::default();
        assert!(validate(&model, "model", &mut violations).is_none());
        assert_eq!(
            violations.fields(),
            [
                "model.half_life",
                "model.rules[0].condition",
                "model.rules[1].points",
                "model.rules[2].condition",
                "model.rules[2].points",
            ]
        );
    }

    #[test]
    fn the_next_crossing_is_the_nearer_bound_and_the_score_is_on_it_then() {
        // One order just now at 40 points, half-life 1 day: below 20 after
        // 1 day (entering "below 20"), below 10 after 2 (leaving "at least
        // 10"); the nearer comes first.
        let model = Arc::new(Model {
            rules: vec![each("order.placed", Window::Ever, 40.0)],
            half_life: Duration::days(1),
        });
        let test = LeadScoreTest {
            model_id: Uuid::nil(),
            model: model.clone(),
            min: Some(10.0),
            max: Some(20.0),
        };
        let contact = facts(vec![event("order.placed", 0.0)]);
        let (score, contributions) = super::score(&model, &contact, now());
        assert!(close(score, 40.0));
        let split = ScoreParts::of(&model, &contributions);
        assert_eq!(
            split,
            ScoreParts {
                steady: 0.0,
                decaying: 40.0
            }
        );
        let next = next_crossing(&test, split, now()).unwrap();
        assert_eq!(next, now() + Duration::days(1));
        assert!(close(super::score(&model, &contact, next).0, 20.0));
        assert!(!test.holds(super::score(&model, &contact, now()).0));
        assert!(test.holds(super::score(&model, &contact, next + Duration::seconds(1)).0));
        let later = now() + Duration::days(2) + Duration::seconds(1);
        assert!(!test.holds(super::score(&model, &contact, later).0));
    }
}
