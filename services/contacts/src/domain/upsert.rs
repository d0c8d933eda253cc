//! BatchUpsertContacts' rules: which stored contact each item updates
//! (matched by external id, else by email), that no two items name or
//! match the same contact, and how an item lands on what is stored.

use std::collections::HashMap;

use rapport_core::Violations;
use rapport_core::api::field_mask;
use rapport_proto::contacts::v1 as pb;

use super::contact::{self, StoredContact, UPDATABLE_FIELDS};

/// Most contacts one BatchUpsertContacts call takes.
pub const MAX_UPSERT_BATCH: usize = 1000;

/// The keys a valid batch matches on: its external ids and lower-cased
/// emails, each unique within the batch.
#[derive(Debug, Default)]
pub struct BatchKeys {
    pub external_ids: Vec<String>,
    pub emails: Vec<String>,
}

/// Checks a batch before anything is read: its size, each item (as
/// `contacts[i]`), a key on every item, and no key twice.
pub fn check_batch(
    items: &[pb::Contact],
    now: chrono::DateTime<chrono::Utc>,
    violations: &mut Violations,
) -> BatchKeys {
    if items.is_empty() {
        violations.add("contacts", "must hold at least one contact");
    }
    if items.len() > MAX_UPSERT_BATCH {
        violations.add(
            "contacts",
            format!("at most {MAX_UPSERT_BATCH} contacts per call"),
        );
        return BatchKeys::default();
    }
    let mut seen_external = HashMap::new();
    let mut seen_email = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("contacts[{i}]");
        contact::validate(item, &prefix, now, violations);
        if item.external_id.is_empty() && item.email.is_empty() {
            violations.add(
                format!("{prefix}.external_id"),
                "set external_id or email to match on",
            );
        }
        if !item.external_id.is_empty()
            && let Some(first) = seen_external.insert(item.external_id.clone(), i)
        {
            violations.add(
                format!("{prefix}.external_id"),
                format!("repeats contacts[{first}].external_id"),
            );
        }
        if !item.email.is_empty()
            && let Some(first) = seen_email.insert(item.email.to_lowercase(), i)
        {
            violations.add(
                format!("{prefix}.email"),
                format!("repeats contacts[{first}].email"),
            );
        }
    }
    BatchKeys {
        external_ids: seen_external.into_keys().collect(),
        emails: seen_email.into_keys().collect(),
    }
}

/// What one item of a batch does.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Create,
    Update(&'a StoredContact),
    /// It matches the contact an earlier item matched (a violation).
    Conflict,
}

/// For each item, what it does to the stored contacts. Two items that
/// match the same contact are a violation of the second.
pub fn match_items<'a>(
    items: &[pb::Contact],
    existing: &'a [StoredContact],
    violations: &mut Violations,
) -> Vec<Target<'a>> {
    let mut matched_by = HashMap::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match upsert_match(existing, item) {
            None => Target::Create,
            Some(found) => match matched_by.insert(found.id, i) {
                None => Target::Update(found),
                Some(first) => {
                    violations.add(
                        format!("contacts[{i}]"),
                        format!("matches the same contact as contacts[{first}]"),
                    );
                    Target::Conflict
                }
            },
        })
        .collect()
}

/// The upsert rule: match by external_id; else by email, unless that
/// contact has a different external_id.
fn upsert_match<'a>(
    existing: &'a [StoredContact],
    item: &pb::Contact,
) -> Option<&'a StoredContact> {
    if !item.external_id.is_empty()
        && let Some(found) = existing
            .iter()
            .find(|c| c.fields.external_id.as_deref() == Some(item.external_id.as_str()))
    {
        return Some(found);
    }
    if item.email.is_empty() {
        return None;
    }
    existing.iter().find(|c| {
        c.fields
            .email
            .as_deref()
            .is_some_and(|email| email.to_lowercase() == item.email.to_lowercase())
            && (item.external_id.is_empty() || c.fields.external_id.is_none())
    })
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
    let paths = field_mask::paths(None, &patch, &UPDATABLE_FIELDS, &mut Violations::default());
    field_mask::apply(target, &patch, &paths);
}

#[cfg(test)]
mod tests {
    use rapport_core::convert::json_to_struct;

    use super::*;

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

    fn stored(external_id: Option<&str>, email: Option<&str>) -> StoredContact {
        StoredContact {
            id: uuid::Uuid::now_v7(),
            fields: contact::ContactFields {
                external_id: external_id.map(str::to_owned),
                email: email.map(str::to_owned),
                ..Default::default()
            },
            revision: 1,
            create_time: chrono::DateTime::UNIX_EPOCH,
            update_time: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn items_match_by_external_id_then_email_and_never_twice() {
        let existing = [
            stored(Some("x-1"), None),
            stored(None, Some("bea@example.com")),
        ];
        let items = [
            pb::Contact {
                external_id: "x-1".into(),
                ..Default::default()
            },
            pb::Contact {
                email: "BEA@example.com".into(),
                ..Default::default()
            },
            pb::Contact {
                email: "new@example.com".into(),
                ..Default::default()
            },
            pb::Contact {
                external_id: "x-1".into(),
                email: "other@example.com".into(),
                ..Default::default()
            },
        ];
        let mut violations = Violations::default();
        let matched = match_items(&items, &existing, &mut violations);
        let id = |target: Target| match target {
            Target::Update(found) => Some(found.id),
            _ => None,
        };
        assert_eq!(id(matched[0]), Some(existing[0].id));
        assert_eq!(id(matched[1]), Some(existing[1].id));
        assert!(matches!(matched[2], Target::Create));
        assert!(matches!(matched[3], Target::Conflict));
        assert_eq!(violations.fields(), ["contacts[3]"]);
    }

    #[test]
    fn a_batch_names_repeated_keys_and_items_without_one() {
        let items = [
            pb::Contact {
                email: "ana@example.com".into(),
                ..Default::default()
            },
            pb::Contact {
                email: "ANA@example.com".into(),
                ..Default::default()
            },
            pb::Contact::default(),
        ];
        let mut violations = Violations::default();
        check_batch(&items, chrono::DateTime::UNIX_EPOCH, &mut violations);
        assert_eq!(
            violations.fields(),
            ["contacts[1].email", "contacts[2].external_id"]
        );
    }
}
