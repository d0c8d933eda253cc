//! Surveys: what a valid survey is (its questions in [`super::question`]), and
//! which edits keep the meaning of the answers already given.

use std::collections::{BTreeMap, HashMap, HashSet};

use rapport_core::Violations;
use rapport_proto::common::v1::Channel;
use rapport_proto::feedback::v1::{Question, QuestionKind, Survey};

use super::question::{csat_scale_max, scale, validate_question};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_LABEL_CHARS: usize = 64;
pub const MAX_LANGUAGES: usize = 20;
pub const MAX_QUESTIONS: usize = 50;
pub const MAX_CHOICES: usize = 50;
pub const MAX_TEXT_CHARS: usize = 1000;
pub const MAX_DAYS: i32 = 365;
pub const DEFAULT_CSAT_SCALE_MAX: i32 = 5;
pub const DEFAULT_TEXT_MAX_LENGTH: i32 = 2000;
pub const MAX_TEXT_MAX_LENGTH: i32 = 10_000;
pub const DEFAULT_INVITATION_TTL_DAYS: i32 = 30;
pub const DEFAULT_ANONYMOUS_LINK_HOURLY_LIMIT: i32 = 1000;
pub const MAX_ANONYMOUS_LINK_HOURLY_LIMIT: i32 = 100_000;

/// Days an invitation to `survey` stays answerable.
pub fn invitation_ttl_days(survey: &Survey) -> i32 {
    if survey.invitation_ttl_days == 0 {
        DEFAULT_INVITATION_TTL_DAYS
    } else {
        survey.invitation_ttl_days
    }
}

/// Responses `survey`'s anonymous link may begin per clock hour.
pub fn anonymous_link_hourly_limit(survey: &Survey) -> i32 {
    if survey.anonymous_link_hourly_limit == 0 {
        DEFAULT_ANONYMOUS_LINK_HOURLY_LIMIT
    } else {
        survey.anonymous_link_hourly_limit
    }
}

/// The survey's first scored question, whose answer is a response's `score`.
pub fn headline_question(survey: &Survey) -> Option<&Question> {
    survey.questions.iter().find(|q| scale(q).is_some())
}

/// Checks every author-set field of `survey`, naming each bad field under
/// `prefix`.
pub fn validate(survey: &Survey, prefix: &str, violations: &mut Violations) {
    let field = |name: &str| format!("{prefix}.{name}");
    if !is_text(&survey.name, MAX_NAME_CHARS) {
        violations.add(
            field("name"),
            format!("must be 1 to {MAX_NAME_CHARS} characters, without control characters"),
        );
    }
    if !is_label(&survey.touchpoint, true) {
        violations.add(
            field("touchpoint"),
            format!(
                "must be 1 to {MAX_LABEL_CHARS} lowercase letters, digits, '-' or '_', such as \"post-support\""
            ),
        );
    }
    match Channel::try_from(survey.channel) {
        Ok(Channel::Unspecified) => violations.add(field("channel"), "is required"),
        Ok(_) => {}
        Err(_) => violations.add(field("channel"), "is not a known channel"),
    }
    check_days(survey.fatigue_days, &field("fatigue_days"), violations);
    check_days(
        survey.invitation_ttl_days,
        &field("invitation_ttl_days"),
        violations,
    );
    if !(0..=MAX_ANONYMOUS_LINK_HOURLY_LIMIT).contains(&survey.anonymous_link_hourly_limit) {
        violations.add(
            field("anonymous_link_hourly_limit"),
            format!("must be 0 (for {DEFAULT_ANONYMOUS_LINK_HOURLY_LIMIT}) to {MAX_ANONYMOUS_LINK_HOURLY_LIMIT}"),
        );
    }
    validate_languages(&survey.languages, &field("languages"), violations);
    // Texts are checked against the well-formed languages only, so that a
    // mistyped tag is reported once, not once per text.
    let languages: Vec<&str> = survey
        .languages
        .iter()
        .map(String::as_str)
        .filter(|tag| is_language_tag(tag))
        .collect();
    check_texts(&survey.title, &languages, &field("title"), violations);
    if survey.questions.len() > MAX_QUESTIONS {
        violations.add(
            field("questions"),
            format!("at most {MAX_QUESTIONS} questions"),
        );
        return;
    }
    let mut earlier: HashMap<&str, &Question> = HashMap::new();
    for (i, question) in survey.questions.iter().enumerate() {
        let prefix = field(&format!("questions[{i}]"));
        validate_question(question, &languages, &earlier, &prefix, violations);
        if earlier.insert(&question.id, question).is_some() {
            violations.add(
                format!("{prefix}.id"),
                format!("repeats question id {:?}", question.id),
            );
        }
    }
}

/// A number of days for a rule: 0 (none, or the default) to a year.
pub fn check_days(days: i32, field: &str, violations: &mut Violations) {
    if !(0..=MAX_DAYS).contains(&days) {
        violations.add(field, format!("must be 0 to {MAX_DAYS}"));
    }
}

