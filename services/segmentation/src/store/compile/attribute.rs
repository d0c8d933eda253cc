//! Custom attribute and event property conditions as SQL: the value at a
//! path (`#>`), compared without ever casting a value of another type.

use super::{Compiler, Param};
use crate::domain::rule::*;

impl Compiler {
    pub(super) fn path(&mut self, keys: &[String]) -> String {
        self.param(Param::Texts(keys.to_vec()))
    }

    /// Whether the JSON at `test.path` in `column` passes the comparison;
    /// NULL where it cannot tell (the caller coalesces).
    pub(super) fn attribute(&mut self, column: &str, test: &AttributeTest) -> String {
        let value = format!("({column} #> {})", self.path(&test.path));
        match &test.comparison {
            Comparison::Equals(scalar) => self.equals(&value, scalar),
            Comparison::NotEquals(scalar) => {
                format!("NOT coalesce({}, false)", self.equals(&value, scalar))
            }
            Comparison::Order(order, Ordered::Number(number)) => {
                // The number's shortest exact text: float8 to numeric would
                // keep only 15 digits.
                let number = self.param(Param::Text(json_text(&Scalar::Number(*number))));
                format!(
                    "CASE WHEN jsonb_typeof({value}) = 'number' \
                     THEN ({value} #>> '{{}}')::numeric {} {number}::numeric END",
                    order.symbol()
                )
            }
            Comparison::Order(order, Ordered::Time(time)) => {
                let time = self.param(Param::Time(time.resolve(self.now)));
                format!(
                    "segmentation.attribute_time({value}) {} {time}",
                    order.symbol()
                )
            }
            Comparison::Contains(Scalar::Text(text)) => {
                let text = self.param(Param::Text(text.clone()));
                format!(
                    "CASE jsonb_typeof({value}) \
                     WHEN 'string' THEN strpos({value} #>> '{{}}', {text}) > 0 \
                     WHEN 'array' THEN {value} @> jsonb_build_array({text}) END"
                )
            }
            Comparison::Contains(scalar) => {
                let json = self.json(scalar);
                format!(
                    "CASE WHEN jsonb_typeof({value}) = 'array' \
                     THEN {value} @> jsonb_build_array({json}) END"
                )
            }
            Comparison::StartsWith(prefix) => {
                let prefix = self.param(Param::Text(prefix.clone()));
                format!(
                    "CASE WHEN jsonb_typeof({value}) = 'string' \
                     THEN starts_with({value} #>> '{{}}', {prefix}) END"
                )
            }
            Comparison::Exists => {
                format!("({value} IS NOT NULL AND jsonb_typeof({value}) <> 'null')")
            }
            Comparison::In(scalars) => {
                let texts = scalars.iter().map(json_text).collect();
                let set = self.param(Param::Texts(texts));
                format!("{value} = ANY({set}::jsonb[])")
            }
        }
    }

    fn equals(&mut self, value: &str, scalar: &Scalar) -> String {
        match scalar {
            Scalar::Time(time) => {
                let time = self.param(Param::Time(time.resolve(self.now)));
                format!("segmentation.attribute_time({value}) = {time}")
            }
            other => format!("{value} = {}", self.json(other)),
        }
    }

    /// `scalar` as a jsonb expression.
    fn json(&mut self, scalar: &Scalar) -> String {
        let text = self.param(Param::Text(json_text(scalar)));
        format!("{text}::jsonb")
    }
}

/// The JSON text of a text, number or flag. Times are never compared as
/// JSON (they are read with `attribute_time`); as a fallback they are
/// their RFC 3339 text.
pub(super) fn json_text(scalar: &Scalar) -> String {
    match scalar {
        Scalar::Text(text) => serde_json::Value::String(text.clone()).to_string(),
        Scalar::Number(number) => serde_json::Number::from_f64(*number)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".to_owned()),
        Scalar::Flag(flag) => flag.to_string(),
        Scalar::Time(TimeRef::At(at)) => serde_json::Value::String(at.to_rfc3339()).to_string(),
        Scalar::Time(TimeRef::DaysAgo(days)) => days.to_string(),
    }
}
