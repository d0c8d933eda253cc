//! What a rule reads: which changes to a contact can change its verdict,
//! and which of its leaves move with time. Membership is kept current by
//! judging again only the segments a change can affect, and time sweeps
//! look only where a window's edge can have passed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use uuid::Uuid;

use super::rule::*;

/// The kinds of facts a rule reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// The profile: attributes, email, locale, time zone, creation, tags,
    /// current stage, consents.
    pub profile: bool,
    /// Stage entries.
    pub stages: bool,
    /// Events of these types.
    pub event_types: BTreeSet<String>,
    /// The windows a rule looks at events of each type through (none
    /// noted: every event of the type).
    pub event_windows: BTreeMap<String, Vec<Window>>,
    /// Events' properties (a condition on them).
    pub event_properties: bool,
    /// Events of every type (as a change: a merge moved some in).
    pub any_event: bool,
    /// Everything at once (as a change: a contact new to segmentation,
    /// whom every rule is to judge, "did not do X" ones included).
    pub new_contact: bool,
    /// Scored answers.
    pub answers: bool,
    /// Other segments' memberships.
    pub segments: BTreeSet<Uuid>,
}

/// A leaf whose verdict can change with nothing but time passing: the
/// facts whose dates cross one of its window's edges are what to look at.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeEdge {
    /// Events of the type dated in a window relative to now.
    Events { event_type: String, window: Window },
    /// Entries into the stage within the last days.
    StageEntered { stage: i16, within_days: i32 },
    /// Answers of the kind in a window relative to now.
    Answers { kind: i16, window: Window },
    /// The profile's creation in a window relative to now.
    Created(Window),
    /// A time attribute compared with a moment some days before now.
    AttributeDaysAgo { path: Vec<String>, days: i32 },
    /// A lead score decaying past one of the rule's bounds: the moments
    /// are noted per contact as they are judged.
    ScoreDecay,
    /// A time property of events of the type compared with a moment some
    /// days before now.
    PropertyDaysAgo {
        event_type: String,
        path: Vec<String>,
        days: i32,
    },
}

impl Reads {
    pub fn of(rule: &Rule) -> Self {
        let mut reads = Reads::default();
        for (_, leaf) in rule.leaves("rule") {
            reads.add_leaf(leaf);
        }
        reads
    }

    fn add_leaf(&mut self, leaf: &Leaf) {
        match leaf {
            Leaf::Attribute(_)
            | Leaf::EmailDomain(_)
            | Leaf::Locale(_)
            | Leaf::TimeZone(_)
            | Leaf::Created(_)
            | Leaf::Tags { .. }
            | Leaf::Stage(_)
            | Leaf::Consent { .. } => self.profile = true,
            Leaf::StageEntered { .. } => self.stages = true,
            Leaf::Event(test) => {
                self.event_types.insert(test.event_type.clone());
                self.event_windows
                    .entry(test.event_type.clone())
                    .or_default()
                    .push(test.window);
                self.event_properties |= !test.properties.is_empty();
            }
            Leaf::NpsCategory(_) | Leaf::Score(_) => self.answers = true,
            Leaf::Segment(id) => {
                self.segments.insert(*id);
            }
            // A score reads what its model's conditions read.
            Leaf::LeadScore(test) => {
                for rule in &test.model.rules {
                    self.add_leaf(&rule.condition);
                }
            }
        }
    }

    /// The earliest moment whose events can matter to the rule at `now`
    /// (`None`: events of any age can): a rule looking back 7 days needs
    /// only a week of a contact's history.
    pub fn events_since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.event_types
            .iter()
            .try_fold(now, |earliest, event_type| {
                let windows = self.event_windows.get(event_type)?;
                windows.iter().try_fold(earliest, |earliest, window| {
                    Some(earliest.min(window.bounds(now).0?))
                })
            })
    }

    /// A change to the profile (or to anything it carries: stage, consents).
    pub fn profile() -> Self {
        Reads {
            profile: true,
            ..Reads::default()
        }
    }

    /// A contact segmentation did not know.
    pub fn new_contact() -> Self {
        Reads {
            new_contact: true,
            ..Reads::default()
        }
    }

    /// A lifecycle change: the current stage and a stage entry.
    pub fn stage() -> Self {
        Reads {
            profile: true,
            stages: true,
            ..Reads::default()
        }
    }

    /// A new event of `event_type`.
    pub fn event(event_type: &str) -> Self {
        Reads {
            event_types: BTreeSet::from([event_type.to_owned()]),
            ..Reads::default()
        }
    }

    /// A change of membership of `segment`.
    pub fn segment(segment: Uuid) -> Self {
        Reads {
            segments: BTreeSet::from([segment]),
            ..Reads::default()
        }
    }

    /// A new scored answer.
    pub fn answers() -> Self {
        Reads {
            answers: true,
            ..Reads::default()
        }
    }

    /// Everything about the contact (a merge moved another's history in).
    pub fn everything() -> Self {
        Reads {
            profile: true,
            stages: true,
            answers: true,
            any_event: true,
            ..Reads::default()
        }
    }

    /// Whether a contact's `change` can change this rule's verdict.
    pub fn affected_by(&self, change: &Reads) -> bool {
        change.new_contact
            || (self.profile && change.profile)
            || (self.stages && change.stages)
            || (self.answers && change.answers)
            || !self.event_types.is_disjoint(&change.event_types)
            || (change.any_event && !self.event_types.is_empty())
            || !self.segments.is_disjoint(&change.segments)
    }

    /// Adds what `other` reads.
    pub fn merge(&mut self, other: &Reads) {
        self.profile |= other.profile;
        self.stages |= other.stages;
        self.answers |= other.answers;
        self.any_event |= other.any_event;
        self.new_contact |= other.new_contact;
        self.event_properties |= other.event_properties;
        self.event_types.extend(other.event_types.iter().cloned());
        for (event_type, windows) in &other.event_windows {
            self.event_windows
                .entry(event_type.clone())
                .or_default()
                .extend(windows.iter().copied());
        }
        self.segments.extend(other.segments.iter().copied());
    }
}

