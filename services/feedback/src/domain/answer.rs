//! Answers: each checked against its question, merged over the answers a
//! respondent saved earlier, and filtered by skip logic.

use std::collections::{HashMap, HashSet};

use rapport_core::Violations;
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::{Answer, ChoiceSelection, Question, QuestionKind, Survey};

use super::question::{is_choice, scale, text_max_length};

/// The answers a response holds after `new` is saved over `saved`, in the
/// survey's question order: a new answer replaces a saved one to the same
/// question, and saved answers to questions that are no longer shown (an
/// earlier answer changed) are dropped. Fails, naming `answers[i]` and the
/// question, when a new answer does not fit its question or answers a
/// question that is not shown, and, when `complete`, when a shown required
/// question is unanswered. Nothing is kept from a failed call.
pub fn assemble(
    survey: &Survey,
    saved: Vec<Answer>,
    new: &[Answer],
    complete: bool,
    violations: &mut Violations,
) -> Vec<Answer> {
    let questions: HashMap<&str, &Question> = survey
        .questions
        .iter()
        .map(|q| (q.id.as_str(), q))
        .collect();
    let mut merged: HashMap<String, Answer> = saved
        .into_iter()
        .map(|a| (a.question_id.clone(), a))
        .collect();
    // Question id → index in `new` of each answer that fits its question.
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for (i, answer) in new.iter().enumerate() {
        let field = format!("answers[{i}]");
        let Some(question) = questions.get(answer.question_id.as_str()) else {
            violations.add(
                format!("{field}.question_id"),
                format!("{:?} is not a question of this survey", answer.question_id),
            );
            continue;
        };
        if !seen.insert(answer.question_id.as_str()) {
            violations.add(
                format!("{field}.question_id"),
                format!("question {:?} is answered twice", question.id),
            );
            continue;
        }
        if let Err(problem) = check(question, answer.value.as_ref()) {
            violations.add(field, format!("question {:?}: {problem}", question.id));
            continue;
        }
        accepted.insert(&answer.question_id, i);
        merged.insert(answer.question_id.clone(), answer.clone());
    }

    let mut ordered = Vec::with_capacity(merged.len());
    let mut shown_answers: HashMap<&str, &Answer> = HashMap::new();
    for question in &survey.questions {
        let shown = question.show_if.as_ref().is_none_or(|condition| {
            shown_answers
                .get(condition.question_id.as_str())
                .is_some_and(|answer| meets(condition, answer))
        });
        let answer = merged.get(&question.id);
        if shown {
            if let Some(answer) = answer {
                shown_answers.insert(&question.id, answer);
                ordered.push(answer.clone());
            } else if complete && question.required {
                violations.add("answers", format!("question {:?} is required", question.id));
            }
        } else if let Some(i) = accepted.get(question.id.as_str()) {
            violations.add(
                format!("answers[{i}]"),
                format!(
                    "question {:?} is not shown: the answer its condition looks at does not meet it",
                    question.id
                ),
            );
        }
    }
    ordered
}

/// Why `value` is not an answer to `question`, if it is not.
fn check(question: &Question, value: Option<&Value>) -> Result<(), String> {
    let kind = question.kind();
    match (value, scale(question)) {
        (Some(Value::Score(score)), Some((min, max))) => {
            if (min..=max).contains(score) {
                Ok(())
            } else {
                Err(format!("score {score} is outside {min}..{max}"))
            }
        }
        (Some(Value::Choices(selection)), _) if is_choice(kind) => {
            check_choices(question, selection)
        }
        (Some(Value::Text(text)), _) if kind == QuestionKind::FreeText => {
            let max = text_max_length(question);
            if text.trim().is_empty() {
                Err("text must not be blank; leave the question out to skip it".into())
            } else if text.contains('\0') {
                Err("text must not contain NUL characters".into())
            } else if text.chars().count() > max {
                Err(format!("text must be at most {max} characters"))
            } else {
                Ok(())
            }
        }
        (None, _) => Err("has no value".into()),
        (Some(_), Some(_)) => Err("takes a score".into()),
        (Some(_), None) if is_choice(kind) => Err("takes choices".into()),
        (Some(_), None) => Err("takes text".into()),
    }
}

fn check_choices(question: &Question, selection: &ChoiceSelection) -> Result<(), String> {
    let picked = &selection.choice_ids;
    if question.kind() == QuestionKind::SingleChoice && picked.len() != 1 {
        return Err("takes exactly one choice".into());
    }
    if picked.is_empty() {
        return Err("takes at least one choice".into());
    }
    let mut seen = HashSet::new();
    for id in picked {
        if !question.choices.iter().any(|c| &c.id == id) {
            return Err(format!("{id:?} is not one of its choices"));
        }
        if !seen.insert(id) {
            return Err(format!("choice {id:?} is picked twice"));
        }
    }
    Ok(())
}

