//! Checks a proto rule in full and turns it into a [`Rule`]: every leaf's
//! values against its kind (known stages and channels, operators that fit
//! the value, windows in range), the tree's depth and size. Each problem is
//! reported at the path of its node, such as
//! `rule.all_of[2].event.window.within_days`.

mod attribute;
mod lead_score;

pub use lead_score::named_models;

use super::rule::*;
use super::scoring::Models;
use chrono::{DateTime, Utc};
use rapport_core::Violations;
use rapport_core::convert::to_datetime;
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::segmentation::v1 as pb;
use rapport_proto::segmentation::v1::rule::Node;
use rapport_proto::segmentation::v1::{
    ConsentState, Measure as PbMeasure, NpsCategory, Operator, ScoreKind, TagMatch as PbTagMatch,
};

/// How deep a tree may nest (the root is depth 1).
pub const MAX_DEPTH: usize = 10;
/// How many leaves a tree may hold.
pub const MAX_LEAVES: usize = 100;
/// How many children one all_of / any_of may hold.
pub const MAX_CHILDREN: usize = 50;
/// How many values a set condition may list.
pub const MAX_VALUES: usize = 100;
/// How many property conditions an event condition may hold.
pub const MAX_PROPERTIES: usize = 10;
const MAX_PATH_KEYS: usize = 8;
const MAX_KEY_CHARS: usize = 64;
const MAX_TEXT_CHARS: usize = 500;
const MAX_DAYS: i32 = 3650;

/// A stored rule read back, with the tenant's scoring `models`: it passed
/// these checks when it was saved. `None` if it no longer does (a check
/// made stricter since, or a model it names gone).
pub fn stored(rule: &pb::Rule, models: &Models) -> Option<Rule> {
    validate(rule, "rule", models, &mut Violations::default())
}

/// Checks `rule` (found at `path` in the request), adding what is wrong to
/// `violations`; the typed tree when nothing is. Lead score conditions are
/// checked against, and carry, the tenant's `models`.
pub fn validate(
    rule: &pb::Rule,
    path: &str,
    models: &Models,
    violations: &mut Violations,
) -> Option<Rule> {
    let before = violations.len();
    let mut checker = Checker {
        violations,
        models,
        leaves: 0,
    };
    let typed = checker.node(rule, path, 1);
    if checker.leaves > MAX_LEAVES {
        checker.violations.add(
            path,
            format!(
                "holds {} conditions; at most {MAX_LEAVES} are allowed",
                checker.leaves
            ),
        );
    }
    (violations.len() == before).then_some(typed).flatten()
}

struct Checker<'v> {
    violations: &'v mut Violations,
    models: &'v Models,
    leaves: usize,
}

