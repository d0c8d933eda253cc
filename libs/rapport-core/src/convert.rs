//! Conversions between protobuf well-known types and the types stored in
//! PostgreSQL: `Struct` <-> JSON objects, `Timestamp` <-> `DateTime<Utc>`.

use chrono::{DateTime, Datelike as _, Utc};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

/// Deepest nesting accepted in a `Struct`, to bound recursion.
pub const MAX_STRUCT_DEPTH: usize = 16;

/// Why a `Struct` cannot be stored as JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum StructError {
    NonFiniteNumber,
    TooDeep,
}

impl std::fmt::Display for StructError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NonFiniteNumber => write!(f, "numbers must be finite"),
            Self::TooDeep => write!(f, "must not nest deeper than {MAX_STRUCT_DEPTH} levels"),
        }
    }
}

pub fn struct_to_json(value: &Struct) -> Result<Map<String, Json>, StructError> {
    fields_to_json(value, 0)
}

fn fields_to_json(value: &Struct, depth: usize) -> Result<Map<String, Json>, StructError> {
    if depth >= MAX_STRUCT_DEPTH {
        return Err(StructError::TooDeep);
    }
    value
        .fields
        .iter()
        .map(|(key, value)| Ok((key.clone(), value_to_json(value, depth + 1)?)))
        .collect()
}

fn value_to_json(value: &Value, depth: usize) -> Result<Json, StructError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            Json::Number(Number::from_f64(*n).ok_or(StructError::NonFiniteNumber)?)
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::StructValue(s)) => Json::Object(fields_to_json(s, depth)?),
        Some(Kind::ListValue(list)) => {
            if depth >= MAX_STRUCT_DEPTH {
                return Err(StructError::TooDeep);
            }
            Json::Array(
                list.values
                    .iter()
                    .map(|v| value_to_json(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

pub fn json_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// The instant of `timestamp`, or `None` when it is out of range: years 1
/// to 9999, as google.protobuf.Timestamp defines (and PostgreSQL stores).
pub fn to_datetime(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
        .filter(|time| (1..=9999).contains(&time.year()))
}

/// An optional request time: `None` when absent, and a violation naming
/// `field` when it is out of range.
pub fn optional_datetime(
    timestamp: Option<&Timestamp>,
    field: &str,
    violations: &mut crate::Violations,
) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    let time = to_datetime(timestamp);
    if time.is_none() {
        violations.add(field, "is not a valid timestamp");
    }
    time
}

pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_round_trips_through_json() {
        let json = serde_json::json!({"plan": "pro", "seats": 3.0, "vip": true, "tags": ["a", {"b": null}]});
        let map = json.as_object().unwrap();
        assert_eq!(&struct_to_json(&json_to_struct(map)).unwrap(), map);
    }

    #[test]
    fn non_finite_numbers_and_deep_nesting_are_refused() {
        let nan = Struct {
            fields: [(
                "x".to_owned(),
                Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        assert_eq!(struct_to_json(&nan), Err(StructError::NonFiniteNumber));

        let mut deep = Struct::default();
        for _ in 0..=MAX_STRUCT_DEPTH {
            deep = Struct {
                fields: [(
                    "x".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(deep)),
                    },
                )]
                .into(),
            };
        }
        assert_eq!(struct_to_json(&deep), Err(StructError::TooDeep));
    }

    #[test]
    fn timestamps_convert_both_ways_and_refuse_bad_nanos() {
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000,
        };
        assert_eq!(to_timestamp(to_datetime(&ts).unwrap()), ts);
        assert_eq!(
            to_datetime(&Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }
}
