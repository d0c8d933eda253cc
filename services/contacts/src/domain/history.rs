//! The history entries a change to a contact leaves: lifecycle stage and
//! consent transitions.

use chrono::{DateTime, Utc};
use rapport_proto::common::v1::LifecycleStage;
use rapport_proto::contacts::v1::ConsentStatus;

use super::contact::ContactFields;

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

#[cfg(test)]
mod tests {
    use rapport_proto::common::v1::Channel;

    use super::*;
    use crate::domain::contact::ConsentState;
    use crate::domain::contact::tests::consent;

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