fn validate_languages(languages: &[String], field: &str, violations: &mut Violations) {
    if languages.is_empty() || languages.len() > MAX_LANGUAGES {
        violations.add(field, format!("must list 1 to {MAX_LANGUAGES} languages"));
    }
    let mut seen = HashSet::new();
    for (i, tag) in languages.iter().enumerate() {
        if !is_language_tag(tag) {
            violations.add(
                format!("{field}[{i}]"),
                format!("{tag:?} is not a language tag such as \"en\" or \"pt-BR\""),
            );
        } else if !seen.insert(tag.to_ascii_lowercase()) {
            violations.add(format!("{field}[{i}]"), format!("repeats {tag:?}"));
        }
    }
}

/// A text per survey language, and none for other languages.
pub(super) fn check_texts(
    texts: &BTreeMap<String, String>,
    languages: &[&str],
    field: &str,
    violations: &mut Violations,
) {
    for language in languages {
        match texts.get(*language) {
            Some(text) if is_text(text, MAX_TEXT_CHARS) => {}
            Some(_) => violations.add(
                format!("{field}[{language}]"),
                format!("must be 1 to {MAX_TEXT_CHARS} characters, without control characters"),
            ),
            None => violations.add(field, format!("needs a text in {language:?}")),
        }
    }
    let mut extra: Vec<&String> = texts
        .keys()
        .filter(|language| !languages.contains(&language.as_str()))
        .collect();
    extra.sort();
    for language in extra {
        violations.add(
            format!("{field}[{language}]"),
            "is not one of the survey's languages",
        );
    }
}

/// Fills the defaults a client may leave at 0, so that a stored survey says
/// what it means.
pub fn normalize(survey: &mut Survey) {
    for question in &mut survey.questions {
        match question.kind() {
            QuestionKind::Csat => question.scale_max = csat_scale_max(question),
            QuestionKind::FreeText if question.max_length == 0 => {
                question.max_length = DEFAULT_TEXT_MAX_LENGTH;
            }
            _ => {}
        }
    }
}

/// Why `after` would change the meaning of answers given to `before`, if
/// it would: every question must stay, with its kind and scale, and keep
/// every choice. Adding questions and choices and rewording are fine.
pub fn meaning_change(before: &Survey, after: &Survey) -> Option<String> {
    for old in &before.questions {
        let Some(new) = after.questions.iter().find(|q| q.id == old.id) else {
            return Some(format!(
                "question {:?} has answers and cannot be removed",
                old.id
            ));
        };
        if new.kind != old.kind {
            return Some(format!(
                "question {:?} has answers and cannot change its kind",
                old.id
            ));
        }
        if scale(new) != scale(old) {
            return Some(format!(
                "question {:?} has answers and cannot change its scale",
                old.id
            ));
        }
        if let Some(choice) = old
            .choices
            .iter()
            .find(|c| !new.choices.iter().any(|n| n.id == c.id))
        {
            return Some(format!(
                "choice {:?} of question {:?} has answers and cannot be removed",
                choice.id, old.id
            ));
        }
    }
    let headline = |survey| headline_question(survey).map(|q| q.id.clone());
    if headline(before) != headline(after) {
        return Some(format!(
            "the first scored question ({:?}) gives each response its score and cannot change; add scored questions after it",
            headline(before).unwrap_or_default()
        ));
    }
    None
}

/// Text a person reads: not blank, at most `max` characters, and no control
/// characters but line breaks and tabs (PostgreSQL cannot store NUL).
fn is_text(text: &str, max: usize) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= max
        && !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// `[a-z0-9_]` (and `-` when `dashes`), 1 to 64 characters.
pub(super) fn is_label(text: &str, dashes: bool) -> bool {
    (1..=MAX_LABEL_CHARS).contains(&text.len())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dashes && b == b'-')
        })
}

