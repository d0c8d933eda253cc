//! What a segment must be: a name, a kind fixed at creation, a rule for
//! dynamic segments and none for lists.

use rapport_core::Violations;
use rapport_proto::segmentation::v1::{Segment, SegmentKind};

use super::rule::Rule;
use super::validate;

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Checks `segment` (at `path`), returning its typed rule for a dynamic
/// segment.
pub fn validate(segment: &Segment, path: &str, violations: &mut Violations) -> Option<Rule> {
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
            validate::validate(rule, &format!("{path}.rule"), violations)
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
