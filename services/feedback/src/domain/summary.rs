//! A survey's summary from the counts the store aggregates: per question,
//! who answered and the figures of its kind.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

use rapport_proto::feedback::v1::question_summary::Figures;
use rapport_proto::feedback::v1::{
    ChoiceCount, ChoiceFigures, QuestionKind, QuestionSummary, Survey,
};

use super::question::scale;
use super::score::{self, Distribution};

/// A summary's time range, split into whole UTC days (read from the
/// running counts) and the parts of days at its edges (counted from the
/// responses themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSplit {
    /// Whole days `from..to`, unbounded where `None`; `None` when the range
    /// holds no whole day.
    pub days: Option<(Option<NaiveDate>, Option<NaiveDate>)>,
    /// Bounded stretches before and after the whole days.
    pub edges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Splits `start..end` (either unbounded) into whole days and edges.
pub fn split_range(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> RangeSplit {
    let midnight = |day: NaiveDate| day.and_time(NaiveTime::MIN).and_utc();
    // The first whole day starts at or after `start`; the last ends by `end`.
    let first = start.map(|s| {
        let day = s.date_naive();
        if midnight(day) == s {
            day
        } else {
            day.checked_add_days(Days::new(1)).unwrap_or(day)
        }
    });
    let last = end.map(|e| e.date_naive());
    if let (Some(first), Some(last), Some(start), Some(end)) = (first, last, start, end)
        && first >= last
    {
        return RangeSplit {
            days: None,
            edges: vec![(start, end)],
        };
    }
    let mut edges = Vec::new();
    if let (Some(start), Some(first)) = (start, first)
        && start < midnight(first)
    {
        edges.push((start, midnight(first)));
    }
    if let (Some(end), Some(last)) = (end, last)
        && midnight(last) < end
    {
        edges.push((midnight(last), end));
    }
    RangeSplit {
        days: Some((first, last)),
        edges,
    }
}

/// Completed answers to one question with one score (`None` for unscored
/// answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreCount {
    pub question_id: String,
    pub score: Option<i32>,
    pub count: i64,
}

/// Completed answers to one choice question that picked one choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoicePick {
    pub question_id: String,
    pub choice_id: String,
    pub count: i64,
}