fn meets(condition: &rapport_proto::feedback::v1::ShowCondition, answer: &Answer) -> bool {
    match &answer.value {
        Some(Value::Score(score)) => (condition.min_score..=condition.max_score).contains(score),
        Some(Value::Choices(selection)) => selection
            .choice_ids
            .iter()
            .any(|id| condition.choice_ids.contains(id)),
        _ => false,
    }
}

/// The score an answer gives, if it is a scored answer.
pub fn score(answer: &Answer) -> Option<i32> {
    match answer.value {
        Some(Value::Score(score)) => Some(score),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_proto::feedback::v1::{Choice, ShowCondition};

    fn question(id: &str, kind: QuestionKind, required: bool) -> Question {
        Question {
            id: id.into(),
            kind: kind.into(),
            required,
            ..Default::default()
        }
    }

    /// nps (required) → why (free text, shown for 0–6) ; channel (single
    /// choice) → detail (multiple choice, shown when "phone" was picked).
    fn survey() -> Survey {
        let mut why = question("why", QuestionKind::FreeText, true);
        why.max_length = 10;
        why.show_if = Some(ShowCondition {
            question_id: "nps".into(),
            min_score: 0,
            max_score: 6,
            ..Default::default()
        });
        let choices = |ids: &[&str]| {
            ids.iter()
                .map(|id| Choice {
                    id: (*id).into(),
                    ..Default::default()
                })
                .collect()
        };
        let mut channel = question("channel", QuestionKind::SingleChoice, false);
        channel.choices = choices(&["phone", "chat"]);
        let mut detail = question("detail", QuestionKind::MultipleChoice, false);
        detail.choices = choices(&["wait", "rude", "fixed"]);
        detail.show_if = Some(ShowCondition {
            question_id: "channel".into(),
            choice_ids: vec!["phone".into()],
            ..Default::default()
        });
        Survey {
            questions: vec![
                question("nps", QuestionKind::Nps, true),
                why,
                channel,
                detail,
            ],
            ..Default::default()
        }
    }

    fn score_answer(id: &str, score: i32) -> Answer {
        Answer {
            question_id: id.into(),
            value: Some(Value::Score(score)),
        }
    }

    fn text_answer(id: &str, text: &str) -> Answer {
        Answer {
            question_id: id.into(),
            value: Some(Value::Text(text.into())),
        }
    }

    fn choice_answer(id: &str, picked: &[&str]) -> Answer {
        Answer {
            question_id: id.into(),
            value: Some(Value::Choices(ChoiceSelection {
                choice_ids: picked.iter().map(|p| (*p).into()).collect(),
            })),
        }
    }

    fn run(saved: Vec<Answer>, new: &[Answer], complete: bool) -> Result<Vec<String>, Vec<String>> {
        let mut violations = Violations::default();
        let answers = assemble(&survey(), saved, new, complete, &mut violations);
        if violations.is_empty() {
            Ok(answers.into_iter().map(|a| a.question_id).collect())
        } else {
            Err(violations.fields())
        }
    }

    #[test]
    fn answers_are_checked_against_their_questions() {
        let new = [
            score_answer("nps", 11),
            text_answer("why", "far too long here"),
            choice_answer("channel", &["phone", "chat"]),
            score_answer("nope", 3),
            text_answer("channel", "x"),
        ];
        assert_eq!(
            run(vec![], &new, false),
            Err(vec![
                "answers[0]".into(),
                "answers[1]".into(),
                "answers[2]".into(),
                "answers[3].question_id".into(),
                "answers[4].question_id".into(),
            ])
        );
    }

    #[test]
    fn a_hidden_question_cannot_be_answered() {
        // "why" is shown only to detractors.
        let new = [score_answer("nps", 10), text_answer("why", "slow")];
        assert_eq!(run(vec![], &new, false), Err(vec!["answers[1]".into()]));
        let new = [score_answer("nps", 3), text_answer("why", "slow")];
        assert_eq!(
            run(vec![], &new, false),
            Ok(vec!["nps".into(), "why".into()])
        );
    }

    #[test]
    fn completing_needs_the_shown_required_questions() {
        // A promoter is not asked "why", so completing with nps alone works.
        assert_eq!(
            run(vec![], &[score_answer("nps", 9)], true),
            Ok(vec!["nps".into()])
        );
        // A detractor is asked "why", which is required.
        assert_eq!(
            run(vec![], &[score_answer("nps", 2)], true),
            Err(vec!["answers".into()])
        );
        // Partial saves need nothing.
        assert_eq!(run(vec![], &[], false), Ok(vec![]));
    }

    #[test]
    fn new_answers_replace_saved_ones_and_stale_follow_ups_drop() {
        let saved = vec![
            score_answer("nps", 3),
            text_answer("why", "slow"),
            choice_answer("channel", &["phone"]),
            choice_answer("detail", &["wait", "rude"]),
        ];
        // Changing the channel to chat hides "detail"; nps 9 hides "why".
        assert_eq!(
            run(
                saved,
                &[score_answer("nps", 9), choice_answer("channel", &["chat"])],
                true
            ),
            Ok(vec!["nps".into(), "channel".into()])
        );
    }
}
