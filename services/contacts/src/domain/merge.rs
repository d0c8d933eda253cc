//! Merging a duplicate contact into a survivor.

use super::contact::ContactFields;

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

#[cfg(test)]
mod tests {
    use rapport_proto::common::v1::{Channel, LifecycleStage};
    use rapport_proto::contacts::v1::ConsentStatus;

    use super::*;
    use crate::domain::contact::tests::consent;

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
}
