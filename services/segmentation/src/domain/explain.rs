//! Why a rule holds or not for one contact: each node with what it asks,
//! what was found, and its verdict, combined up the tree from the leaves'
//! verdicts.

use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::segmentation::v1::{ConsentState, NodeExplanation, NpsCategory, ScoreKind};

use super::rule::*;

/// What the leaves of a contact's evaluation found, depth first: whether
/// each holds, and the value seen (`None`: nothing was there).
pub type LeafFindings = Vec<(bool, Option<String>)>;

/// The explanation of `rule` (at `path`) given its leaves' findings, in
/// the order [`Rule::leaves`] lists them.
pub fn explain(rule: &Rule, path: &str, findings: &LeafFindings) -> NodeExplanation {
    let mut next = findings.iter();
    node(rule, path.to_owned(), &mut next)
}

fn node<'a>(
    rule: &Rule,
    path: String,
    findings: &mut impl Iterator<Item = &'a (bool, Option<String>)>,
) -> NodeExplanation {
    let children_of = |name: &str, rules: &[Rule], findings: &mut _| -> Vec<NodeExplanation> {
        rules
            .iter()
            .enumerate()
            .map(|(i, child)| node(child, format!("{path}.{name}[{i}]"), findings))
            .collect()
    };
    match rule {
        Rule::AllOf(rules) => {
            let children = children_of("all_of", rules, findings);
            NodeExplanation {
                matched: children.iter().all(|child| child.matched),
                condition: "all of".to_owned(),
                path,
                observed: String::new(),
                children,
            }
        }
        Rule::AnyOf(rules) => {
            let children = children_of("any_of", rules, findings);
            NodeExplanation {
                matched: children.iter().any(|child| child.matched),
                condition: "any of".to_owned(),
                path,
                observed: String::new(),
                children,
            }
        }
        Rule::Not(child) => {
            let child = node(child, format!("{path}.not"), findings);
            NodeExplanation {
                matched: !child.matched,
                condition: "not".to_owned(),
                path,
                observed: String::new(),
                children: vec![child],
            }
        }
        Rule::Leaf(leaf) => {
            let (matched, found) = findings.next().cloned().unwrap_or((false, None));
            NodeExplanation {
                path,
                matched,
                condition: describe(leaf),
                observed: observed(leaf, found.as_deref()),
                children: Vec::new(),
            }
        }
    }
}