/// The leaves of `rule` that time alone can flip. Windows fixed in time
/// ("between two dates", "ever") and fixed moments never do.
pub fn time_edges(rule: &Rule) -> Vec<TimeEdge> {
    let mut edges = Vec::new();
    for (_, leaf) in rule.leaves("rule") {
        leaf_edges(leaf, &mut edges);
    }
    edges
}

fn leaf_edges(leaf: &Leaf, edges: &mut Vec<TimeEdge>) {
    let relative = |window: &Window| matches!(window, Window::Within(_) | Window::Before(_));
    match leaf {
        Leaf::Event(test) => {
            if relative(&test.window) {
                edges.push(TimeEdge::Events {
                    event_type: test.event_type.clone(),
                    window: test.window,
                });
            }
            for property in &test.properties {
                if let Some(days) = days_ago(&property.comparison) {
                    edges.push(TimeEdge::PropertyDaysAgo {
                        event_type: test.event_type.clone(),
                        path: property.path.clone(),
                        days,
                    });
                }
            }
        }
        Leaf::StageEntered { stage, within_days } => edges.push(TimeEdge::StageEntered {
            stage: *stage,
            within_days: *within_days,
        }),
        Leaf::Score(test) if relative(&test.window) => edges.push(TimeEdge::Answers {
            kind: test.kind,
            window: test.window,
        }),
        Leaf::Created(window) if relative(window) => edges.push(TimeEdge::Created(*window)),
        Leaf::Attribute(test) => {
            if let Some(days) = days_ago(&test.comparison) {
                edges.push(TimeEdge::AttributeDaysAgo {
                    path: test.path.clone(),
                    days,
                });
            }
        }
        // A score moves with its conditions' windows, and decays.
        Leaf::LeadScore(test) => {
            for rule in &test.model.rules {
                leaf_edges(&rule.condition, edges);
            }
            if !edges.contains(&TimeEdge::ScoreDecay) {
                edges.push(TimeEdge::ScoreDecay);
            }
        }
        _ => {}
    }
}

fn days_ago(comparison: &Comparison) -> Option<i32> {
    match comparison {
        Comparison::Order(_, Ordered::Time(TimeRef::DaysAgo(days)))
        | Comparison::Equals(Scalar::Time(TimeRef::DaysAgo(days)))
        | Comparison::NotEquals(Scalar::Time(TimeRef::DaysAgo(days))) => Some(*days),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(window: Window) -> Rule {
        Rule::Leaf(Leaf::Event(EventTest {
            event_type: "order.placed".into(),
            channel: None,
            properties: Vec::new(),
            measure: Measure::Count,
            op: NumberOp::Order(Order::GreaterOrEqual),
            threshold: 1.0,
            window,
        }))
    }

    #[test]
    fn a_rule_reads_its_leaves_facts() {
        let segment = Uuid::from_u128(4);
        let rule = Rule::AllOf(vec![
            orders(Window::Within(30)),
            Rule::Not(Box::new(Rule::Leaf(Leaf::Segment(segment)))),
            Rule::Leaf(Leaf::Stage(vec![2])),
        ]);
        let reads = Reads::of(&rule);
        assert!(reads.profile && !reads.stages && !reads.answers);
        assert_eq!(
            reads.event_types,
            BTreeSet::from(["order.placed".to_owned()])
        );
        assert_eq!(reads.segments, BTreeSet::from([segment]));

        let page_view = Reads {
            event_types: BTreeSet::from(["page.viewed".to_owned()]),
            ..Reads::default()
        };
        assert!(!reads.affected_by(&page_view));
        let order = Reads {
            event_types: BTreeSet::from(["order.placed".to_owned()]),
            ..Reads::default()
        };
        assert!(reads.affected_by(&order));
    }

    #[test]
    fn only_windows_relative_to_now_move_with_time() {
        let rule = Rule::AnyOf(vec![
            orders(Window::Within(30)),
            orders(Window::Ever),
            orders(Window::Between(
                chrono::DateTime::UNIX_EPOCH,
                chrono::DateTime::UNIX_EPOCH,
            )),
            Rule::Leaf(Leaf::Attribute(AttributeTest {
                path: vec!["renewal".into()],
                comparison: Comparison::Order(Order::Less, Ordered::Time(TimeRef::DaysAgo(7))),
            })),
            Rule::Leaf(Leaf::Created(Window::Before(3))),
        ]);
        assert_eq!(
            time_edges(&rule),
            vec![
                TimeEdge::Events {
                    event_type: "order.placed".into(),
                    window: Window::Within(30)
                },
                TimeEdge::AttributeDaysAgo {
                    path: vec!["renewal".into()],
                    days: 7
                },
                TimeEdge::Created(Window::Before(3)),
            ]
        );
    }
}
