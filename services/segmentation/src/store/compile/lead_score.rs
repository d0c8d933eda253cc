//! A lead score condition as SQL: the score summed as `domain/scoring.rs`
//! sums it, and when decay next takes it past one of the bounds.

use super::{Compiler, LeafSql, Param, Position};
use crate::domain::rule::*;

impl Compiler {
    /// The score as `domain/scoring.rs` works it out: event rules' points
    /// decayed per event (the `decaying` part), other rules' points while
    /// they hold (the `steady` part). Notes when decay next takes it past
    /// a bound: `steady + decaying × 0.5^(t / half-life)` reaches bound
    /// `b` after half-life × log2(decaying / (b − steady)).
    pub(super) fn lead_score(&mut self, test: &LeadScoreTest) -> LeafSql {
        let now = self.param(Param::Time(self.now));
        let half_life = self.param(Param::Float(test.model.half_life.as_seconds_f64()));
        let (mut steady, mut decaying) = (Vec::new(), Vec::new());
        for rule in &test.model.rules {
            let points = self.param(Param::Float(rule.points));
            if let Leaf::Event(event) = &rule.condition {
                let filter = self.event_filter(event);
                let alias = self.join(
                    &format!(
                        "sum(power(0.5, extract(epoch FROM {now} - occur_time)::float8 / {half_life}))"
                    ),
                    "segmentation.events",
                    &format!("{filter} AND occur_time <= {now}"),
                );
                decaying.push(format!("{points} * coalesce({alias}.v, 0)"));
            } else {
                let held = self.leaf(&rule.condition, Position::Nested).matched;
                steady.push(format!(
                    "CASE WHEN coalesce({held}, false) THEN {points} ELSE 0 END"
                ));
            }
        }
        let sum = |terms: Vec<String>| match terms.is_empty() {
            true => "0::float8".to_owned(),
            false => format!("({})", terms.join(" + ")),
        };
        let (steady, decaying) = (sum(steady), sum(decaying));
        let score = format!("({steady} + {decaying})");
        let mut tests = Vec::new();
        for (bound, op) in [(test.min, ">="), (test.max, "<")] {
            let Some(bound) = bound else { continue };
            let bound = self.param(Param::Float(bound));
            tests.push(format!("{score} {op} {bound}"));
            let above_floor = format!("({bound} - {steady})");
            self.crossings.push(format!(
                "CASE WHEN {decaying} > 0 AND {above_floor} > 0 AND {decaying} >= {above_floor} \
                 THEN {now} + make_interval(secs => {half_life} * ln({decaying} / {above_floor}) / ln(2)) END"
            ));
        }
        LeafSql {
            matched: format!("({})", tests.join(" AND ")),
            observed: format!("{score}::text"),
            never_null: false,
        }
    }
}
