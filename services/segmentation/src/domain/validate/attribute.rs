//! Custom attribute and event property conditions checked: a path of
//! keys, and an operator that fits its value.

use super::*;

impl Checker<'_> {
    pub(super) fn attribute(
        &mut self,
        test: &pb::AttributeCondition,
        path: &str,
    ) -> Option<AttributeTest> {
        let keys = self.attribute_path(&test.path, &format!("{path}.path"));
        let comparison = self.comparison(test, path);
        Some(AttributeTest {
            path: keys?,
            comparison: comparison?,
        })
    }

    fn attribute_path(&mut self, text: &str, path: &str) -> Option<Vec<String>> {
        if text.is_empty() {
            self.add(path, "is required");
            return None;
        }
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if keys.len() > MAX_PATH_KEYS {
            self.add(path, format!("has more than {MAX_PATH_KEYS} keys"));
            return None;
        }
        if keys
            .iter()
            .any(|key| key.is_empty() || key.chars().count() > MAX_KEY_CHARS || has_control(key))
        {
            self.add(
                path,
                format!(
                    "must be dot-separated keys of 1 to {MAX_KEY_CHARS} characters, without control characters"
                ),
            );
            return None;
        }
        Some(keys)
    }

    fn comparison(&mut self, test: &pb::AttributeCondition, path: &str) -> Option<Comparison> {
        let operator = Operator::try_from(test.operator).unwrap_or(Operator::Unspecified);
        let value_path = format!("{path}.value");
        if operator != Operator::In && !test.values.is_empty() {
            self.add(format!("{path}.values"), "is only for the IN operator");
            return None;
        }
        let needs_value = !matches!(operator, Operator::Exists | Operator::In);
        if needs_value && test.value.is_none() {
            self.add(&value_path, "is required for this operator");
            return None;
        }
        if !needs_value && test.value.is_some() {
            self.add(&value_path, "must be empty for EXISTS and IN");
            return None;
        }
        let scalar = |checker: &mut Self| {
            test.value
                .as_ref()
                .and_then(|value| checker.scalar(value, &value_path))
        };
        match operator {
            Operator::Unspecified => {
                self.add(format!("{path}.operator"), "is required");
                None
            }
            Operator::Equals => scalar(self).map(Comparison::Equals),
            Operator::NotEquals => scalar(self).map(Comparison::NotEquals),
            Operator::Less
            | Operator::LessOrEqual
            | Operator::Greater
            | Operator::GreaterOrEqual => {
                let order = match operator {
                    Operator::Less => Order::Less,
                    Operator::LessOrEqual => Order::LessOrEqual,
                    Operator::Greater => Order::Greater,
                    _ => Order::GreaterOrEqual,
                };
                match scalar(self)? {
                    Scalar::Number(n) => Some(Comparison::Order(order, Ordered::Number(n))),
                    Scalar::Time(t) => Some(Comparison::Order(order, Ordered::Time(t))),
                    _ => {
                        self.add(&value_path, "must be a number or a time for this operator");
                        None
                    }
                }
            }
            Operator::Contains => match scalar(self)? {
                Scalar::Time(_) => {
                    self.add(&value_path, "must be text, a number or a flag for CONTAINS");
                    None
                }
                value => Some(Comparison::Contains(value)),
            },
            Operator::StartsWith => match scalar(self)? {
                Scalar::Text(text) => Some(Comparison::StartsWith(text)),
                _ => {
                    self.add(&value_path, "must be text for STARTS_WITH");
                    None
                }
            },
            Operator::Exists => Some(Comparison::Exists),
            Operator::In => {
                let path = format!("{path}.values");
                if test.values.is_empty() || test.values.len() > MAX_VALUES {
                    self.add(&path, format!("must hold 1 to {MAX_VALUES} values"));
                    return None;
                }
                let values: Vec<Option<Scalar>> = test
                    .values
                    .iter()
                    .enumerate()
                    .map(
                        |(i, value)| match self.scalar(value, &format!("{path}[{i}]"))? {
                            Scalar::Time(_) => {
                                self.add(
                                    format!("{path}[{i}]"),
                                    "must be text, a number or a flag",
                                );
                                None
                            }
                            value => Some(value),
                        },
                    )
                    .collect();
                values
                    .into_iter()
                    .collect::<Option<_>>()
                    .map(Comparison::In)
            }
        }
    }

    fn scalar(&mut self, value: &pb::Value, path: &str) -> Option<Scalar> {
        use pb::value::Kind;
        match &value.kind {
            None => {
                self.add(path, "must hold text, number, flag, time or days_ago");
                None
            }
            Some(Kind::Text(text)) => {
                if text.chars().count() > MAX_TEXT_CHARS || has_control(text) {
                    self.add(
                        path,
                        format!(
                            "must be at most {MAX_TEXT_CHARS} characters, without control characters"
                        ),
                    );
                    return None;
                }
                Some(Scalar::Text(text.clone()))
            }
            Some(Kind::Number(number)) => {
                if !number.is_finite() {
                    self.add(path, "must be a finite number");
                    return None;
                }
                Some(Scalar::Number(*number))
            }
            Some(Kind::Flag(flag)) => Some(Scalar::Flag(*flag)),
            Some(Kind::Time(time)) => self
                .time(Some(time), path)
                .map(|at| Scalar::Time(TimeRef::At(at))),
            Some(Kind::DaysAgo(days)) => self
                .days(*days, path)
                .map(|days| Scalar::Time(TimeRef::DaysAgo(days))),
        }
    }
}