/// What a leaf asks, in words.
pub fn describe(leaf: &Leaf) -> String {
    match leaf {
        Leaf::Attribute(test) => format!(
            "attribute {} {}",
            test.path.join("."),
            comparison(&test.comparison)
        ),
        Leaf::EmailDomain(domains) => format!("email domain is one of {}", domains.join(", ")),
        Leaf::Locale(locales) => format!("locale is one of {}", locales.join(", ")),
        Leaf::TimeZone(zones) => format!("time zone is one of {}", zones.join(", ")),
        Leaf::Created(window) => format!("created {}", window.describe()),
        Leaf::Tags { matching, tags } => {
            let how = match matching {
                TagMatch::Any => "any",
                TagMatch::All => "all",
                TagMatch::None => "none",
            };
            format!("has {how} of the tags {}", tags.join(", "))
        }
        Leaf::Stage(stages) => format!(
            "lifecycle stage is one of {}",
            stages
                .iter()
                .map(|s| stage_name(*s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Leaf::StageEntered { stage, within_days } => format!(
            "entered stage {} in the last {within_days} days",
            stage_name(*stage)
        ),
        Leaf::Consent { channel, state } => format!(
            "consent on {} is {}",
            channel_name(*channel),
            consent_name(*state)
        ),
        Leaf::Event(test) => {
            let mut what = test.event_type.clone();
            if let Some(channel) = test.channel {
                what.push_str(&format!(" on {}", channel_name(channel)));
            }
            for property in &test.properties {
                what.push_str(&format!(
                    " where {} {}",
                    property.path.join("."),
                    comparison(&property.comparison)
                ));
            }
            let measured = match &test.measure {
                Measure::Count => "counted".to_owned(),
                Measure::Revenue(currency) => format!("revenue in {currency}"),
            };
            format!(
                "{what} {measured} {} {} {}",
                test.window.describe(),
                test.op.symbol(),
                number(test.threshold)
            )
        }
        Leaf::NpsCategory(categories) => format!(
            "latest NPS answer is {}",
            categories
                .iter()
                .map(|c| nps_name(*c))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Leaf::Score(test) => format!(
            "answered {} between {} and {} {}",
            score_name(test.kind),
            test.min,
            test.max,
            test.window.describe()
        ),
        Leaf::Segment(id) => format!("member of segment {id}"),
        Leaf::LeadScore(test) => {
            let bounds: Vec<String> = [
                test.min.map(|min| format!("at least {min}")),
                test.max.map(|max| format!("below {max}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            format!(
                "lead score under model {} {}",
                test.model_id,
                bounds.join(" and ")
            )
        }
    }
}

/// What was found for a leaf, in words.
pub fn observed(leaf: &Leaf, found: Option<&str>) -> String {
    let Some(found) = found else {
        return match leaf {
            Leaf::Attribute(_) => "no such attribute".to_owned(),
            Leaf::StageEntered { .. } => "did not enter it in that time".to_owned(),
            Leaf::NpsCategory(_) => "no NPS answer".to_owned(),
            _ => "nothing".to_owned(),
        };
    };
    match leaf {
        Leaf::Attribute(_) => format!("found {found}"),
        Leaf::EmailDomain(_) => format!("domain {found:?}"),
        Leaf::Locale(_) => format!("locale {found:?}"),
        Leaf::TimeZone(_) => format!("time zone {found:?}"),
        Leaf::Created(_) => format!("created {found}"),
        Leaf::Tags { .. } if found.is_empty() => "no tags".to_owned(),
        Leaf::Tags { .. } => format!("tags {found}"),
        Leaf::Stage(_) => format!(
            "stage {}",
            parse_i16(found).map_or(found.to_owned(), |s| stage_name(s).to_owned())
        ),
        Leaf::StageEntered { .. } => format!("entered at {found}"),
        Leaf::Consent { .. } => {
            parse_i16(found).map_or(found.to_owned(), |s| consent_name(s).to_owned())
        }
        Leaf::Event(test) => match &test.measure {
            Measure::Count => format!("counted {}", trim_number(found)),
            Measure::Revenue(currency) => format!("summed {} {currency}", trim_number(found)),
        },
        Leaf::NpsCategory(_) => {
            let category = found.parse::<i32>().ok().map(|score| match score {
                9.. => "PROMOTER",
                7 | 8 => "PASSIVE",
                _ => "DETRACTOR",
            });
            format!("latest score {found} ({})", category.unwrap_or("?"))
        }
        Leaf::Score(_) => format!("{found} matching answers"),
        Leaf::Segment(_) if found == "true" => "a member".to_owned(),
        Leaf::Segment(_) => "not a member".to_owned(),
        Leaf::LeadScore(_) => format!("score {}", round_score(found)),
    }
}

/// A score as GetContactScore would show it to a person: two decimals.
fn round_score(found: &str) -> String {
    found
        .parse::<f64>()
        .map_or(found.to_owned(), |score| format!("{score:.2}"))
}

fn comparison(comparison: &Comparison) -> String {
    match comparison {
        Comparison::Equals(value) => format!("= {}", scalar(value)),
        Comparison::NotEquals(value) => format!("!= {}", scalar(value)),
        Comparison::Order(order, Ordered::Number(n)) => {
            format!("{} {}", order.symbol(), number(*n))
        }
        Comparison::Order(order, Ordered::Time(time)) => {
            format!("{} {}", order.symbol(), time_ref(*time))
        }
        Comparison::Contains(value) => format!("contains {}", scalar(value)),
        Comparison::StartsWith(prefix) => format!("starts with {prefix:?}"),
        Comparison::Exists => "exists".to_owned(),
        Comparison::In(values) => format!(
            "is one of {}",
            values.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn scalar(value: &Scalar) -> String {
    match value {
        Scalar::Text(text) => format!("{text:?}"),
        Scalar::Number(n) => number(*n),
        Scalar::Flag(flag) => flag.to_string(),
        Scalar::Time(time) => time_ref(*time),
    }
}

fn time_ref(time: TimeRef) -> String {
    match time {
        TimeRef::At(at) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        TimeRef::DaysAgo(days) => format!("{days} days ago"),
    }
}

/// `2` rather than `2.0`.
fn number(n: f64) -> String {
    trim_number(&n.to_string())
}

fn trim_number(text: &str) -> String {
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => text.to_owned(),
    }
}

fn parse_i16(text: &str) -> Option<i16> {
    text.parse().ok()
}

fn stage_name(stage: i16) -> &'static str {
    LifecycleStage::try_from(i32::from(stage)).map_or("UNKNOWN", |s| {
        s.as_str_name().trim_start_matches("LIFECYCLE_STAGE_")
    })
}

fn channel_name(channel: i16) -> &'static str {
    Channel::try_from(i32::from(channel)).map_or("UNKNOWN", |c| {
        c.as_str_name().trim_start_matches("CHANNEL_")
    })
}

fn consent_name(state: i16) -> &'static str {
    ConsentState::try_from(i32::from(state)).map_or("UNKNOWN", |s| {
        s.as_str_name().trim_start_matches("CONSENT_STATE_")
    })
}

fn nps_name(category: i16) -> &'static str {
    NpsCategory::try_from(i32::from(category)).map_or("UNKNOWN", |c| {
        c.as_str_name().trim_start_matches("NPS_CATEGORY_")
    })
}

fn score_name(kind: i16) -> &'static str {
    ScoreKind::try_from(i32::from(kind)).map_or("UNKNOWN", |k| {
        k.as_str_name().trim_start_matches("SCORE_KIND_")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Leaf {
        Leaf::Event(EventTest {
            event_type: "order.placed".to_owned(),
            channel: None,
            properties: Vec::new(),
            measure: Measure::Count,
            op: NumberOp::Order(Order::GreaterOrEqual),
            threshold: 2.0,
            window: Window::Within(90),
        })
    }

    #[test]
    fn an_event_leaf_says_what_it_needs_and_what_it_counted() {
        let explanation = explain(
            &Rule::Leaf(orders()),
            "rule",
            &vec![(false, Some("1".to_owned()))],
        );
        assert_eq!(
            explanation.condition,
            "order.placed counted in the last 90 days >= 2"
        );
        assert_eq!(explanation.observed, "counted 1");
        assert!(!explanation.matched);
    }

    #[test]
    fn verdicts_combine_up_the_tree_with_paths() {
        let rule = Rule::AllOf(vec![
            Rule::Leaf(Leaf::Consent {
                channel: 1,
                state: 2,
            }),
            Rule::Not(Box::new(Rule::Leaf(orders()))),
        ]);
        let explanation = explain(
            &rule,
            "rule",
            &vec![(true, Some("2".to_owned())), (false, Some("0".to_owned()))],
        );
        assert!(explanation.matched);
        assert_eq!(explanation.children[0].path, "rule.all_of[0]");
        assert_eq!(
            explanation.children[0].condition,
            "consent on EMAIL is SUBSCRIBED"
        );
        assert_eq!(explanation.children[0].observed, "SUBSCRIBED");
        assert_eq!(explanation.children[1].path, "rule.all_of[1]");
        assert!(explanation.children[1].matched);
        assert_eq!(
            explanation.children[1].children[0].path,
            "rule.all_of[1].not"
        );
        assert_eq!(explanation.children[1].children[0].observed, "counted 0");
    }

    #[test]
    fn an_empty_any_of_never_holds_and_an_empty_all_of_always_does() {
        let rule = Rule::AnyOf(vec![Rule::AllOf(Vec::new()), Rule::AnyOf(Vec::new())]);
        let explanation = explain(&rule, "rule", &Vec::new());
        assert!(explanation.matched);
        assert!(explanation.children[0].matched);
        assert!(!explanation.children[1].matched);
    }
}
