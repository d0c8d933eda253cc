//! The segmentation change feed: its outbox, and the events an entry or
//! exit writes. Event types and payloads are the messages of
//! `rapport/segmentation/v1/events.proto`; each declares its type there.

use chrono::{DateTime, Utc};
use rapport_core::convert::to_timestamp;
use rapport_events::{Outbox, OutboxEvent};
use rapport_proto::segmentation::v1::{SegmentEntered, SegmentExited};
use uuid::Uuid;

use crate::domain::segment::Cause;

/// The segmentation change feed.
pub const OUTBOX: Outbox = Outbox {
    producer: "segmentation",
    schema: "segmentation",
};

/// `segment.entered`, about the contact.
pub fn segment_entered(
    segment: Uuid,
    contact: Uuid,
    rule_version: i64,
    cause: Cause,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent::new(
        contact,
        &SegmentEntered {
            segment_id: segment.to_string(),
            contact_id: contact.to_string(),
            rule_version,
            change_time: Some(to_timestamp(at)),
            cause: cause.to_proto().into(),
        },
    )
}

/// `segment.exited`, about the contact.
pub fn segment_exited(
    segment: Uuid,
    contact: Uuid,
    rule_version: i64,
    cause: Cause,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent::new(
        contact,
        &SegmentExited {
            segment_id: segment.to_string(),
            contact_id: contact.to_string(),
            rule_version,
            change_time: Some(to_timestamp(at)),
            cause: cause.to_proto().into(),
        },
    )
}
