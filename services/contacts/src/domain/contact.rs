//! A contact's fields as stored, how they are validated from the API shape,
//! how an update mask or a merge produces new fields, and which history
//! entries a change leaves.

use chrono::{DateTime, Utc};
use rapport_core::Violations;
use rapport_core::convert::{json_to_struct, to_datetime, to_timestamp};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::{self as pb, ConsentStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

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

/// Consent on one channel, as stored in the contact's `consents` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    pub channel: i32,
    pub status: i32,
    pub change_time: DateTime<Utc>,
    pub source: String,
}

/// A lifecycle stage change a write causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleTransition {
    pub from: LifecycleStage,
    pub to: LifecycleStage,
}

/// A consent change a write causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentTransition {
    pub channel: i32,
    pub from: i32,
    pub to: i32,
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

/// Checks the paths of an update mask. An empty mask means every field
/// that is set in the request (AIP-134); `*` means every field.
pub fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    patch: &pb::Contact,
    violations: &mut Violations,
) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return populated_fields(patch);
    }
    if paths == ["*"] {
        return UPDATABLE_FIELDS.iter().map(|p| (*p).to_owned()).collect();
    }
    for (i, path) in paths.iter().enumerate() {
        if !UPDATABLE_FIELDS.contains(&path.as_str()) {
            violations.add(
                format!("update_mask.paths[{i}]"),
                format!(
                    "{path:?} cannot be updated; updatable fields: {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            );
        }
    }
    paths
}

/// The updatable fields that are set (non-empty) in `contact`.
pub fn populated_fields(contact: &pb::Contact) -> Vec<String> {
    let set = [
        !contact.external_id.is_empty(),
        !contact.email.is_empty(),
        !contact.phone.is_empty(),
        !contact.first_name.is_empty(),
        !contact.last_name.is_empty(),
        !contact.locale.is_empty(),
        !contact.time_zone.is_empty(),
        contact
            .attributes
            .as_ref()
            .is_some_and(|a| !a.fields.is_empty()),
        !contact.tags.is_empty(),
        contact.lifecycle_stage != 0,
        !contact.consents.is_empty(),
    ];
    UPDATABLE_FIELDS
        .iter()
        .zip(set)
        .filter(|(_, set)| *set)
        .map(|(path, _)| (*path).to_owned())
        .collect()
}

/// Copies the fields named by `paths` from `patch` into `target`.
pub fn apply_paths(target: &mut pb::Contact, patch: &pb::Contact, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "external_id" => target.external_id.clone_from(&patch.external_id),
            "email" => target.email.clone_from(&patch.email),
            "phone" => target.phone.clone_from(&patch.phone),
            "first_name" => target.first_name.clone_from(&patch.first_name),
            "last_name" => target.last_name.clone_from(&patch.last_name),
            "locale" => target.locale.clone_from(&patch.locale),
            "time_zone" => target.time_zone.clone_from(&patch.time_zone),
            "attributes" => target.attributes.clone_from(&patch.attributes),
            "tags" => target.tags.clone_from(&patch.tags),
            "lifecycle_stage" => target.lifecycle_stage = patch.lifecycle_stage,
            "consents" => target.consents.clone_from(&patch.consents),
            _ => {}
        }
    }
}

/// The upsert rule: fields set in `patch` overwrite, empty ones keep the
/// stored value, attributes merge key by key, and consents merge by channel.
pub fn upsert_onto(target: &mut pb::Contact, patch: &pb::Contact) {
    let mut patch = patch.clone();
    if let (Some(stored), Some(new)) = (&target.attributes, &mut patch.attributes) {
        let mut merged = stored.fields.clone();
        merged.extend(std::mem::take(&mut new.fields));
        new.fields = merged;
    }
    if !patch.consents.is_empty() {
        let mut merged: Vec<pb::Consent> = target
            .consents
            .iter()
            .filter(|stored| !patch.consents.iter().any(|c| c.channel == stored.channel))
            .cloned()
            .collect();
        merged.append(&mut patch.consents);
        patch.consents = merged;
    }
    apply_paths(target, &patch, &populated_fields(&patch));
}

