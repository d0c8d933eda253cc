//! A segment's size estimated from a random sample of contacts, when the
//! exact count would take longer than the caller allows: the share of the
//! sample that matched, scaled to all contacts, with a 95% Wilson score
//! interval (which stays inside [0, 1] and is honest for small shares).

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// An estimated count with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub count: i64,
    pub low: i64,
    pub high: i64,
}

/// `matched` of `sampled` contacts matched, out of `total`.
pub fn estimate(matched: i64, sampled: i64, total: i64) -> Estimate {
    if sampled <= 0 || total <= 0 {
        return Estimate {
            count: 0,
            low: 0,
            high: total.max(0),
        };
    }
    let (k, n, total_f) = (matched as f64, sampled as f64, total as f64);
    let share = k / n;
    let z2 = Z95 * Z95;
    let centre = (share + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (share * (1.0 - share) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    let scale = |share: f64| share.clamp(0.0, 1.0) * total_f;
    Estimate {
        count: scale(share).round() as i64,
        low: scale(centre - half).floor() as i64,
        high: (scale(centre + half).ceil() as i64).min(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_a_hundred_scales_with_a_wilson_interval() {
        // Worked by hand: p = 0.1, n = 100: Wilson 95% is
        // [0.05523, 0.17437], so 55 to 175 of 1,000.
        assert_eq!(
            estimate(10, 100, 1000),
            Estimate {
                count: 100,
                low: 55,
                high: 175
            }
        );
    }

    #[test]
    fn nothing_matched_still_leaves_room_above_zero() {
        // p = 0, n = 50: upper bound z²/(n + z²) = 0.07135.
        assert_eq!(
            estimate(0, 50, 200_000),
            Estimate {
                count: 0,
                low: 0,
                high: 14_270
            }
        );
    }

    #[test]
    fn an_empty_sample_claims_nothing() {
        assert_eq!(
            estimate(0, 0, 10),
            Estimate {
                count: 0,
                low: 0,
                high: 10
            }
        );
    }
}
