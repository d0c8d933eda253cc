//! The contacts change feed: its outbox, and the events each change
//! writes. Event types and payloads are the messages of
//! `rapport/contacts/v1/events.proto`; each declares its type there.

use rapport_events::{Outbox, OutboxEvent};
use rapport_proto::contacts::v1 as pb;
use uuid::Uuid;

use crate::domain::contact::StoredContact;
use crate::domain::history::{ConsentTransition, LifecycleTransition};

/// The contacts change feed.
pub const OUTBOX: Outbox = Outbox {
    producer: "contacts",
    schema: "contacts",
};

/// The events of writing `stored`: created or updated (with the full new
/// state), and each lifecycle and consent change.
pub fn contact_written(
    existed: bool,
    stored: &StoredContact,
    lifecycle: Option<&LifecycleTransition>,
    consents: &[ConsentTransition],
    source: &str,
) -> Vec<OutboxEvent> {
    let id = stored.id;
    let contact = Some(stored.to_proto());
    let mut events = vec![if existed {
        OutboxEvent::new(id, &pb::ContactUpdated { contact })
    } else {
        OutboxEvent::new(id, &pb::ContactCreated { contact })
    }];
    if let Some(change) = lifecycle {
        events.push(OutboxEvent::new(
            id,
            &pb::ContactLifecycleChanged {
                contact_id: id.to_string(),
                from_stage: change.from as i32,
                to_stage: change.to as i32,
                source: source.to_owned(),
            },
        ));
    }
    for change in consents {
        events.push(OutboxEvent::new(
            id,
            &pb::ContactConsentChanged {
                contact_id: id.to_string(),
                channel: change.channel,
                from_status: change.from,
                to_status: change.to,
                source: change.source.clone(),
            },
        ));
    }
    events
}

pub fn contact_deleted(id: Uuid) -> OutboxEvent {
    OutboxEvent::new(
        id,
        &pb::ContactDeleted {
            contact_id: id.to_string(),
        },
    )
}

pub fn contact_merged(duplicate: Uuid, survivor: Uuid) -> OutboxEvent {
    OutboxEvent::new(
        survivor,
        &pb::ContactMerged {
            survivor_id: survivor.to_string(),
            duplicate_id: duplicate.to_string(),
        },
    )
}

/// `contact.erased` for `id` and every id merged into it before.
pub fn contact_erased(id: Uuid, merged: &[Uuid]) -> OutboxEvent {
    OutboxEvent::new(
        id,
        &pb::ContactErased {
            contact_id: id.to_string(),
            merged_ids: merged.iter().map(Uuid::to_string).collect(),
        },
    )
}
