//! Questions: the scale and limits of each kind, and what a valid question
//! of a survey is (its texts, choices and display condition).

use std::collections::{HashMap, HashSet};

use rapport_core::Violations;
use rapport_proto::feedback::v1::{Question, QuestionKind, ShowCondition};

use super::survey::{
    DEFAULT_CSAT_SCALE_MAX, DEFAULT_TEXT_MAX_LENGTH, MAX_CHOICES, MAX_LABEL_CHARS,
    MAX_TEXT_MAX_LENGTH, check_texts, is_label,
};

/// The inclusive score range of a scored question; `None` for choice and
/// free-text questions.
pub fn scale(question: &Question) -> Option<(i32, i32)> {
    match question.kind() {
        QuestionKind::Nps => Some((0, 10)),
        QuestionKind::Csat => Some((1, csat_scale_max(question))),
        QuestionKind::Ces => Some((1, 7)),
        QuestionKind::Rating => Some((1, 5)),
        _ => None,
    }
}

pub(super) fn csat_scale_max(question: &Question) -> i32 {
    if question.scale_max == 0 {
        DEFAULT_CSAT_SCALE_MAX
    } else {
        question.scale_max
    }
}

pub fn is_choice(kind: QuestionKind) -> bool {
    matches!(
        kind,
        QuestionKind::SingleChoice | QuestionKind::MultipleChoice
    )
}

/// Most characters of a free-text answer.
pub fn text_max_length(question: &Question) -> usize {
    let max = if question.max_length == 0 {
        DEFAULT_TEXT_MAX_LENGTH
    } else {
        question.max_length
    };
    usize::try_from(max).unwrap_or_default()
}

pub(super) fn validate_question(
    question: &Question,
    languages: &[&str],
    earlier: &HashMap<&str, &Question>,
    prefix: &str,
    violations: &mut Violations,
) {
    let field = |name: &str| format!("{prefix}.{name}");
    if !is_label(&question.id, false) {
        violations.add(
            field("id"),
            format!("must be 1 to {MAX_LABEL_CHARS} lowercase letters, digits or '_'"),
        );
    }
    let kind = match QuestionKind::try_from(question.kind) {
        Ok(QuestionKind::Unspecified) => {
            violations.add(field("kind"), "is required");
            return;
        }
        Ok(kind) => kind,
        Err(_) => {
            violations.add(field("kind"), "is not a known question kind");
            return;
        }
    };
    check_texts(&question.text, languages, &field("text"), violations);
    if kind == QuestionKind::Csat {
        if question.scale_max != 0 && !(3..=10).contains(&question.scale_max) {
            violations.add(field("scale_max"), "must be 3 to 10 (0 for 5)");
        }
    } else if question.scale_max != 0 {
        violations.add(
            field("scale_max"),
            "applies to CSAT questions only; other kinds have fixed scales",
        );
    }
    if kind == QuestionKind::FreeText {
        if !(0..=MAX_TEXT_MAX_LENGTH).contains(&question.max_length) {
            violations.add(
                field("max_length"),
                format!("must be 1 to {MAX_TEXT_MAX_LENGTH} (0 for {DEFAULT_TEXT_MAX_LENGTH})"),
            );
        }
    } else if question.max_length != 0 {
        violations.add(field("max_length"), "applies to free-text questions only");
    }
    if is_choice(kind) {
        validate_choices(question, languages, prefix, violations);
    } else if !question.choices.is_empty() {
        violations.add(field("choices"), "apply to choice questions only");
    }
    if let Some(condition) = &question.show_if {
        validate_condition(condition, earlier, &field("show_if"), violations);
    }
}

fn validate_choices(
    question: &Question,
    languages: &[&str],
    prefix: &str,
    violations: &mut Violations,
) {
    if !(2..=MAX_CHOICES).contains(&question.choices.len()) {
        violations.add(
            format!("{prefix}.choices"),
            format!("must hold 2 to {MAX_CHOICES} choices"),
        );
    }
    let mut seen = HashSet::new();
    for (j, choice) in question.choices.iter().enumerate() {
        let field = format!("{prefix}.choices[{j}]");
        if !is_label(&choice.id, false) {
            violations.add(
                format!("{field}.id"),
                format!("must be 1 to {MAX_LABEL_CHARS} lowercase letters, digits or '_'"),
            );
        } else if !seen.insert(choice.id.as_str()) {
            violations.add(
                format!("{field}.id"),
                format!("repeats choice id {:?}", choice.id),
            );
        }
        check_texts(
            &choice.label,
            languages,
            &format!("{field}.label"),
            violations,
        );
    }
}

fn validate_condition(
    condition: &ShowCondition,
    earlier: &HashMap<&str, &Question>,
    field: &str,
    violations: &mut Violations,
) {
    let Some(source) = earlier.get(condition.question_id.as_str()) else {
        violations.add(
            format!("{field}.question_id"),
            format!(
                "{:?} is not an earlier question of this survey",
                condition.question_id
            ),
        );
        return;
    };
    if let Some((min, max)) = scale(source) {
        if !condition.choice_ids.is_empty() {
            violations.add(
                format!("{field}.choice_ids"),
                "apply to conditions on choice questions only",
            );
        }
        let in_scale = |score: i32| (min..=max).contains(&score);
        if !in_scale(condition.min_score)
            || !in_scale(condition.max_score)
            || condition.min_score > condition.max_score
        {
            violations.add(
                format!("{field}.min_score"),
                format!("min_score..max_score must be a range within {min}..{max}"),
            );
        }
    } else if is_choice(source.kind()) {
        if condition.min_score != 0 || condition.max_score != 0 {
            violations.add(
                format!("{field}.min_score"),
                "applies to conditions on scored questions only",
            );
        }
        if condition.choice_ids.is_empty() {
            violations.add(format!("{field}.choice_ids"), "name at least one choice");
        }
        for id in &condition.choice_ids {
            if !source.choices.iter().any(|c| &c.id == id) {
                violations.add(
                    format!("{field}.choice_ids"),
                    format!("{id:?} is not a choice of {:?}", source.id),
                );
            }
        }
    } else if source.kind() == QuestionKind::FreeText {
        violations.add(
            format!("{field}.question_id"),
            "a free-text answer cannot be a condition",
        );
    }
}