/// What a merge leaves on the survivor: its own values first, the
/// duplicate's where the survivor has none; attributes the survivor lacks;
/// the union of tags; the further lifecycle stage; and per channel the
/// consent that changed last.
pub fn merge(survivor: &ContactFields, duplicate: &ContactFields) -> ContactFields {
    let pick = |own: &String, other: &String| {
        if own.is_empty() {
            other.clone()
        } else {
            own.clone()
        }
    };
    let mut attributes = duplicate.attributes.clone();
    attributes.extend(survivor.attributes.clone());
    let mut tags: Vec<String> = survivor
        .tags
        .iter()
        .chain(&duplicate.tags)
        .cloned()
        .collect();
    tags.sort();
    tags.dedup();
    let mut consents = survivor.consents.clone();
    for theirs in &duplicate.consents {
        match consents.iter_mut().find(|c| c.channel == theirs.channel) {
            Some(ours) if ours.change_time >= theirs.change_time => {}
            Some(ours) => *ours = theirs.clone(),
            None => consents.push(theirs.clone()),
        }
    }
    consents.sort_by_key(|c| c.channel);
    ContactFields {
        external_id: survivor
            .external_id
            .clone()
            .or_else(|| duplicate.external_id.clone()),
        email: survivor.email.clone().or_else(|| duplicate.email.clone()),
        phone: survivor.phone.clone().or_else(|| duplicate.phone.clone()),
        first_name: pick(&survivor.first_name, &duplicate.first_name),
        last_name: pick(&survivor.last_name, &duplicate.last_name),
        locale: pick(&survivor.locale, &duplicate.locale),
        time_zone: pick(&survivor.time_zone, &duplicate.time_zone),
        attributes,
        tags,
        lifecycle_stage: survivor.lifecycle_stage.max(duplicate.lifecycle_stage),
        consents,
    }
}

/// The history entries of going from `old` (none for a new contact) to
/// `new`. A consent whose status does not change keeps its original time
/// and source, so "when" always means when the status took its value.
pub fn transitions(
    old: Option<&ContactFields>,
    new: &mut ContactFields,
    source: &str,
) -> (Option<LifecycleTransition>, Vec<ConsentTransition>) {
    let old_stage = old.map_or(LifecycleStage::Unspecified, |o| o.lifecycle_stage);
    let lifecycle = (old_stage != new.lifecycle_stage).then_some(LifecycleTransition {
        from: old_stage,
        to: new.lifecycle_stage,
    });
    let mut consent_changes = Vec::new();
    for state in &mut new.consents {
        let previous = old.and_then(|o| o.consents.iter().find(|c| c.channel == state.channel));
        match previous {
            Some(previous) if previous.status == state.status => *state = previous.clone(),
            _ => {
                if state.source.is_empty() {
                    state.source = source.to_owned();
                }
                consent_changes.push(ConsentTransition {
                    channel: state.channel,
                    from: previous.map_or(ConsentStatus::Unspecified as i32, |p| p.status),
                    to: state.status,
                    change_time: state.change_time,
                    source: state.source.clone(),
                });
            }
        }
    }
    (lifecycle, consent_changes)
}

