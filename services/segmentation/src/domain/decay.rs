//! How a lead score moves with time alone: each event's points halve
//! every half-life, so a score falls towards its steady part and passes a
//! bound at most once, at a moment worked out in closed form.

use chrono::{DateTime, Duration, Utc};

use super::rule::{LeadScoreTest, Leaf};
use super::scoring::{Contribution, Model};

/// The share of points earned at `at` left at `now`: 0.5^(age /
/// half-life); an event dated after now has not happened.
pub fn decay(at: DateTime<Utc>, now: DateTime<Utc>, half_life: Duration) -> f64 {
    if at > now {
        return 0.0;
    }
    let age = (now - at).as_seconds_f64();
    0.5_f64.powf(age / half_life.as_seconds_f64())
}

/// A score split by how it moves with time alone: `steady` (conditions
/// that hold, which only facts and window edges change) and `decaying`
/// (event rules' points, never negative, halving every half-life).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParts {
    pub steady: f64,
    pub decaying: f64,
}

impl ScoreParts {
    pub fn of(model: &Model, contributions: &[Contribution]) -> Self {
        let mut parts = ScoreParts {
            steady: 0.0,
            decaying: 0.0,
        };
        for (rule, contribution) in model.rules.iter().zip(contributions) {
            match rule.condition {
                Leaf::Event(_) => parts.decaying += contribution.contributed,
                _ => parts.steady += contribution.contributed,
            }
        }
        parts
    }

    /// When, from now, decay alone takes the score below `threshold`: the
    /// score `steady + decaying × 0.5^(t / half-life)` falls towards
    /// `steady` and passes the threshold once, at t = half-life ×
    /// log2(decaying / (threshold − steady)). `None` when it never will
    /// (already below, or never that low).
    pub fn falls_below(self, threshold: f64, half_life: Duration) -> Option<Duration> {
        let above_floor = threshold - self.steady;
        if self.decaying <= 0.0 || above_floor <= 0.0 || self.decaying < above_floor {
            return None;
        }
        let half_lives = (self.decaying / above_floor).log2();
        let seconds = half_lives * half_life.as_seconds_f64();
        // Whole microseconds, rounded up: PostgreSQL's precision, and never
        // before the moment itself.
        Some(Duration::microseconds((seconds * 1e6).ceil() as i64))
    }
}

/// The next moment decay alone can change whether `test` holds for the
/// contact whose score is in `parts` at `now`.
pub fn next_crossing(
    test: &LeadScoreTest,
    parts: ScoreParts,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    test.thresholds()
        .filter_map(|threshold| parts.falls_below(threshold, test.model.half_life))
        .min()
        .and_then(|wait| now.checked_add_signed(wait))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn points_halve_every_half_life() {
        let week = Duration::days(7);
        assert!(close(decay(now(), now(), week), 1.0));
        assert!(close(decay(now() - week, now(), week), 0.5));
        assert!(close(decay(now() - week * 2, now(), week), 0.25));
        // Half a half-life: 1/sqrt(2).
        assert!(close(
            decay(now() - Duration::hours(84), now(), week),
            std::f64::consts::FRAC_1_SQRT_2
        ));
        // Not happened yet.
        assert_eq!(decay(now() + Duration::hours(1), now(), week), 0.0);
    }

    fn parts(steady: f64, decaying: f64) -> ScoreParts {
        ScoreParts { steady, decaying }
    }

    #[test]
    fn decay_passes_a_threshold_once_at_a_moment_worked_out_by_hand() {
        let week = Duration::days(7);
        // 20 decaying points fall to 10 in one half-life.
        assert_eq!(parts(0.0, 20.0).falls_below(10.0, week), Some(week));
        // 5 steady + 20 decaying: 10 is 5 above the floor, and 20 halves
        // to 5 in two half-lives.
        assert_eq!(parts(5.0, 20.0).falls_below(10.0, week), Some(week * 2));
        // Exactly on the threshold: now.
        assert_eq!(
            parts(0.0, 10.0).falls_below(10.0, week),
            Some(Duration::zero())
        );
        // Already below, or a floor at or above the threshold: never.
        assert_eq!(parts(0.0, 8.0).falls_below(10.0, week), None);
        assert_eq!(parts(12.0, 5.0).falls_below(10.0, week), None);
        assert_eq!(parts(10.0, 5.0).falls_below(10.0, week), None);
        assert_eq!(parts(0.0, 0.0).falls_below(10.0, week), None);
    }
}
