//! The wire check against hand-encoded messages: sizes, counts, depth,
//! budgets and malformed input.

use prost::Message as _;
use rapport_proto::contacts::v1::{BatchUpsertContactsRequest, Contact, RecordEventsRequest};

use super::*;

const LIMITS: WireLimits = WireLimits {
    max_bytes: 1 << 20,
    max_decoded_bytes: 4 << 20,
};

fn descriptor(name: &str) -> MessageDescriptor {
    rapport_proto::descriptor_pool()
        .get_message_by_name(name)
        .unwrap()
}

fn batch(contacts: usize) -> Vec<u8> {
    BatchUpsertContactsRequest {
        contacts: vec![Contact::default(); contacts],
        request_id: "r".into(),
    }
    .encode_to_vec()
}

#[test]
fn a_request_within_its_caps_passes() {
    let bytes = batch(1000);
    let batch = descriptor("rapport.contacts.v1.BatchUpsertContactsRequest");
    assert_eq!(check(bytes.as_slice(), &batch, LIMITS), Ok(()));
}

#[test]
fn one_entry_over_a_cap_is_refused_naming_the_field() {
    let bytes = batch(1001);
    let batch = descriptor("rapport.contacts.v1.BatchUpsertContactsRequest");
    let refused = check(bytes.as_slice(), &batch, LIMITS).unwrap_err();
    assert_eq!(refused.field, "contacts");
    assert!(refused.description.contains("1000"), "{refused:?}");
}

#[test]
fn nested_caps_name_the_entry() {
    let request = BatchUpsertContactsRequest {
        contacts: vec![
            Contact::default(),
            Contact {
                tags: vec![String::new(); 101],
                ..Default::default()
            },
        ],
        request_id: String::new(),
    };
    let batch = descriptor("rapport.contacts.v1.BatchUpsertContactsRequest");
    let refused = check(request.encode_to_vec().as_slice(), &batch, LIMITS).unwrap_err();
    assert_eq!(refused.field, "contacts[1].tags");
}

#[test]
fn the_decoded_size_is_bounded_where_no_cap_is() {
    // 200k empty entries of an uncapped map (an event's properties):
    // about 1 MB on the wire, far more once decoded.
    let mut properties = prost_types::Struct::default();
    for i in 0..200_000 {
        properties
            .fields
            .insert(format!("{i:x}"), prost_types::Value::default());
    }
    let request = RecordEventsRequest {
        events: vec![rapport_proto::contacts::v1::Event {
            properties: Some(properties),
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    let events = descriptor("rapport.contacts.v1.RecordEventsRequest");
    let limits = WireLimits {
        max_bytes: 8 << 20,
        max_decoded_bytes: 4 << 20,
    };
    let refused = check(bytes.as_slice(), &events, limits).unwrap_err();
    assert!(
        refused.field.starts_with("events[0].properties"),
        "{refused:?}"
    );
    assert!(refused.description.contains("memory"), "{refused:?}");
}

#[test]
fn bytes_past_the_limit_and_garbage_are_refused() {
    let bytes = batch(1000);
    let batch_descriptor = descriptor("rapport.contacts.v1.BatchUpsertContactsRequest");
    let small = WireLimits {
        max_bytes: 100,
        ..LIMITS
    };
    let refused = check(bytes.as_slice(), &batch_descriptor, small).unwrap_err();
    assert!(refused.description.contains("larger"), "{refused:?}");
    let garbage = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert_eq!(
        check(&garbage[..], &batch_descriptor, LIMITS)
            .unwrap_err()
            .description,
        "is not a valid protobuf encoding"
    );
}

/// `message` as a unary request body: framed, gzipped when asked.
fn framed(message: &[u8], gzip: bool) -> Vec<u8> {
    use std::io::Write as _;
    let payload = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(message).unwrap();
        encoder.finish().unwrap()
    } else {
        message.to_vec()
    };
    let mut body = vec![u8::from(gzip)];
    body.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&payload);
    body
}

#[test]
fn a_top_level_field_is_read_plain_or_gzipped_and_only_within_the_limit() {
    use rapport_proto::feedback::v1::{Answer, SubmitResponseRequest};
    let request = SubmitResponseRequest {
        token: "fba_token".into(),
        answers: vec![Answer::default(); 3],
        language: "en".into(),
        ..Default::default()
    }
    .encode_to_vec();
    for gzip in [false, true] {
        let body = framed(&request, gzip);
        let message = unary_message(&body, gzip).unwrap();
        assert_eq!(
            field_bytes(message, 1, 1024).unwrap().as_deref(),
            Some(&b"fba_token"[..])
        );
    }
    let body = framed(&request, false);
    assert_eq!(
        field_bytes(unary_message(&body, false).unwrap(), 9, 1024).unwrap(),
        None
    );
    assert!(field_bytes(unary_message(&body, false).unwrap(), 1, 4).is_err());
    // Not one whole frame, or gzip the headers did not announce.
    assert!(unary_message(&body[..body.len() - 1], false).is_none());
    assert!(unary_message(&framed(&request, true), false).is_none());
}
