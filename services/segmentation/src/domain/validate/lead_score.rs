//! Lead score conditions checked: a model of the tenant (the rule carries
//! it), and bounds that make a range.

use super::*;

/// The largest lead score bound: far beyond any sum of 50 rules' points.
const MAX_SCORE: f64 = 1e12;

/// The scoring models `rule` names (ids that parse), to look up before it
/// is checked.
pub fn named_models(rule: &pb::Rule) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    let mut stack = vec![rule];
    while let Some(rule) = stack.pop() {
        match &rule.node {
            Some(Node::AllOf(list) | Node::AnyOf(list)) => stack.extend(&list.rules),
            Some(Node::Not(child)) => stack.push(child),
            Some(Node::LeadScore(score)) => ids.extend(uuid::Uuid::parse_str(&score.model_id).ok()),
            _ => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Checker<'_> {
    pub(super) fn lead_score(
        &mut self,
        score: &pb::LeadScoreCondition,
        path: &str,
    ) -> Option<LeadScoreTest> {
        let id_path = format!("{path}.model_id");
        let model_id = self.violations.parse_id(&id_path, &score.model_id);
        let model = match self.models.get(&model_id) {
            Some(model) => Some(model.clone()),
            None if model_id.is_nil() => None,
            None => {
                self.add(
                    id_path,
                    format!("names scoring model {model_id}, which does not exist"),
                );
                None
            }
        };
        let mut bounds_valid = true;
        for (name, bound) in [("min", score.min), ("max", score.max)] {
            if bound.is_some_and(|value| !value.is_finite() || value.abs() > MAX_SCORE) {
                self.add(
                    format!("{path}.{name}"),
                    "must be a number from -1e12 to 1e12",
                );
                bounds_valid = false;
            }
        }
        match (score.min, score.max) {
            (None, None) => {
                self.add(path, "must set min, max or both");
                bounds_valid = false;
            }
            (Some(min), Some(max)) if bounds_valid && min >= max => {
                self.add(format!("{path}.max"), "must be above min");
                bounds_valid = false;
            }
            _ => {}
        }
        if !bounds_valid {
            return None;
        }
        Some(LeadScoreTest {
            model_id,
            model: model?,
            min: score.min,
            max: score.max,
        })
    }
}