/// A BCP 47 tag of the common shape: a 2–3 letter language, then subtags.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `tag` is a valid theme tag for responses.
pub fn is_theme_tag(tag: &str) -> bool {
    is_label(tag, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_proto::feedback::v1::{Choice, ShowCondition};

    fn texts(text: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("en".to_owned(), text.to_owned())])
    }

    fn question(id: &str, kind: QuestionKind) -> Question {
        Question {
            id: id.into(),
            kind: kind.into(),
            text: texts(id),
            ..Default::default()
        }
    }

    fn choice(id: &str) -> Choice {
        Choice {
            id: id.into(),
            label: texts(id),
        }
    }

    fn survey(questions: Vec<Question>) -> Survey {
        Survey {
            name: "After support".into(),
            touchpoint: "post-support".into(),
            channel: Channel::Email.into(),
            languages: vec!["en".into()],
            title: texts("How did we do?"),
            questions,
            ..Default::default()
        }
    }

    fn fields(survey: &Survey) -> Vec<String> {
        let mut violations = Violations::default();
        validate(survey, "survey", &mut violations);
        violations.fields()
    }

    #[test]
    fn a_complete_survey_is_valid() {
        let mut colour = question("colour", QuestionKind::SingleChoice);
        colour.choices = vec![choice("red"), choice("blue")];
        let mut why = question("why", QuestionKind::FreeText);
        why.show_if = Some(ShowCondition {
            question_id: "nps".into(),
            min_score: 0,
            max_score: 6,
            ..Default::default()
        });
        let survey = survey(vec![question("nps", QuestionKind::Nps), colour, why]);
        assert_eq!(fields(&survey), Vec::<String>::new());
    }

    #[test]
    fn bad_fields_are_named() {
        let mut csat = question("csat", QuestionKind::Csat);
        csat.scale_max = 11;
        let mut nps = question("nps", QuestionKind::Nps);
        nps.scale_max = 5;
        let mut later = question("later", QuestionKind::Rating);
        later.show_if = Some(ShowCondition {
            question_id: "after".into(),
            ..Default::default()
        });
        let mut one_choice = question("pick", QuestionKind::MultipleChoice);
        one_choice.choices = vec![choice("only")];
        let mut bad = survey(vec![
            csat,
            nps,
            later,
            question("after", QuestionKind::Ces),
            one_choice,
            question("csat", QuestionKind::Ces),
        ]);
        bad.touchpoint = "Post Support".into();
        bad.languages.push("english!".into());
        bad.title.insert("de".into(), "Wie war es?".into());
        assert_eq!(
            fields(&bad),
            vec![
                "survey.touchpoint",
                "survey.languages[1]",
                "survey.title[de]",
                "survey.questions[0].scale_max",
                "survey.questions[1].scale_max",
                "survey.questions[2].show_if.question_id",
                "survey.questions[4].choices",
                "survey.questions[5].id",
            ]
        );
    }

    #[test]
    fn conditions_must_fit_their_source_question() {
        let mut colour = question("colour", QuestionKind::SingleChoice);
        colour.choices = vec![choice("red"), choice("blue")];
        let mut on_score = question("a", QuestionKind::FreeText);
        on_score.show_if = Some(ShowCondition {
            question_id: "nps".into(),
            min_score: 9,
            max_score: 11,
            ..Default::default()
        });
        let mut on_choice = question("b", QuestionKind::FreeText);
        on_choice.show_if = Some(ShowCondition {
            question_id: "colour".into(),
            choice_ids: vec!["green".into()],
            ..Default::default()
        });
        let mut on_text = question("c", QuestionKind::Rating);
        on_text.show_if = Some(ShowCondition {
            question_id: "a".into(),
            ..Default::default()
        });
        let survey = survey(vec![
            question("nps", QuestionKind::Nps),
            colour,
            on_score,
            on_choice,
            on_text,
        ]);
        assert_eq!(
            fields(&survey),
            vec![
                "survey.questions[2].show_if.min_score",
                "survey.questions[3].show_if.choice_ids",
                "survey.questions[4].show_if.question_id",
            ]
        );
    }

    #[test]
    fn scales_follow_the_kind() {
        let mut csat = question("csat", QuestionKind::Csat);
        assert_eq!(scale(&csat), Some((1, 5)));
        csat.scale_max = 7;
        assert_eq!(scale(&csat), Some((1, 7)));
        assert_eq!(scale(&question("n", QuestionKind::Nps)), Some((0, 10)));
        assert_eq!(scale(&question("c", QuestionKind::Ces)), Some((1, 7)));
        assert_eq!(scale(&question("r", QuestionKind::Rating)), Some((1, 5)));
        assert_eq!(scale(&question("t", QuestionKind::FreeText)), None);
    }

    #[test]
    fn answered_questions_keep_their_meaning() {
        let mut colour = question("colour", QuestionKind::SingleChoice);
        colour.choices = vec![choice("red"), choice("blue")];
        let before = survey(vec![question("csat", QuestionKind::Csat), colour.clone()]);

        let mut reworded = before.clone();
        reworded.questions[0].text = texts("How satisfied are you?");
        reworded.questions[1].choices.push(choice("green"));
        reworded
            .questions
            .push(question("extra", QuestionKind::FreeText));
        assert_eq!(meaning_change(&before, &reworded), None);

        let mut rescaled = before.clone();
        rescaled.questions[0].scale_max = 7;
        assert!(
            meaning_change(&before, &rescaled)
                .unwrap()
                .contains("scale")
        );

        let mut removed = before.clone();
        removed.questions.remove(0);
        assert!(
            meaning_change(&before, &removed)
                .unwrap()
                .contains("removed")
        );

        let mut choice_removed = before.clone();
        choice_removed.questions[1].choices.remove(1);
        assert!(
            meaning_change(&before, &choice_removed)
                .unwrap()
                .contains("\"blue\"")
        );

        let mut headline_moved = before.clone();
        headline_moved
            .questions
            .insert(0, question("first", QuestionKind::Nps));
        assert!(
            meaning_change(&before, &headline_moved)
                .unwrap()
                .contains("first scored question")
        );

        let mut rekinded = before.clone();
        rekinded.questions[0].kind = QuestionKind::Ces.into();
        rekinded.questions[0].scale_max = 0;
        assert!(meaning_change(&before, &rekinded).unwrap().contains("kind"));
    }
}
