//! A contact's fields as stored, and how they are validated from (and
//! turned back into) the API shape.

use chrono::{DateTime, Utc};
use rapport_core::Violations;
use rapport_core::convert::{json_to_struct, to_datetime, to_timestamp};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::{self as pb, ConsentStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::rules;

/// Channels on which consent is recorded.
pub const CONSENT_CHANNELS: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Push];

/// The top-level fields an update mask may name.
pub const UPDATABLE_FIELDS: [&str; 11] = [
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "attributes",
    "tags",
    "lifecycle_stage",
    "consents",
];

/// A contact's own data, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContactFields {
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub locale: String,
    pub time_zone: String,
    pub attributes: Map<String, Json>,
    /// Sorted, without duplicates.
    pub tags: Vec<String>,
    pub lifecycle_stage: LifecycleStage,
    /// Sorted by channel, one per channel.
    pub consents: Vec<ConsentState>,
}

impl ContactFields {
    /// Sets the consent of one channel, replacing what it had.
    pub fn set_consent(&mut self, state: ConsentState) {
        self.consents.retain(|c| c.channel != state.channel);
        self.consents.push(state);
        self.consents.sort_by_key(|c| c.channel);
    }
}

/// A contact as stored: its fields and its bookkeeping.
#[derive(Debug, Clone)]
pub struct StoredContact {
    pub id: Uuid,
    pub fields: ContactFields,
    pub revision: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl StoredContact {
    /// Changes with every write (AIP-154).
    pub fn etag(&self) -> String {
        self.revision.to_string()
    }

    pub fn to_proto(&self) -> pb::Contact {
        let mut contact = pb::Contact {
            id: self.id.to_string(),
            create_time: Some(to_timestamp(self.create_time)),
            update_time: Some(to_timestamp(self.update_time)),
            etag: self.etag(),
            ..Default::default()
        };
        to_proto_fields(&self.fields, &mut contact);
        contact
    }
}

/// Consent on one channel, as stored in the contact's `consents` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    pub channel: i32,
    pub status: i32,
    pub change_time: DateTime<Utc>,
    pub source: String,
}