impl Checker<'_> {
    fn add(&mut self, path: impl Into<String>, description: impl Into<String>) {
        self.violations.add(path, description);
    }

    fn node(&mut self, rule: &pb::Rule, path: &str, depth: usize) -> Option<Rule> {
        if depth > MAX_DEPTH {
            self.add(path, format!("nests deeper than {MAX_DEPTH} levels"));
            return None;
        }
        let Some(node) = &rule.node else {
            self.add(
                path,
                "must hold one node: all_of, any_of, not or a condition",
            );
            return None;
        };
        match node {
            Node::AllOf(list) => self
                .children(&list.rules, &format!("{path}.all_of"), depth)
                .map(Rule::AllOf),
            Node::AnyOf(list) => self
                .children(&list.rules, &format!("{path}.any_of"), depth)
                .map(Rule::AnyOf),
            Node::Not(child) => self
                .node(child, &format!("{path}.not"), depth + 1)
                .map(|child| Rule::Not(Box::new(child))),
            leaf => {
                self.leaves += 1;
                self.leaf(leaf, path).map(Rule::Leaf)
            }
        }
    }

    fn children(&mut self, rules: &[pb::Rule], path: &str, depth: usize) -> Option<Vec<Rule>> {
        if rules.len() > MAX_CHILDREN {
            self.add(
                format!("{path}.rules"),
                format!("holds {} rules; at most {MAX_CHILDREN}", rules.len()),
            );
            return None;
        }
        let typed: Vec<Option<Rule>> = rules
            .iter()
            .enumerate()
            .map(|(i, child)| self.node(child, &format!("{path}[{i}]"), depth + 1))
            .collect();
        typed.into_iter().collect()
    }

    fn leaf(&mut self, node: &Node, path: &str) -> Option<Leaf> {
        match node {
            Node::Attribute(test) => self
                .attribute(test, &format!("{path}.attribute"))
                .map(Leaf::Attribute),
            Node::EmailDomain(set) => self
                .text_set(&set.values, &format!("{path}.email_domain.values"))
                .map(Leaf::EmailDomain),
            Node::Locale(set) => self
                .text_set(&set.values, &format!("{path}.locale.values"))
                .map(Leaf::Locale),
            Node::TimeZone(set) => self
                .text_set(&set.values, &format!("{path}.time_zone.values"))
                .map(Leaf::TimeZone),
            Node::CreateTime(time) => {
                let path = format!("{path}.create_time.window");
                let window = self.window(time.window.as_ref(), &path, false)?;
                Some(Leaf::Created(window))
            }
            Node::Tags(tags) => self.tags(tags, &format!("{path}.tags")),
            Node::LifecycleStage(stages) => {
                let path = format!("{path}.lifecycle_stage.stages");
                if stages.stages.is_empty() {
                    self.add(&path, "must name at least one stage");
                    return None;
                }
                let mut known = Vec::new();
                for (i, stage) in stages.stages.iter().enumerate() {
                    known.push(self.stage(*stage, &format!("{path}[{i}]"))?);
                }
                Some(Leaf::Stage(known))
            }
            Node::StageEntered(entered) => {
                let path = format!("{path}.stage_entered");
                let stage = self.stage(entered.stage, &format!("{path}.stage"));
                let days = self.days(entered.within_days, &format!("{path}.within_days"));
                Some(Leaf::StageEntered {
                    stage: stage?,
                    within_days: days?,
                })
            }
            Node::Consent(consent) => {
                let path = format!("{path}.consent");
                let channel = self.channel(consent.channel, &format!("{path}.channel"), true);
                let state = match ConsentState::try_from(consent.state) {
                    Ok(ConsentState::Unspecified) | Err(_) => {
                        self.add(
                            format!("{path}.state"),
                            "must be UNKNOWN, SUBSCRIBED or UNSUBSCRIBED",
                        );
                        None
                    }
                    Ok(state) => Some(state as i16),
                };
                Some(Leaf::Consent {
                    channel: channel??,
                    state: state?,
                })
            }
            Node::Event(event) => self.event(event, &format!("{path}.event")).map(Leaf::Event),
            Node::NpsCategory(categories) => {
                let path = format!("{path}.nps_category.categories");
                if categories.categories.is_empty() {
                    self.add(&path, "must name at least one category");
                    return None;
                }
                let mut known = Vec::new();
                for (i, category) in categories.categories.iter().enumerate() {
                    match NpsCategory::try_from(*category) {
                        Ok(NpsCategory::Unspecified) | Err(_) => {
                            self.add(
                                format!("{path}[{i}]"),
                                "must be DETRACTOR, PASSIVE or PROMOTER",
                            );
                            return None;
                        }
                        Ok(category) => known.push(category as i16),
                    }
                }
                Some(Leaf::NpsCategory(known))
            }
            Node::Score(score) => self.score(score, &format!("{path}.score")).map(Leaf::Score),
            Node::Segment(segment) => {
                let path = format!("{path}.segment.segment_id");
                let id = self.violations.parse_id(&path, &segment.segment_id);
                (!id.is_nil()).then_some(Leaf::Segment(id))
            }
            Node::LeadScore(score) => self
                .lead_score(score, &format!("{path}.lead_score"))
                .map(Leaf::LeadScore),
            Node::AllOf(_) | Node::AnyOf(_) | Node::Not(_) => None,
        }
    }

    fn text_set(&mut self, values: &[String], path: &str) -> Option<Vec<String>> {
        if values.is_empty() || values.len() > MAX_VALUES {
            self.add(path, format!("must hold 1 to {MAX_VALUES} values"));
            return None;
        }
        if values
            .iter()
            .any(|value| value.is_empty() || value.chars().count() > 255 || has_control(value))
        {
            self.add(
                path,
                "values must be 1 to 255 characters, without control characters",
            );
            return None;
        }
        Some(values.iter().map(|value| value.to_lowercase()).collect())
    }

    fn tags(&mut self, tags: &pb::TagCondition, path: &str) -> Option<Leaf> {
        let matching = match PbTagMatch::try_from(tags.r#match) {
            Ok(PbTagMatch::Any) => Some(TagMatch::Any),
            Ok(PbTagMatch::All) => Some(TagMatch::All),
            Ok(PbTagMatch::None) => Some(TagMatch::None),
            _ => {
                self.add(format!("{path}.match"), "must be ANY, ALL or NONE");
                None
            }
        };
        let set = self.text_set(&tags.tags, &format!("{path}.tags"));
        // Tags are kept as written; only the check is shared with text sets.
        set?;
        Some(Leaf::Tags {
            matching: matching?,
            tags: tags.tags.clone(),
        })
    }

    fn stage(&mut self, stage: i32, path: &str) -> Option<i16> {
        match LifecycleStage::try_from(stage) {
            Ok(LifecycleStage::Unspecified) | Err(_) => {
                self.add(path, "must be a known lifecycle stage");
                None
            }
            Ok(stage) => Some(stage as i16),
        }
    }

    /// A known channel; `Some(None)` for "any channel" when `required` is
    /// false.
    fn channel(&mut self, channel: i32, path: &str, required: bool) -> Option<Option<i16>> {
        match Channel::try_from(channel) {
            Ok(Channel::Unspecified) if !required => Some(None),
            Ok(Channel::Unspecified) | Err(_) => {
                self.add(path, "must be a known channel");
                None
            }
            Ok(channel) => Some(Some(channel as i16)),
        }
    }

    fn days(&mut self, days: i32, path: &str) -> Option<i32> {
        if (1..=MAX_DAYS).contains(&days) {
            Some(days)
        } else {
            self.add(path, format!("must be 1 to {MAX_DAYS} days"));
            None
        }
    }

    fn time(&mut self, time: Option<&prost_types::Timestamp>, path: &str) -> Option<DateTime<Utc>> {
        match time.and_then(to_datetime) {
            Some(at) => Some(at),
            None => {
                self.add(path, "must be a valid time");
                None
            }
        }
    }

    fn window(
        &mut self,
        window: Option<&pb::TimeWindow>,
        path: &str,
        ever_allowed: bool,
    ) -> Option<Window> {
        use pb::time_window::Window as W;
        match window.and_then(|window| window.window.as_ref()) {
            None => {
                self.add(
                    path,
                    "is required: within_days, before_days, between or ever",
                );
                None
            }
            Some(W::WithinDays(days)) => self
                .days(*days, &format!("{path}.within_days"))
                .map(Window::Within),
            Some(W::BeforeDays(days)) => self
                .days(*days, &format!("{path}.before_days"))
                .map(Window::Before),
            Some(W::Between(range)) => {
                let start = self.time(range.start.as_ref(), &format!("{path}.between.start"));
                let end = self.time(range.end.as_ref(), &format!("{path}.between.end"));
                let (start, end) = (start?, end?);
                if end <= start {
                    self.add(format!("{path}.between.end"), "must be after start");
                    return None;
                }
                Some(Window::Between(start, end))
            }
            Some(W::Ever(true)) if ever_allowed => Some(Window::Ever),
            Some(W::Ever(_)) => {
                self.add(
                    format!("{path}.ever"),
                    if ever_allowed {
                        "must be true when set"
                    } else {
                        "is not allowed here"
                    },
                );
                None
            }
        }
    }

    fn event(&mut self, event: &pb::EventCondition, path: &str) -> Option<EventTest> {
        let type_ok =
            if event.r#type.is_empty() || event.r#type.len() > 100 || has_control(&event.r#type) {
                self.add(
                    format!("{path}.type"),
                    "must be 1 to 100 characters, without control characters",
                );
                false
            } else {
                true
            };
        let channel = self.channel(event.channel, &format!("{path}.channel"), false);
        let properties = if event.properties.len() > MAX_PROPERTIES {
            self.add(
                format!("{path}.properties"),
                format!("holds more than {MAX_PROPERTIES} conditions"),
            );
            None
        } else {
            let checked: Vec<Option<AttributeTest>> = event
                .properties
                .iter()
                .enumerate()
                .map(|(i, test)| self.attribute(test, &format!("{path}.properties[{i}]")))
                .collect();
            checked.into_iter().collect::<Option<Vec<_>>>()
        };
        let measure = match PbMeasure::try_from(event.measure) {
            Ok(PbMeasure::Count) => {
                if !event.currency.is_empty() {
                    self.add(format!("{path}.currency"), "is only for REVENUE");
                }
                Some(Measure::Count)
            }
            Ok(PbMeasure::Revenue) => {
                if event.currency.len() == 3
                    && event.currency.bytes().all(|b| b.is_ascii_alphabetic())
                {
                    Some(Measure::Revenue(event.currency.to_ascii_uppercase()))
                } else {
                    self.add(
                        format!("{path}.currency"),
                        "must be a three-letter ISO 4217 code for REVENUE",
                    );
                    None
                }
            }
            _ => {
                self.add(format!("{path}.measure"), "must be COUNT or REVENUE");
                None
            }
        };
        let op = match Operator::try_from(event.operator) {
            Ok(Operator::Equals) => Some(NumberOp::Equals),
            Ok(Operator::NotEquals) => Some(NumberOp::NotEquals),
            Ok(Operator::Less) => Some(NumberOp::Order(Order::Less)),
            Ok(Operator::LessOrEqual) => Some(NumberOp::Order(Order::LessOrEqual)),
            Ok(Operator::Greater) => Some(NumberOp::Order(Order::Greater)),
            Ok(Operator::GreaterOrEqual) => Some(NumberOp::Order(Order::GreaterOrEqual)),
            _ => {
                self.add(
                    format!("{path}.operator"),
                    "must be EQUALS, NOT_EQUALS, LESS, LESS_OR_EQUAL, GREATER or GREATER_OR_EQUAL",
                );
                None
            }
        };
        let threshold = if event.threshold.is_finite() && event.threshold >= 0.0 {
            Some(event.threshold)
        } else {
            self.add(
                format!("{path}.threshold"),
                "must be a finite number, 0 or more",
            );
            None
        };
        let window = self.window(event.window.as_ref(), &format!("{path}.window"), true);
        if !type_ok {
            return None;
        }
        Some(EventTest {
            event_type: event.r#type.clone(),
            channel: channel?,
            properties: properties?,
            measure: measure?,
            op: op?,
            threshold: threshold?,
            window: window?,
        })
    }

    fn score(&mut self, score: &pb::ScoreCondition, path: &str) -> Option<ScoreTest> {
        let kind = match ScoreKind::try_from(score.kind) {
            Ok(ScoreKind::Unspecified) | Err(_) => {
                self.add(format!("{path}.kind"), "must be NPS, CSAT or CES");
                None
            }
            Ok(kind) => Some(kind as i16),
        };
        let range_ok = if !(0..=10).contains(&score.min) {
            self.add(format!("{path}.min"), "must be 0 to 10");
            false
        } else if !(score.min..=10).contains(&score.max) {
            self.add(format!("{path}.max"), "must be min to 10");
            false
        } else {
            true
        };
        let window = self.window(score.window.as_ref(), &format!("{path}.window"), true);
        range_ok.then_some(())?;
        Some(ScoreTest {
            kind: kind?,
            min: score.min,
            max: score.max,
            window: window?,
        })
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
