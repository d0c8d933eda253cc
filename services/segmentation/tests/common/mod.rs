//! Starts contacts, feedback and segmentation on one database for a test:
//! segmentation follows both feeds into its projections.

#![allow(dead_code)] // Each test binary uses a different part of this.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use rapport_core::convert::to_timestamp;
use rapport_core::credential::Outbound;
use rapport_proto::common::v1::{Channel, Money};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Contact, CreateContactRequest, Event, RecordEventsRequest};
use rapport_proto::segmentation::v1::segmentation_service_client::SegmentationServiceClient;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{TestDatabase, TestServer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as Transport;
use uuid::Uuid;

pub type Client = SegmentationServiceClient<InterceptedService<Transport, Outbound>>;
pub type Contacts = ContactsServiceClient<InterceptedService<Transport, Outbound>>;

/// Fields drop in order: the servers stop before their database goes.
pub struct Harness {
    pub segmentation: TestServer,
    pub feedback: TestServer,
    pub contacts: TestServer,
    pub db: TestDatabase,
}

pub async fn start() -> Harness {
    start_with(&[]).await
}

/// The three services; `extra` flags go to segmentation.
pub async fn start_with(extra: &[&str]) -> Harness {
    let db = TestDatabase::create().await;
    let contacts_config = rapport_testkit::config(&rapport_contacts::SERVICE, &db, &[]);
    let contacts = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
        rapport_contacts::serve(contacts_config, listener, shutdown)
    })
    .await;
    let contacts_url = format!("http://{}", contacts.addr);
    let feedback_config = rapport_testkit::config(
        &rapport_feedback::SERVICE,
        &db,
        &["--contacts-url", &contacts_url],
    );
    let feedback = TestServer::start(&rapport_feedback::SERVICE, move |listener, shutdown| {
        rapport_feedback::serve(feedback_config, listener, shutdown)
    })
    .await;
    let feedback_url = format!("http://{}", feedback.addr);
    let mut args = vec![
        "--contacts-url",
        &contacts_url,
        "--feedback-url",
        &feedback_url,
    ];
    args.extend_from_slice(extra);
    let config = rapport_testkit::config(&rapport_segmentation::SERVICE, &db, &args);
    let segmentation =
        TestServer::start(&rapport_segmentation::SERVICE, move |listener, shutdown| {
            rapport_segmentation::serve(config, listener, shutdown)
        })
        .await;
    Harness {
        segmentation,
        feedback,
        contacts,
        db,
    }
}

impl Harness {
    pub fn client(&self, tenant: Uuid) -> Client {
        SegmentationServiceClient::new(self.segmentation.tenant_channel(tenant))
    }

    pub fn contacts(&self, tenant: Uuid) -> Contacts {
        ContactsServiceClient::new(self.contacts.tenant_channel(tenant))
    }

    /// Moves every service's clock forward by `by`.
    pub async fn advance_clock(&self, by: Duration) {
        self.contacts.advance_clock(by).await;
        self.feedback.advance_clock(by).await;
        self.segmentation.advance_clock(by).await;
    }