/// The API shape of stored fields.
pub fn to_proto_fields(fields: &ContactFields, contact: &mut pb::Contact) {
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
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn consent(channel: Channel, status: ConsentStatus, at: i64) -> ConsentState {
        ConsentState {
            channel: channel as i32,
            status: status as i32,
            change_time: DateTime::from_timestamp(at, 0).unwrap(),
            source: format!("s{at}"),
        }
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

    #[test]
    fn unknown_mask_path_is_a_violation_and_empty_mask_means_populated_fields() {
        let patch = pb::Contact {
            first_name: "Ana".into(),
            tags: vec!["x".into()],
            ..Default::default()
        };
        let mut violations = Violations::default();
        assert_eq!(
            mask_paths(None, &patch, &mut violations),
            ["first_name", "tags"]
        );
        let mask = prost_types::FieldMask {
            paths: vec!["id".into()],
        };
        mask_paths(Some(&mask), &patch, &mut violations);
        assert!(
            violations
                .check()
                .unwrap_err()
                .to_string()
                .contains("update_mask.paths[0]")
        );
    }

    #[test]
    fn upsert_keeps_unset_fields_and_merges_attributes() {
        let stored_attrs = json_to_struct(
            serde_json::json!({"plan": "free", "seats": 1.0})
                .as_object()
                .unwrap(),
        );
        let mut target = pb::Contact {
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            attributes: Some(stored_attrs),
            ..Default::default()
        };
        let patch_attrs = json_to_struct(serde_json::json!({"plan": "pro"}).as_object().unwrap());
        let patch = pb::Contact {
            first_name: "Anna".into(),
            attributes: Some(patch_attrs),
            ..Default::default()
        };
        upsert_onto(&mut target, &patch);
        assert_eq!(target.first_name, "Anna");
        assert_eq!(target.last_name, "Lima");
        let attrs =
            rapport_core::convert::struct_to_json(target.attributes.as_ref().unwrap()).unwrap();
        assert_eq!(
            serde_json::Value::Object(attrs),
            serde_json::json!({"plan": "pro", "seats": 1.0})
        );
    }

    #[test]
    fn merge_prefers_survivor_fills_gaps_and_takes_newest_consent() {
        let survivor = ContactFields {
            email: Some("ana@example.com".into()),
            first_name: "Ana".into(),
            attributes: serde_json::json!({"plan": "pro"})
                .as_object()
                .unwrap()
                .clone(),
            tags: vec!["vip".into()],
            lifecycle_stage: LifecycleStage::Education,
            consents: vec![consent(Channel::Email, ConsentStatus::Subscribed, 100)],
            ..Default::default()
        };
        let duplicate = ContactFields {
            email: Some("other@example.com".into()),
            phone: Some("+442071838750".into()),
            first_name: "Anna".into(),
            last_name: "Lima".into(),
            attributes: serde_json::json!({"plan": "free", "city": "Porto"})
                .as_object()
                .unwrap()
                .clone(),
            tags: vec!["beta".into(), "vip".into()],
            lifecycle_stage: LifecycleStage::Purchase,
            consents: vec![
                consent(Channel::Email, ConsentStatus::Unsubscribed, 200),
                consent(Channel::Sms, ConsentStatus::Subscribed, 50),
            ],
            ..Default::default()
        };
        let merged = merge(&survivor, &duplicate);
        assert_eq!(merged.email.as_deref(), Some("ana@example.com"));
        assert_eq!(merged.phone.as_deref(), Some("+442071838750"));
        assert_eq!(merged.first_name, "Ana");
        assert_eq!(merged.last_name, "Lima");
        assert_eq!(
            serde_json::Value::Object(merged.attributes),
            serde_json::json!({"plan": "pro", "city": "Porto"})
        );
        assert_eq!(merged.tags, ["beta", "vip"]);
        assert_eq!(merged.lifecycle_stage, LifecycleStage::Purchase);
        assert_eq!(
            merged.consents,
            [
                consent(Channel::Email, ConsentStatus::Unsubscribed, 200),
                consent(Channel::Sms, ConsentStatus::Subscribed, 50),
            ]
        );
    }

    #[test]
    fn transitions_record_only_real_changes() {
        let old = ContactFields {
            lifecycle_stage: LifecycleStage::Education,
            consents: vec![consent(Channel::Email, ConsentStatus::Subscribed, 100)],
            ..Default::default()
        };
        // Same email status with a newer time: no entry, original time kept.
        let mut new = ContactFields {
            lifecycle_stage: LifecycleStage::Purchase,
            consents: vec![
                consent(Channel::Email, ConsentStatus::Subscribed, 300),
                ConsentState {
                    source: String::new(),
                    ..consent(Channel::Push, ConsentStatus::Unsubscribed, 300)
                },
            ],
            ..Default::default()
        };
        let (lifecycle, consents) = transitions(Some(&old), &mut new, "api");
        assert_eq!(
            lifecycle,
            Some(LifecycleTransition {
                from: LifecycleStage::Education,
                to: LifecycleStage::Purchase
            })
        );
        assert_eq!(consents.len(), 1);
        assert_eq!(consents[0].channel, Channel::Push as i32);
        assert_eq!(consents[0].from, ConsentStatus::Unspecified as i32);
        assert_eq!(consents[0].source, "api");
        assert_eq!(
            new.consents[0],
            consent(Channel::Email, ConsentStatus::Subscribed, 100)
        );

        let mut same = old.clone();
        assert_eq!(transitions(Some(&old), &mut same, "api"), (None, vec![]));
    }
}
