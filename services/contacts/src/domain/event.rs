//! Interaction events of the timeline: validation of what RecordEvents takes.

use chrono::{DateTime, Utc};
use rapport_core::Violations;
use rapport_core::convert::to_datetime;
use rapport_proto::common::v1::{Channel, Money};
use rapport_proto::contacts::v1 as pb;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::rules;

/// Most events one RecordEvents call takes.
pub const MAX_EVENTS_PER_CALL: usize = 1000;

/// How far ahead of the server's clock an event may claim to happen.
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::days(1);

/// Which contact an event is about, as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRef {
    Id(Uuid),
    ExternalId(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub contact: ContactRef,
    pub client_event_id: Option<String>,
    pub kind: String,
    pub channel: Channel,
    pub occur_time: DateTime<Utc>,
    pub properties: Map<String, Json>,
    pub revenue: Option<Money>,
}

pub fn validate_events(
    events: &[pb::Event],
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Vec<NewEvent> {
    if events.is_empty() {
        violations.add("events", "must hold at least one event");
    }
    if events.len() > MAX_EVENTS_PER_CALL {
        violations.add(
            "events",
            format!("at most {MAX_EVENTS_PER_CALL} events per call"),
        );
        return Vec::new();
    }
    events
        .iter()
        .enumerate()
        .filter_map(|(i, event)| validate_event(event, &format!("events[{i}]"), now, violations))
        .collect()
}

fn validate_event(
    event: &pb::Event,
    prefix: &str,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Option<NewEvent> {
    let before = violations.len();
    let field = |name: &str| format!("{prefix}.{name}");

    let contact = match (
        event.contact_id.is_empty(),
        event.contact_external_id.is_empty(),
    ) {
        (false, true) => match Uuid::parse_str(&event.contact_id) {
            Ok(id) => Some(ContactRef::Id(id)),
            Err(_) => {
                violations.add(field("contact_id"), "must be a contact id (UUID)");
                None
            }
        },
        (true, false) => {
            if let Err(e) =
                rules::check_text(&event.contact_external_id, rules::MAX_EXTERNAL_ID_LEN)
            {
                violations.add(field("contact_external_id"), e);
            }
            Some(ContactRef::ExternalId(event.contact_external_id.clone()))
        }
        (true, true) => {
            violations.add(field("contact_id"), "set contact_id or contact_external_id");
            None
        }
        (false, false) => {
            violations.add(
                field("contact_id"),
                "set only one of contact_id and contact_external_id",
            );
            None
        }
    };

    let client_event_id =
        (!event.client_event_id.is_empty()).then(|| event.client_event_id.clone());
    if let Some(id) = &client_event_id
        && let Err(e) = rules::check_text(id, rules::MAX_CLIENT_EVENT_ID_LEN)
    {
        violations.add(field("client_event_id"), e);
    }
    if let Err(e) = rules::check_event_type(&event.r#type) {
        violations.add(field("type"), e);
    }
    let channel = match Channel::try_from(event.channel) {
        Ok(channel) if channel != Channel::Unspecified => channel,
        _ => {
            violations.add(
                field("channel"),
                "must be a known channel such as CHANNEL_EMAIL",
            );
            Channel::Unspecified
        }
    };
    let occur_time = match event.occur_time.as_ref().map(to_datetime) {
        None => {
            violations.add(field("occur_time"), "is required");
            now
        }
        Some(None) => {
            violations.add(field("occur_time"), "is not a valid timestamp");
            now
        }
        Some(Some(time)) if time > now + MAX_CLOCK_SKEW => {
            violations.add(
                field("occur_time"),
                "must not be more than a day in the future",
            );
            now
        }
        Some(Some(time)) => time,
    };
    let properties =
        rules::json_object(event.properties.as_ref(), &field("properties"), violations);
    if let Some(money) = &event.revenue {
        validate_money(money, &field("revenue"), violations);
    }

    (violations.len() == before).then(|| NewEvent {
        contact: contact.expect("no violation means the contact was named"),
        client_event_id,
        kind: event.r#type.clone(),
        channel,
        occur_time,
        properties,
        revenue: event.revenue.clone(),
    })
}

fn validate_money(money: &Money, prefix: &str, violations: &mut Violations) {
    if let Err(e) = rules::check_currency(&money.currency_code) {
        violations.add(format!("{prefix}.currency_code"), e);
    }
    if !(-999_999_999..=999_999_999).contains(&money.nanos) {
        violations.add(
            format!("{prefix}.nanos"),
            "must be between -999999999 and 999999999",
        );
    } else if (money.units > 0 && money.nanos < 0) || (money.units < 0 && money.nanos > 0) {
        violations.add(
            format!("{prefix}.nanos"),
            "must have the same sign as units",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn event() -> pb::Event {
        pb::Event {
            contact_id: Uuid::now_v7().to_string(),
            r#type: "order.placed".into(),
            channel: Channel::Web as i32,
            occur_time: Some(Timestamp {
                seconds: 1_699_999_000,
                nanos: 0,
            }),
            revenue: Some(Money {
                currency_code: "EUR".into(),
                units: 12,
                nanos: 500_000_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_event_passes() {
        let mut violations = Violations::default();
        let events = validate_events(&[event()], now(), &mut violations);
        assert!(violations.is_empty());
        assert_eq!(events[0].kind, "order.placed");
    }

    #[test]
    fn each_bad_field_is_named_with_its_index() {
        let bad = pb::Event {
            contact_id: "nope".into(),
            r#type: "Order Placed".into(),
            channel: 0,
            occur_time: Some(Timestamp {
                seconds: 1_700_000_000 + 2 * 86_400,
                nanos: 0,
            }),
            revenue: Some(Money {
                currency_code: "XXY".into(),
                units: 1,
                nanos: -5,
            }),
            ..Default::default()
        };
        let mut violations = Violations::default();
        let events = validate_events(&[event(), bad], now(), &mut violations);
        assert_eq!(events.len(), 1);
        let message = violations.check().unwrap_err().to_string();
        for field in [
            "events[1].contact_id",
            "events[1].type",
            "events[1].channel",
            "events[1].occur_time",
            "events[1].revenue.currency_code",
            "events[1].revenue.nanos",
        ] {
            assert!(message.contains(field), "{field} missing from {message}");
        }
    }

    #[test]
    fn batch_limits_apply() {
        let mut violations = Violations::default();
        validate_events(&[], now(), &mut violations);
        assert!(!violations.is_empty());
        let mut violations = Violations::default();
        validate_events(
            &vec![event(); MAX_EVENTS_PER_CALL + 1],
            now(),
            &mut violations,
        );
        assert!(!violations.is_empty());
    }
}
