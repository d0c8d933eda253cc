//! What a segment must be: a name, a kind fixed at creation, a rule for
//! dynamic segments and none for lists.

use rapport_core::Violations;
use rapport_proto::segmentation::v1::{ChangeCause, Segment, SegmentKind};

use super::rule::Rule;
use super::scoring::Models;
use super::validate;

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Checks `segment` (at `path`), returning its typed rule for a dynamic
/// segment; its lead scores are checked against the tenant's `models`.
pub fn validate(
    segment: &Segment,
    path: &str,
    models: &Models,
    violations: &mut Violations,
) -> Option<Rule> {
    let name = segment.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        violations.add(
            format!("{path}.name"),
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        );
    } else if name.chars().any(char::is_control) {
        violations.add(format!("{path}.name"), "must not hold control characters");
    }
    if segment.description.chars().count() > MAX_DESCRIPTION_CHARS {
        violations.add(
            format!("{path}.description"),
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
    }
    match (kind(segment), &segment.rule) {
        (Some(SegmentKind::Dynamic), Some(rule)) => {
            validate::validate(rule, &format!("{path}.rule"), models, violations)
        }
        (Some(SegmentKind::Dynamic), None) => {
            violations.add(format!("{path}.rule"), "is required for a dynamic segment");
            None
        }
        (Some(_), Some(_)) => {
            violations.add(format!("{path}.rule"), "must be empty for a list");
            None
        }
        (Some(_), None) => None,
        (None, _) => {
            violations.add(format!("{path}.kind"), "must be DYNAMIC or LIST");
            None
        }
    }
}

pub fn kind(segment: &Segment) -> Option<SegmentKind> {
    match SegmentKind::try_from(segment.kind) {
        Ok(SegmentKind::Unspecified) | Err(_) => None,
        Ok(kind) => Some(kind),
    }
}

/// Why a contact entered or left a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A change to the contact (an event, a profile edit, an answer, their
    /// membership of a segment the rule names).
    Event,
    /// Time passing: a window's edge went by.
    Time,
    /// A build of a new rule version.
    RuleChange,
    /// A build of an unchanged rule: the first, or one asked for.
    Build,
    /// Added to or removed from a list.
    List,
}

impl Cause {
    /// The name stored in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Event => "event",
            Cause::Time => "time",
            Cause::RuleChange => "rule_change",
            Cause::Build => "build",
            Cause::List => "list",
        }
    }

    /// A build of `building` after one of `built` (0 before the first):
    /// the rule's change, or a reconcile of the same rule.
    pub fn of_build(built: i64, building: i64) -> Self {
        if built != 0 && built != building {
            Cause::RuleChange
        } else {
            Cause::Build
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Cause::Event,
            Cause::Time,
            Cause::RuleChange,
            Cause::Build,
            Cause::List,
        ]
        .into_iter()
        .find(|cause| cause.as_str() == name)
    }

    pub fn to_proto(self) -> ChangeCause {
        match self {
            Cause::Event => ChangeCause::Event,
            Cause::Time => ChangeCause::Time,
            Cause::RuleChange => ChangeCause::RuleChange,
            Cause::Build => ChangeCause::Build,
            Cause::List => ChangeCause::List,
        }
    }
}
