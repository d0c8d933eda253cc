//! What segmentation keeps of a contact and of its events: the fields the
//! rules read, in the shapes the projections store.

use chrono::{DateTime, Utc};
use rapport_core::convert::{struct_to_json, to_datetime};
use rapport_proto::common::v1::{Channel, Money};
use rapport_proto::contacts::v1::{Contact, Event};
use uuid::Uuid;

/// The number of channel slots in a profile's consents: one per
/// `rapport.common.v1.Channel` value from 1, as PostgreSQL arrays count
/// from 1 (`consents[channel]`).
const CHANNEL_SLOTS: usize = Channel::Social as usize;

/// A contact's profile row.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub contact_id: Uuid,
    pub email_domain: String,
    pub locale: String,
    pub time_zone: String,
    pub create_time: DateTime<Utc>,
    /// JSON text of the custom attributes.
    pub attributes: String,
    /// JSON text of the tags (a list).
    pub tags: String,
    pub stage: i16,
    /// `ConsentState` by channel, channel 1 first (1, UNKNOWN, where never
    /// given).
    pub consents: Vec<i16>,
}

impl Profile {
    pub fn from_contact(contact: &Contact) -> anyhow::Result<Self> {
        let attributes = match &contact.attributes {
            Some(attributes) => serde_json::Value::Object(
                struct_to_json(attributes).map_err(|e| anyhow::anyhow!("attributes: {e}"))?,
            ),
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        let mut consents = vec![1_i16; CHANNEL_SLOTS];
        for consent in &contact.consents {
            if let Some(slot) = usize::try_from(consent.channel)
                .ok()
                .and_then(|channel| channel.checked_sub(1))
                .and_then(|index| consents.get_mut(index))
            {
                *slot = i16::try_from(consent.status).unwrap_or(1).max(1);
            }
        }
        Ok(Profile {
            contact_id: Uuid::parse_str(&contact.id)?,
            email_domain: email_domain(&contact.email),
            locale: contact.locale.clone(),
            time_zone: contact.time_zone.clone(),
            create_time: contact
                .create_time
                .as_ref()
                .and_then(to_datetime)
                .unwrap_or_default(),
            attributes: attributes.to_string(),
            tags: serde_json::Value::from(contact.tags.clone()).to_string(),
            stage: i16::try_from(contact.lifecycle_stage).unwrap_or_default(),
            consents,
        })
    }
}

/// The lower-cased domain of an address; "" without one.
pub fn email_domain(email: &str) -> String {
    email
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_lowercase())
        .unwrap_or_default()
}

/// An event's row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: Uuid,
    pub contact_id: Uuid,
    pub event_type: String,
    pub channel: i16,
    pub occur_time: DateTime<Utc>,
    /// JSON text of the properties; `None` without any.
    pub properties: Option<String>,
    pub currency: Option<String>,
    /// Decimal text of the revenue, exact.
    pub revenue: Option<String>,
}

impl EventRow {
    pub fn from_event(event: &Event) -> anyhow::Result<Self> {
        let properties = match &event.properties {
            Some(properties) if !properties.fields.is_empty() => Some(
                serde_json::Value::Object(
                    struct_to_json(properties).map_err(|e| anyhow::anyhow!("properties: {e}"))?,
                )
                .to_string(),
            ),
            _ => None,
        };
        let revenue = event
            .revenue
            .as_ref()
            .filter(|money| !money.currency_code.is_empty());
        Ok(EventRow {
            event_id: Uuid::parse_str(&event.id)?,
            contact_id: Uuid::parse_str(&event.contact_id)?,
            event_type: event.r#type.clone(),
            channel: i16::try_from(event.channel).unwrap_or_default(),
            occur_time: event
                .occur_time
                .as_ref()
                .and_then(to_datetime)
                .unwrap_or_default(),
            properties,
            currency: revenue.map(|money| money.currency_code.to_ascii_uppercase()),
            revenue: revenue.map(decimal),
        })
    }
}

/// `units` and `nanos` (of the same sign) as exact decimal text.
pub fn decimal(money: &Money) -> String {
    if money.nanos == 0 {
        return money.units.to_string();
    }
    let negative = money.units < 0 || money.nanos < 0;
    let fraction = format!("{:09}", money.nanos.unsigned_abs());
    format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        money.units.unsigned_abs(),
        fraction.trim_end_matches('0')
    )
}

/// The `ScoreKind` a feedback question kind counts as, if any: NPS, CSAT
/// and CES (`rapport.feedback.v1.QuestionKind` 1, 2, 3) keep their numbers.
pub fn score_kind(question_kind: i32) -> Option<i16> {
    matches!(question_kind, 1..=3).then(|| question_kind as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_decimal_text() {
        let money = |units, nanos| Money {
            currency_code: "EUR".to_owned(),
            units,
            nanos,
        };
        assert_eq!(decimal(&money(12, 0)), "12");
        assert_eq!(decimal(&money(12, 500_000_000)), "12.5");
        assert_eq!(decimal(&money(0, 1)), "0.000000001");
        assert_eq!(decimal(&money(-3, -250_000_000)), "-3.25");
        assert_eq!(decimal(&money(0, -750_000_000)), "-0.75");
    }

    #[test]
    fn the_email_domain_is_lower_case_after_the_last_at() {
        assert_eq!(email_domain("Ann@Example.COM"), "example.com");
        assert_eq!(email_domain("\"a@b\"@corp.io"), "corp.io");
        assert_eq!(email_domain(""), "");
    }

    #[test]
    fn consents_fill_their_channel_slots_and_default_to_unknown() {
        let contact = Contact {
            id: Uuid::from_u128(1).to_string(),
            consents: vec![rapport_proto::contacts::v1::Consent {
                channel: Channel::Sms as i32,
                status: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let profile = Profile::from_contact(&contact).unwrap();
        assert_eq!(profile.consents, vec![1, 3, 1, 1, 1, 1, 1, 1]);
        assert_eq!(profile.attributes, "{}");
        assert_eq!(profile.tags, "[]");
    }
}
