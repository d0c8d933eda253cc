//! Score math: NPS with its margin of error, CSAT, CES and rating figures
//! from the count of each score. Pure, so the formulas are tested against
//! hand-worked answers.

use rapport_proto::feedback::v1::{
    CesFigures, CsatFigures, NpsCategory, NpsFigures, RatingFigures,
};

/// z for a two-sided 95% confidence interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// The NPS group of a 0–10 score.
pub fn nps_category(score: i32) -> NpsCategory {
    match score {
        9..=10 => NpsCategory::Promoter,
        7..=8 => NpsCategory::Passive,
        _ => NpsCategory::Detractor,
    }
}

/// How many answers gave each score of a scale `min..=max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    min: i32,
    counts: Vec<i64>,
}

impl Distribution {
    pub fn new(min: i32, max: i32) -> Self {
        let len = usize::try_from(max - min + 1).unwrap_or_default();
        Self {
            min,
            counts: vec![0; len],
        }
    }

    /// Adds `count` answers of `score`; scores off the scale are ignored
    /// (they cannot be stored: answers are checked against the scale).
    pub fn add(&mut self, score: i32, count: i64) {
        if let Some(slot) = usize::try_from(score - self.min)
            .ok()
            .and_then(|i| self.counts.get_mut(i))
        {
            *slot += count;
        }
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }

    pub fn counts(&self) -> &[i64] {
        &self.counts
    }

    fn scores(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        (self.min..).zip(self.counts.iter().copied())
    }

    /// Answers scoring at least `threshold`.
    fn at_least(&self, threshold: i32) -> i64 {
        self.scores()
            .filter(|&(score, _)| score >= threshold)
            .map(|(_, count)| count)
            .sum()
    }

    fn mean(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let sum: f64 = self
            .scores()
            .map(|(score, count)| f64::from(score) * count as f64)
            .sum();
        sum / total as f64
    }
}

/// NPS figures of a 0–10 distribution; `None` without answers.
///
/// Each respondent scores +1 (promoter), 0 (passive) or −1 (detractor); NPS
/// is 100 × their mean. Its margin is z₉₅ × 100 × √(variance ÷ n), with the
/// variance of those ±1/0 values: p + d − (p − d)², where p and d are the
/// promoter and detractor shares.
pub fn nps(distribution: &Distribution) -> Option<NpsFigures> {
    let n = distribution.total();
    if n == 0 {
        return None;
    }
    let promoters = distribution.at_least(9);
    let passives = distribution.at_least(7) - promoters;
    let detractors = n - promoters - passives;
    let p = promoters as f64 / n as f64;
    let d = detractors as f64 / n as f64;
    let variance = (p + d - (p - d).powi(2)).max(0.0);
    Some(NpsFigures {
        promoters,
        passives,
        detractors,
        nps: 100.0 * (p - d),
        margin_of_error: 100.0 * Z_95 * (variance / n as f64).sqrt(),
    })
}

/// CSAT figures of a 1..=`scale_max` distribution: the share in the top two
/// boxes (4–5 on the default 1–5 scale) and the mean; `None` without answers.
pub fn csat(distribution: &Distribution, scale_max: i32) -> Option<CsatFigures> {
    let n = distribution.total();
    (n > 0).then(|| CsatFigures {
        csat_percent: percent(distribution.at_least(scale_max - 1), n),
        mean: distribution.mean(),
        distribution: distribution.counts().to_vec(),
    })
}

/// CES figures of a 1–7 distribution: the mean and the share agreeing (5–7).
pub fn ces(distribution: &Distribution) -> Option<CesFigures> {
    let n = distribution.total();
    (n > 0).then(|| CesFigures {
        mean: distribution.mean(),
        agree_percent: percent(distribution.at_least(5), n),
        distribution: distribution.counts().to_vec(),
    })
}

/// Star rating figures of a 1–5 distribution.
pub fn rating(distribution: &Distribution) -> Option<RatingFigures> {
    (distribution.total() > 0).then(|| RatingFigures {
        mean: distribution.mean(),
        distribution: distribution.counts().to_vec(),
    })
}

