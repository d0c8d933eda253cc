//! Custom attributes and event properties as the set-based SQL reads
//! them: values found by path as `#>` finds them, compared as `jsonb`
//! compares (numbers by value, never across types), and moments in the
//! grammar `segmentation.attribute_time` reads.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::rule::*;

/// The JSON at `keys` under `root`, as `#>` finds it: object members by
/// key, array elements by index (negative from the end).
fn at_path<'a>(root: Option<&'a Value>, keys: &[String]) -> Option<&'a Value> {
    keys.iter().try_fold(root?, |value, key| match value {
        Value::Object(members) => members.get(key),
        Value::Array(items) => {
            let index: i64 = key.parse().ok()?;
            let len = i64::try_from(items.len()).ok()?;
            let index = if index < 0 { len + index } else { index };
            items.get(usize::try_from(index).ok()?)
        }
        _ => None,
    })
}

/// Whether the attribute test passes on the JSON under `root`; what the
/// SQL cannot tell (a missing value, another type) does not pass.
pub fn attribute_holds(root: Option<&Value>, test: &AttributeTest, now: DateTime<Utc>) -> bool {
    let value = at_path(root, &test.path);
    match &test.comparison {
        Comparison::Equals(scalar) => value.is_some_and(|value| equals(value, scalar, now)),
        Comparison::NotEquals(scalar) => !value.is_some_and(|value| equals(value, scalar, now)),
        Comparison::Order(order, Ordered::Number(threshold)) => match value {
            Some(Value::Number(number)) => number
                .as_f64()
                .is_some_and(|number| ordered(*order, number, *threshold)),
            _ => false,
        },
        Comparison::Order(order, Ordered::Time(time)) => value
            .and_then(attribute_time)
            .is_some_and(|at| ordered(*order, at, time.resolve(now))),
        Comparison::Contains(Scalar::Text(text)) => match value {
            Some(Value::String(string)) => string.contains(text.as_str()),
            Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(text)),
            _ => false,
        },
        Comparison::Contains(scalar) => match value {
            Some(Value::Array(items)) => {
                let wanted = scalar_json(scalar);
                items.iter().any(|item| json_equal(item, &wanted))
            }
            _ => false,
        },
        Comparison::StartsWith(prefix) => {
            matches!(value, Some(Value::String(string)) if string.starts_with(prefix.as_str()))
        }
        Comparison::Exists => value.is_some_and(|value| !value.is_null()),
        Comparison::In(scalars) => value.is_some_and(|value| {
            scalars
                .iter()
                .any(|scalar| json_equal(value, &scalar_json(scalar)))
        }),
    }
}

fn ordered<T: PartialOrd>(order: Order, value: T, threshold: T) -> bool {
    match order {
        Order::Less => value < threshold,
        Order::LessOrEqual => value <= threshold,
        Order::Greater => value > threshold,
        Order::GreaterOrEqual => value >= threshold,
    }
}

fn equals(value: &Value, scalar: &Scalar, now: DateTime<Utc>) -> bool {
    match scalar {
        Scalar::Time(time) => attribute_time(value) == Some(time.resolve(now)),
        other => json_equal(value, &scalar_json(other)),
    }
}

/// A scalar as the JSON the SQL binds for it.
fn scalar_json(scalar: &Scalar) -> Value {
    match scalar {
        Scalar::Text(text) => Value::String(text.clone()),
        Scalar::Number(number) => {
            serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
        }
        Scalar::Flag(flag) => Value::Bool(*flag),
        Scalar::Time(TimeRef::At(at)) => Value::String(at.to_rfc3339()),
        Scalar::Time(TimeRef::DaysAgo(days)) => Value::from(*days),
    }
}

/// `jsonb` equality: numbers by value, the rest structurally.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

/// A JSON string read as a moment, in the grammar
/// `segmentation.attribute_time` reads (migration 0003): a date, or a date
/// and time (hours 00 to 23) with up to six fraction digits and an
/// optional offset (Z or +hh:mm); without an offset it is UTC.
pub fn attribute_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    if !in_time_grammar(text.as_bytes()) {
        return None;
    }
    if text.len() == 10 {
        return NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|date| date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let normalized = format!("{}T{}", &text[..10], &text[11..]).to_ascii_uppercase();
    if let Ok(at) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc())
}

fn in_time_grammar(b: &[u8]) -> bool {
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let date = digits(0, 4) && b.get(4) == Some(&b'-') && digits(5, 7) && b.get(7) == Some(&b'-');
    if !(date && digits(8, 10)) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    let time = matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11, 13)
        && b[11..13] <= b"23"[..]
        && b.get(13) == Some(&b':')
        && digits(14, 16)
        && b[14] <= b'5'
        && b.get(16) == Some(&b':')
        && digits(17, 19)
        && b[17] <= b'5';
    if !time {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let length = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&length) {
            return false;
        }
        rest = &fraction[length..];
    }
    match rest {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone as _};
    use serde_json::json;

    use super::*;

    #[test]
    fn attribute_times_start_with_a_date() {
        let at = |text: &str| attribute_time(&json!(text));
        let midnight = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        assert_eq!(at("2026-05-01"), Some(midnight));
        assert_eq!(at("2026-05-01T00:00:00Z"), Some(midnight));
        assert_eq!(at("2026-05-01 02:00:00+02:00"), Some(midnight));
        assert_eq!(at("2026-05-01T00:00:00"), Some(midnight));
        assert_eq!(
            at("2026-05-01t00:00:00.5z"),
            Some(midnight + Duration::milliseconds(500))
        );
        // Outside the grammar both evaluators share.
        assert_eq!(at("May 1 2026"), None);
        assert_eq!(at("2026-05-01T10:00"), None);
        assert_eq!(at("2026-05-01T10:00:00+0200"), None);
        assert_eq!(at("2026-05-01T24:00:00"), None);
        assert_eq!(at("2026-05-01T10:00:00.1234567Z"), None);
        assert_eq!(at("2026-02-30"), None);
        assert_eq!(attribute_time(&json!(20260501)), None);
    }
}