    /// Waits until segmentation applied everything contacts and feedback
    /// have put on their feeds so far.
    pub async fn settle(&self) {
        let mut admin = self.db.admin().await;
        for _ in 0..500 {
            let behind: bool = sqlx::query_scalar(
                "SELECT coalesce((SELECT max(position) FROM contacts.outbox), 0) \
                        > coalesce((SELECT position FROM segmentation.feed_cursors \
                                    WHERE consumer = 'segmentation.contacts'), 0) \
                     OR coalesce((SELECT max(position) FROM feedback.outbox), 0) \
                        > coalesce((SELECT position FROM segmentation.feed_cursors \
                                    WHERE consumer = 'segmentation.feedback'), 0) \
                     OR EXISTS (SELECT 1 FROM contacts.outbox WHERE position IS NULL) \
                     OR EXISTS (SELECT 1 FROM feedback.outbox WHERE position IS NULL)",
            )
            .fetch_one(&mut admin)
            .await
            .expect("feed positions");
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("segmentation did not catch up with the feeds in 10 s");
    }
}

/// A contact created through the contacts API.
pub async fn create_contact(contacts: &mut Contacts, contact: Contact) -> Contact {
    contacts
        .create_contact(CreateContactRequest {
            contact: Some(contact),
            ..Default::default()
        })
        .await
        .expect("create contact")
        .into_inner()
        .contact
        .unwrap()
}

/// A contact with just an email address.
pub async fn new_contact(contacts: &mut Contacts, email: &str) -> Contact {
    create_contact(
        contacts,
        Contact {
            email: email.into(),
            ..Default::default()
        },
    )
    .await
}

pub fn at(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(to_timestamp(time))
}

/// Records events of `contact`: (type, when, revenue in EUR units).
pub async fn record(
    contacts: &mut Contacts,
    contact: &str,
    events: &[(&str, DateTime<Utc>, Option<i64>)],
) {
    contacts
        .record_events(RecordEventsRequest {
            events: events
                .iter()
                .map(|(kind, when, revenue)| Event {
                    contact_id: contact.into(),
                    r#type: (*kind).into(),
                    channel: Channel::Web.into(),
                    occur_time: at(*when),
                    revenue: revenue.map(|units| Money {
                        currency_code: "EUR".into(),
                        units,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .expect("record events");
}

pub fn leaf(node: rule::Node) -> Rule {
    Rule { node: Some(node) }
}

pub fn all_of(rules: Vec<Rule>) -> Rule {
    leaf(rule::Node::AllOf(RuleList { rules }))
}

pub fn not(rule: Rule) -> Rule {
    leaf(rule::Node::Not(Box::new(rule)))
}

pub fn within(days: i32) -> Option<TimeWindow> {
    Some(TimeWindow {
        window: Some(time_window::Window::WithinDays(days)),
    })
}

/// `type` counted in the last `days` days `operator` `threshold`.
pub fn counted(kind: &str, days: i32, operator: Operator, threshold: f64) -> Rule {
    leaf(rule::Node::Event(EventCondition {
        r#type: kind.into(),
        measure: Measure::Count.into(),
        operator: operator.into(),
        threshold,
        window: within(days),
        ..Default::default()
    }))
}

pub fn consent(channel: Channel, state: ConsentState) -> Rule {
    leaf(rule::Node::Consent(ConsentCondition {
        channel: channel.into(),
        state: state.into(),
    }))
}

pub fn attribute(path: &str, operator: Operator, value: value::Kind) -> Rule {
    leaf(rule::Node::Attribute(AttributeCondition {
        path: path.into(),
        operator: operator.into(),
        value: Some(Value { kind: Some(value) }),
        values: Vec::new(),
    }))
}

pub fn dynamic(name: &str, rule: Rule) -> Segment {
    Segment {
        name: name.into(),
        kind: SegmentKind::Dynamic.into(),
        rule: Some(rule),
        ..Default::default()
    }
}

pub fn list(name: &str) -> Segment {
    Segment {
        name: name.into(),
        kind: SegmentKind::List.into(),
        ..Default::default()
    }
}

pub async fn create(client: &mut Client, segment: Segment) -> Segment {
    client
        .create_segment(CreateSegmentRequest {
            segment: Some(segment),
            request_id: String::new(),
        })
        .await
        .expect("create segment")
        .into_inner()
        .segment
        .unwrap()
}

/// Waits until segment `id` is built from rule version `version`.
pub async fn built(client: &mut Client, id: &str, version: i64) -> Segment {
    for _ in 0..500 {
        let segment = client
            .get_segment(GetSegmentRequest { id: id.into() })
            .await
            .expect("get segment")
            .into_inner()
            .segment
            .unwrap();
        let build = segment.build.clone().unwrap_or_default();
        if build.built_version >= version && build.state() == BuildState::Ready {
            return segment;
        }
        assert_ne!(
            build.state(),
            BuildState::Failed,
            "build failed: {}",
            build.error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("segment {id} was not built in 10 s");
}

/// Every member id of `segment`, through ListSegmentMembers pages.
pub async fn member_ids(client: &mut Client, segment: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_segment_members(ListSegmentMembersRequest {
                segment_id: segment.into(),
                page_size: 2,
                page_token,
            })
            .await
            .expect("list members")
            .into_inner();
        ids.extend(page.members.into_iter().map(|m| m.contact_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// A dynamic segment created and built from `rule`.
pub async fn create_built(client: &mut Client, name: &str, rule: Rule) -> Segment {
    let created = create(client, dynamic(name, rule)).await;
    built(client, &created.id, 1).await
}

/// The segment's member count as CountSegment reports it.
pub async fn member_count(client: &mut Client, segment: &str) -> i64 {
    client
        .count_segment(CountSegmentRequest {
            segment_id: segment.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .member_count
}

pub async fn preview(client: &mut Client, rule: Rule) -> PreviewRuleResponse {
    client
        .preview_rule(PreviewRuleRequest {
            rule: Some(rule),
            sample_size: 100,
            time_budget: None,
        })
        .await
        .expect("preview")
        .into_inner()
}

pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// `days` days before now.
pub fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

/// Polls until `check` holds, for effects that travel over a feed or wait
/// for a sweep (up to 20 s).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen in 20 s");
}

/// A segment's entries and exits, newest first: (entered, contact, cause).
pub async fn history(client: &mut Client, segment: &str) -> Vec<(bool, String, ChangeCause)> {
    client
        .list_membership_history(ListMembershipHistoryRequest {
            segment_id: segment.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes
        .into_iter()
        .map(|change| {
            let cause = change.cause();
            (change.entered, change.contact_id, cause)
        })
        .collect()
}