fn percent(part: i64, whole: i64) -> f64 {
    100.0 * part as f64 / whole as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution(min: i32, max: i32, scores: &[(i32, i64)]) -> Distribution {
        let mut d = Distribution::new(min, max);
        for &(score, count) in scores {
            d.add(score, count);
        }
        d
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 0.005,
            "{actual} is not {expected}"
        );
    }

    #[test]
    fn nps_categories_follow_the_definition() {
        assert_eq!(nps_category(0), NpsCategory::Detractor);
        assert_eq!(nps_category(6), NpsCategory::Detractor);
        assert_eq!(nps_category(7), NpsCategory::Passive);
        assert_eq!(nps_category(8), NpsCategory::Passive);
        assert_eq!(nps_category(9), NpsCategory::Promoter);
        assert_eq!(nps_category(10), NpsCategory::Promoter);
    }

    #[test]
    fn nps_and_margin_match_a_hand_worked_example() {
        // 50 promoters, 30 passives, 20 detractors: p = 0.5, d = 0.2.
        // NPS = 100 × (0.5 − 0.2) = 30.
        // variance = 0.5 + 0.2 − 0.3² = 0.61; SE = √(0.61 / 100) = 0.078102
        // margin = 1.959964 × 0.078102 × 100 = 15.308
        let d = distribution(
            0,
            10,
            &[(10, 30), (9, 20), (8, 10), (7, 20), (6, 5), (0, 15)],
        );
        let figures = nps(&d).unwrap();
        assert_eq!(
            (figures.promoters, figures.passives, figures.detractors),
            (50, 30, 20)
        );
        close(figures.nps, 30.0);
        close(figures.margin_of_error, 15.308);
    }

    #[test]
    fn nps_of_a_small_sample_has_a_wide_margin() {
        // 2 promoters, 1 detractor (n = 3): p = 2/3, d = 1/3, NPS = 33.33.
        // variance = 1 − (1/3)² = 0.888889; SE = √(0.888889 / 3) = 0.544331
        // margin = 1.959964 × 0.544331 × 100 = 106.687
        let d = distribution(0, 10, &[(9, 1), (10, 1), (3, 1)]);
        let figures = nps(&d).unwrap();
        close(figures.nps, 33.333);
        close(figures.margin_of_error, 106.687);
    }

    #[test]
    fn unanimous_nps_has_no_margin_and_no_answers_have_no_nps() {
        let all_promoters = nps(&distribution(0, 10, &[(10, 40)])).unwrap();
        close(all_promoters.nps, 100.0);
        close(all_promoters.margin_of_error, 0.0);
        let all_detractors = nps(&distribution(0, 10, &[(2, 7)])).unwrap();
        close(all_detractors.nps, -100.0);
        assert_eq!(nps(&Distribution::new(0, 10)), None);
    }

    #[test]
    fn csat_counts_the_top_two_boxes_of_its_scale() {
        // 1-5: scores 5,5,4,3,1 → top two (4–5) = 3 of 5 = 60%; mean 18/5 = 3.6.
        let d = distribution(1, 5, &[(5, 2), (4, 1), (3, 1), (1, 1)]);
        let figures = csat(&d, 5).unwrap();
        close(figures.csat_percent, 60.0);
        close(figures.mean, 3.6);
        assert_eq!(figures.distribution, vec![1, 0, 1, 1, 2]);
        // 1-7: top two are 6 and 7 (5 is not): 2 of 3 = 66.67%; mean 18/3 = 6.
        let d = distribution(1, 7, &[(7, 1), (5, 1), (6, 0), (6, 1)]);
        let figures = csat(&d, 7).unwrap();
        close(figures.csat_percent, 66.667);
        close(figures.mean, 6.0);
    }

    #[test]
    fn ces_reports_mean_and_share_of_five_to_seven() {
        // 7,6,5,4,2,1 → 3 of 6 agree = 50%; mean 25/6 = 4.1667.
        let d = distribution(1, 7, &[(7, 1), (6, 1), (5, 1), (4, 1), (2, 1), (1, 1)]);
        let figures = ces(&d).unwrap();
        close(figures.agree_percent, 50.0);
        close(figures.mean, 4.1667);
    }

    #[test]
    fn rating_reports_mean_and_distribution() {
        // 5,5,5,4,2 → mean 21/5 = 4.2.
        let d = distribution(1, 5, &[(5, 3), (4, 1), (2, 1)]);
        let figures = rating(&d).unwrap();
        close(figures.mean, 4.2);
        assert_eq!(figures.distribution, vec![0, 1, 0, 1, 3]);
        assert_eq!(rating(&Distribution::new(1, 5)), None);
    }
}
