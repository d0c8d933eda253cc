//! A segment's rule as the service reasons about it: the proto tree,
//! checked leaf by leaf ([`validate`]) into typed nodes that both the SQL
//! compiler and explanations read. Every value here has been checked, so
//! nothing downstream handles a malformed rule.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::scoring::Model;

/// A node: a combination of nodes or one condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    AllOf(Vec<Rule>),
    AnyOf(Vec<Rule>),
    Not(Box<Rule>),
    Leaf(Leaf),
}

/// One condition on a contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    Attribute(AttributeTest),
    /// Lower-cased domains.
    EmailDomain(Vec<String>),
    /// Lower-cased locales.
    Locale(Vec<String>),
    /// Lower-cased time zones.
    TimeZone(Vec<String>),
    Created(Window),
    Tags {
        matching: TagMatch,
        tags: Vec<String>,
    },
    /// Lifecycle stage numbers (`rapport.common.v1.LifecycleStage`).
    Stage(Vec<i16>),
    StageEntered {
        stage: i16,
        within_days: i32,
    },
    /// Channel number and consent state (`ConsentState`).
    Consent {
        channel: i16,
        state: i16,
    },
    Event(EventTest),
    /// `NpsCategory` numbers.
    NpsCategory(Vec<i16>),
    Score(ScoreTest),
    Segment(Uuid),
    LeadScore(LeadScoreTest),
}

/// A value found at `path` in a JSON object, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeTest {
    /// Keys, outermost first.
    pub path: Vec<String>,
    pub comparison: Comparison,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Equals(Scalar),
    /// Holds also when the value is missing.
    NotEquals(Scalar),
    Order(Order, Ordered),
    /// A text containing the text, or a list holding the value.
    Contains(Scalar),
    StartsWith(String),
    Exists,
    In(Vec<Scalar>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
    Time(TimeRef),
}

/// What `<`, `<=`, `>`, `>=` compare with: numbers or moments.
#[derive(Debug, Clone, PartialEq)]
pub enum Ordered {
    Number(f64),
    Time(TimeRef),
}

/// A moment: fixed, or this many days before the evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeRef {
    At(DateTime<Utc>),
    DaysAgo(i32),
}

impl TimeRef {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeRef::At(at) => at,
            TimeRef::DaysAgo(days) => now - Duration::days(i64::from(days)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A number comparison: how counts and sums are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberOp {
    Equals,
    NotEquals,
    Order(Order),
}

impl NumberOp {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            NumberOp::Equals => value == threshold,
            NumberOp::NotEquals => value != threshold,
            NumberOp::Order(Order::Less) => value < threshold,
            NumberOp::Order(Order::LessOrEqual) => value <= threshold,
            NumberOp::Order(Order::Greater) => value > threshold,
            NumberOp::Order(Order::GreaterOrEqual) => value >= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            NumberOp::Equals => "=",
            NumberOp::NotEquals => "!=",
            NumberOp::Order(order) => order.symbol(),
        }
    }
}

