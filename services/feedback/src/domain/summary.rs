//! A survey's summary from the counts the store aggregates: per question,
//! who answered and the figures of its kind.

use std::collections::HashMap;

use rapport_proto::feedback::v1::question_summary::Figures;
use rapport_proto::feedback::v1::{
    ChoiceCount, ChoiceFigures, QuestionKind, QuestionSummary, Survey,
};

use super::score::{self, Distribution};
use super::survey::scale;

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