/// One summary per question of `survey`, in its order. A question's
/// denominator is the responses that answered it; `completed` minus those
/// were not shown it or skipped it.
pub fn question_summaries(
    survey: &Survey,
    completed: i64,
    scores: &[ScoreCount],
    picks: &[ChoicePick],
) -> Vec<QuestionSummary> {
    let mut answered: HashMap<&str, i64> = HashMap::new();
    for row in scores {
        *answered.entry(row.question_id.as_str()).or_default() += row.count;
    }
    survey
        .questions
        .iter()
        .map(|question| {
            let answered_count = answered.get(question.id.as_str()).copied().unwrap_or(0);
            let figures = scale(question).and_then(|(min, max)| {
                let mut distribution = Distribution::new(min, max);
                for row in scores.iter().filter(|r| r.question_id == question.id) {
                    if let Some(value) = row.score {
                        distribution.add(value, row.count);
                    }
                }
                match question.kind() {
                    QuestionKind::Nps => score::nps(&distribution).map(Figures::Nps),
                    QuestionKind::Csat => score::csat(&distribution, max).map(Figures::Csat),
                    QuestionKind::Ces => score::ces(&distribution).map(Figures::Ces),
                    _ => score::rating(&distribution).map(Figures::Rating),
                }
            });
            let figures = figures.or_else(|| {
                (!question.choices.is_empty() && answered_count > 0).then(|| {
                    Figures::Choice(ChoiceFigures {
                        counts: question
                            .choices
                            .iter()
                            .map(|choice| ChoiceCount {
                                choice_id: choice.id.clone(),
                                count: picks
                                    .iter()
                                    .filter(|p| {
                                        p.question_id == question.id && p.choice_id == choice.id
                                    })
                                    .map(|p| p.count)
                                    .sum(),
                            })
                            .collect(),
                    })
                })
            });
            QuestionSummary {
                question_id: question.id.clone(),
                kind: question.kind,
                answered_count,
                skipped_count: (completed - answered_count).max(0),
                figures,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_proto::feedback::v1::{Choice, Question};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_split_into_whole_days_and_edges() {
        assert_eq!(
            split_range(None, None),
            RangeSplit {
                days: Some((None, None)),
                edges: vec![]
            }
        );
        // 1 March 18:00 to 4 March 06:00: 2 and 3 March whole, two edges.
        assert_eq!(
            split_range(
                Some(at("2026-03-01T18:00:00Z")),
                Some(at("2026-03-04T06:00:00Z"))
            ),
            RangeSplit {
                days: Some((Some(day("2026-03-02")), Some(day("2026-03-04")))),
                edges: vec![
                    (at("2026-03-01T18:00:00Z"), at("2026-03-02T00:00:00Z")),
                    (at("2026-03-04T00:00:00Z"), at("2026-03-04T06:00:00Z")),
                ]
            }
        );
        // Midnight to midnight: whole days only.
        assert_eq!(
            split_range(
                Some(at("2026-03-01T00:00:00Z")),
                Some(at("2026-03-03T00:00:00Z"))
            ),
            RangeSplit {
                days: Some((Some(day("2026-03-01")), Some(day("2026-03-03")))),
                edges: vec![]
            }
        );
        // Within one day: an edge only.
        assert_eq!(
            split_range(
                Some(at("2026-03-01T08:00:00Z")),
                Some(at("2026-03-01T09:00:00Z"))
            ),
            RangeSplit {
                days: None,
                edges: vec![(at("2026-03-01T08:00:00Z"), at("2026-03-01T09:00:00Z"))]
            }
        );
        // Open end: whole days from the next midnight on.
        assert_eq!(
            split_range(Some(at("2026-03-01T08:00:00Z")), None),
            RangeSplit {
                days: Some((Some(day("2026-03-02")), None)),
                edges: vec![(at("2026-03-01T08:00:00Z"), at("2026-03-02T00:00:00Z"))]
            }
        );
    }

    fn question(id: &str, kind: QuestionKind) -> Question {
        Question {
            id: id.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    fn count(question_id: &str, score: Option<i32>, count: i64) -> ScoreCount {
        ScoreCount {
            question_id: question_id.into(),
            score,
            count,
        }
    }

    #[test]
    fn skippers_are_not_in_the_denominator() {
        let mut pick = question("pick", QuestionKind::MultipleChoice);
        pick.choices = ["a", "b"]
            .iter()
            .map(|id| Choice {
                id: (*id).into(),
                ..Default::default()
            })
            .collect();
        let mut csat = question("csat", QuestionKind::Csat);
        csat.scale_max = 5;
        let survey = Survey {
            questions: vec![
                question("nps", QuestionKind::Nps),
                csat,
                pick,
                question("why", QuestionKind::FreeText),
            ],
            ..Default::default()
        };
        // 10 completed: nps answered by 10 (6 promoters, 4 detractors), csat
        // by 4 (two 5s, a 4, a 1), pick by 3 (a twice, b three times), why by 2.
        let scores = [
            count("nps", Some(10), 6),
            count("nps", Some(2), 4),
            count("csat", Some(5), 2),
            count("csat", Some(4), 1),
            count("csat", Some(1), 1),
            count("pick", None, 3),
            count("why", None, 2),
        ];
        let picks = [
            ChoicePick {
                question_id: "pick".into(),
                choice_id: "a".into(),
                count: 2,
            },
            ChoicePick {
                question_id: "pick".into(),
                choice_id: "b".into(),
                count: 3,
            },
        ];
        let summaries = question_summaries(&survey, 10, &scores, &picks);
        let counts: Vec<(i64, i64)> = summaries
            .iter()
            .map(|s| (s.answered_count, s.skipped_count))
            .collect();
        assert_eq!(counts, vec![(10, 0), (4, 6), (3, 7), (2, 8)]);
        let Some(Figures::Nps(nps)) = &summaries[0].figures else {
            panic!("nps figures")
        };
        // 60% − 40% = 20.
        assert!((nps.nps - 20.0).abs() < 1e-9);
        let Some(Figures::Csat(csat)) = &summaries[1].figures else {
            panic!("csat figures")
        };
        // 3 of the 4 who answered gave 4–5: 75%, not 3 of 10.
        assert!((csat.csat_percent - 75.0).abs() < 1e-9);
        let Some(Figures::Choice(choice)) = &summaries[2].figures else {
            panic!("choice figures")
        };
        assert_eq!(
            choice.counts.iter().map(|c| c.count).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(summaries[3].figures, None);
    }
}