/// Validates `contact` (as named by `prefix` in violations) into fields.
/// Consents without a change time get `now`.
pub fn validate(
    contact: &pb::Contact,
    prefix: &str,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> ContactFields {
    let field = |name: &str| format!("{prefix}.{name}");
    let optional = |value: &str, name: &str, max: usize, violations: &mut Violations| {
        if value.is_empty() {
            return None;
        }
        if let Err(e) = rules::check_text(value, max) {
            violations.add(field(name), e);
        }
        Some(value.to_owned())
    };
    let text = |value: &str, name: &str, violations: &mut Violations| {
        if let Err(e) = rules::check_text(value, rules::MAX_NAME_LEN) {
            violations.add(field(name), e);
        }
        value.to_owned()
    };

    let external_id = optional(
        &contact.external_id,
        "external_id",
        rules::MAX_EXTERNAL_ID_LEN,
        violations,
    );
    let email = optional(&contact.email, "email", rules::MAX_EMAIL_LEN, violations);
    if let Some(email) = &email
        && let Err(e) = rules::check_email(email)
    {
        violations.add(field("email"), e);
    }
    let phone = (!contact.phone.is_empty()).then(|| contact.phone.clone());
    if let Some(phone) = &phone
        && let Err(e) = rules::check_phone(phone)
    {
        violations.add(field("phone"), e);
    }
    if !contact.locale.is_empty()
        && let Err(e) = rules::check_locale(&contact.locale)
    {
        violations.add(field("locale"), e);
    }
    if !contact.time_zone.is_empty()
        && let Err(e) = rules::check_time_zone(&contact.time_zone)
    {
        violations.add(field("time_zone"), e);
    }

    let attributes = rules::json_object(
        contact.attributes.as_ref(),
        &field("attributes"),
        violations,
    );

    if contact.tags.len() > rules::MAX_TAGS {
        violations.add(field("tags"), "at most 100 tags");
    }
    for (i, tag) in contact.tags.iter().enumerate() {
        if let Err(e) = rules::check_tag(tag) {
            violations.add(format!("{prefix}.tags[{i}]"), e);
        }
    }
    let mut tags = contact.tags.clone();
    tags.sort();
    tags.dedup();

    let lifecycle_stage = LifecycleStage::try_from(contact.lifecycle_stage).unwrap_or_else(|_| {
        violations.add(field("lifecycle_stage"), "is not a known lifecycle stage");
        LifecycleStage::Unspecified
    });

    let consents = validate_consents(&contact.consents, prefix, now, violations);

    ContactFields {
        external_id,
        email,
        phone,
        first_name: text(&contact.first_name, "first_name", violations),
        last_name: text(&contact.last_name, "last_name", violations),
        locale: contact.locale.clone(),
        time_zone: contact.time_zone.clone(),
        attributes,
        tags,
        lifecycle_stage,
        consents,
    }
}

fn validate_consents(
    consents: &[pb::Consent],
    prefix: &str,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Vec<ConsentState> {
    let mut states: Vec<ConsentState> = Vec::with_capacity(consents.len());
    for (i, consent) in consents.iter().enumerate() {
        let field = |name: &str| format!("{prefix}.consents[{i}].{name}");
        if let Some(state) = validate_consent(consent, now, &field, violations) {
            if states.iter().any(|s| s.channel == state.channel) {
                violations.add(field("channel"), "each channel may appear once");
            }
            states.push(state);
        }
    }
    states.sort_by_key(|s| s.channel);
    states
}

/// Validates one consent; `field` names its sub-fields in violations.
pub fn validate_consent(
    consent: &pb::Consent,
    now: DateTime<Utc>,
    field: &dyn Fn(&str) -> String,
    violations: &mut Violations,
) -> Option<ConsentState> {
    let before = violations.len();
    let channel_ok =
        Channel::try_from(consent.channel).is_ok_and(|c| CONSENT_CHANNELS.contains(&c));
    if !channel_ok {
        violations.add(
            field("channel"),
            "consent is kept for CHANNEL_EMAIL, CHANNEL_SMS and CHANNEL_PUSH",
        );
    }
    let status_ok =
        ConsentStatus::try_from(consent.status).is_ok_and(|s| s != ConsentStatus::Unspecified);
    if !status_ok {
        violations.add(
            field("status"),
            "must be UNKNOWN, SUBSCRIBED or UNSUBSCRIBED",
        );
    }
    if let Err(e) = rules::check_text(&consent.source, rules::MAX_SOURCE_LEN) {
        violations.add(field("source"), e);
    }
    let change_time = match &consent.change_time {
        None => now,
        Some(ts) => match to_datetime(ts) {
            Some(time) if time <= now + chrono::Duration::minutes(5) => time,
            Some(_) => {
                violations.add(field("change_time"), "must not be in the future");
                now
            }
            None => {
                violations.add(field("change_time"), "is not a valid timestamp");
                now
            }
        },
    };
    (violations.len() == before).then(|| ConsentState {
        channel: consent.channel,
        status: consent.status,
        change_time,
        source: consent.source.clone(),
    })
}

/// The API shape of stored fields.
fn to_proto_fields(fields: &ContactFields, contact: &mut pb::Contact) {
    contact.external_id = fields.external_id.clone().unwrap_or_default();
    contact.email = fields.email.clone().unwrap_or_default();
    contact.phone = fields.phone.clone().unwrap_or_default();
    contact.first_name.clone_from(&fields.first_name);
    contact.last_name.clone_from(&fields.last_name);
    contact.locale.clone_from(&fields.locale);
    contact.time_zone.clone_from(&fields.time_zone);
    contact.attributes = Some(json_to_struct(&fields.attributes));
    contact.tags.clone_from(&fields.tags);
    contact.lifecycle_stage = fields.lifecycle_stage as i32;
    contact.consents = fields
        .consents
        .iter()
        .map(|c| pb::Consent {
            channel: c.channel,
            status: c.status,
            change_time: Some(to_timestamp(c.change_time)),
            source: c.source.clone(),
        })
        .collect();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A consent state on `channel` changed at `at` (seconds) from source `s<at>`.
    pub(crate) fn consent(channel: Channel, status: ConsentStatus, at: i64) -> ConsentState {
        ConsentState {
            channel: channel as i32,
            status: status as i32,
            change_time: DateTime::from_timestamp(at, 0).unwrap(),
            source: format!("s{at}"),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn validation_names_each_bad_field_and_normalizes_tags() {
        let contact = pb::Contact {
            email: "not-an-email".into(),
            phone: "0123".into(),
            time_zone: "Mars/Base".into(),
            tags: vec!["b".into(), "a".into(), "b".into()],
            lifecycle_stage: 42,
            consents: vec![pb::Consent {
                channel: Channel::Web as i32,
                status: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut violations = Violations::default();
        let fields = validate(&contact, "contact", now(), &mut violations);
        let message = violations.check().unwrap_err().to_string();
        for field in [
            "contact.email",
            "contact.phone",
            "contact.time_zone",
            "contact.lifecycle_stage",
            "contact.consents[0].channel",
        ] {
            assert!(message.contains(field), "{field} missing from {message}");
        }
        assert_eq!(fields.tags, ["a", "b"]);
    }
}