impl Order {
    pub fn symbol(self) -> &'static str {
        match self {
            Order::Less => "<",
            Order::LessOrEqual => "<=",
            Order::Greater => ">",
            Order::GreaterOrEqual => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMatch {
    Any,
    All,
    None,
}

/// A span of time, relative to the evaluation or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Within(i32),
    Before(i32),
    Between(DateTime<Utc>, DateTime<Utc>),
    Ever,
}

impl Window {
    /// `[from, to)` at `now`; `None` where the window is open. "The last N
    /// days" ends now: what is dated later has not happened yet.
    pub fn bounds(self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let days_ago = |days: i32| now - Duration::days(i64::from(days));
        match self {
            Window::Within(days) => (Some(days_ago(days)), Some(now)),
            Window::Before(days) => (None, Some(days_ago(days))),
            Window::Between(start, end) => (Some(start), Some(end)),
            Window::Ever => (None, None),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Window::Within(days) => format!("in the last {days} days"),
            Window::Before(days) => format!("more than {days} days ago"),
            Window::Between(start, end) => format!(
                "between {} and {}",
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Window::Ever => "ever".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Count,
    /// Revenue summed in this currency (upper-case ISO 4217).
    Revenue(String),
}

/// Events of a type in a window, counted or summed, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTest {
    pub event_type: String,
    pub channel: Option<i16>,
    pub properties: Vec<AttributeTest>,
    pub measure: Measure,
    pub op: NumberOp,
    pub threshold: f64,
    pub window: Window,
}

impl EventTest {
    /// Whether a contact with no matching event at all qualifies ("did
    /// not do X": count = 0, count < 2).
    pub fn holds_for_none(&self) -> bool {
        self.op.holds(0.0, self.threshold)
    }

    /// For a count that only asks whether any matching event exists:
    /// `Some(true)` for "at least one" (`>= 1`, `> 0`, `!= 0`), `Some(false)`
    /// for "none" (`= 0`, `< 1`, `<= 0`), `None` otherwise. Counts are
    /// whole numbers, and every count comparison is monotone or an
    /// equality, so 0, 1 and a huge count decide it.
    pub fn existence(&self) -> Option<bool> {
        if self.measure != Measure::Count {
            return None;
        }
        let holds = |count: f64| self.op.holds(count, self.threshold);
        match (holds(0.0), holds(1.0), holds(f64::MAX)) {
            (false, true, true) => Some(true),
            (true, false, false) => Some(false),
            _ => None,
        }
    }
}

/// A scored answer of a kind in `[min, max]` within a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreTest {
    /// `ScoreKind` number.
    pub kind: i16,
    pub min: i32,
    pub max: i32,
    pub window: Window,
}

/// A contact's lead score under a model in `[min, max)`; the model is the
/// one the rule was checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadScoreTest {
    pub model_id: Uuid,
    pub model: Arc<Model>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl LeadScoreTest {
    pub fn holds(&self, score: f64) -> bool {
        self.min.is_none_or(|min| score >= min) && self.max.is_none_or(|max| score < max)
    }

    /// The bounds a score can cross.
    pub fn thresholds(&self) -> impl Iterator<Item = f64> {
        self.min.into_iter().chain(self.max)
    }
}

impl Rule {
    /// Every leaf, depth first, with its path under `root`.
    pub fn leaves<'a>(&'a self, root: &str) -> Vec<(String, &'a Leaf)> {
        let mut out = Vec::new();
        self.walk(root.to_owned(), &mut |path, rule| {
            if let Rule::Leaf(leaf) = rule {
                out.push((path.to_owned(), leaf));
            }
        });
        out
    }

    /// Calls `visit` on every node, parents before children, with its path.
    pub fn walk<'a>(&'a self, path: String, visit: &mut impl FnMut(&str, &'a Rule)) {
        visit(&path, self);
        match self {
            Rule::AllOf(children) | Rule::AnyOf(children) => {
                let name = if matches!(self, Rule::AllOf(_)) {
                    "all_of"
                } else {
                    "any_of"
                };
                for (i, child) in children.iter().enumerate() {
                    child.walk(format!("{path}.{name}[{i}]"), visit);
                }
            }
            Rule::Not(child) => child.walk(format!("{path}.not"), visit),
            Rule::Leaf(_) => {}
        }
    }

    /// The scoring models the rule names.
    pub fn referenced_models(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .leaves("rule")
            .into_iter()
            .filter_map(|(_, leaf)| match leaf {
                Leaf::LeadScore(test) => Some(test.model_id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether a lead score can move the verdict with time alone.
    pub fn has_lead_score(&self) -> bool {
        self.leaves("rule")
            .iter()
            .any(|(_, leaf)| matches!(leaf, Leaf::LeadScore(_)))
    }

    /// The segments the rule names.
    pub fn referenced_segments(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .leaves("rule")
            .into_iter()
            .filter_map(|(_, leaf)| match leaf {
                Leaf::Segment(id) => Some(*id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(op: NumberOp, threshold: f64) -> EventTest {
        EventTest {
            event_type: "order.placed".into(),
            channel: None,
            properties: Vec::new(),
            measure: Measure::Count,
            op,
            threshold,
            window: Window::Ever,
        }
    }

    #[test]
    fn counts_that_ask_only_whether_an_event_exists_are_recognised() {
        use NumberOp::{Equals, NotEquals};
        use Order::{Greater, GreaterOrEqual, Less, LessOrEqual};
        let order = NumberOp::Order;
        assert_eq!(count(order(GreaterOrEqual), 1.0).existence(), Some(true));
        assert_eq!(count(order(Greater), 0.0).existence(), Some(true));
        assert_eq!(count(order(Greater), 0.5).existence(), Some(true));
        assert_eq!(count(NotEquals, 0.0).existence(), Some(true));
        assert_eq!(count(Equals, 0.0).existence(), Some(false));
        assert_eq!(count(order(Less), 1.0).existence(), Some(false));
        assert_eq!(count(order(LessOrEqual), 0.0).existence(), Some(false));
        // Real counts.
        assert_eq!(count(order(GreaterOrEqual), 2.0).existence(), None);
        assert_eq!(count(Equals, 1.0).existence(), None);
        assert_eq!(count(NotEquals, 1.0).existence(), None);
        assert_eq!(count(order(Less), 3.0).existence(), None);
        let mut revenue = count(order(Greater), 0.0);
        revenue.measure = Measure::Revenue("EUR".into());
        assert_eq!(revenue.existence(), None);
    }
}
