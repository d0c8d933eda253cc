//! Segmentation through the gateway, as a client and as rapportctl use it:
//! a rule from a JSON file, its preview, build, members and explanation,
//! and membership following a recorded event at once.

use std::time::Duration;

use rapport_e2e::{Suite, create_contact, named};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{
    ChangeConsentRequest, Consent, ConsentStatus, Event, RecordEventsRequest,
};
use rapport_proto::segmentation::v1::*;
use rapport_testkit::reason;
use tonic::Code;

/// Email-subscribed contacts with an order in the last 90 days, in the
/// proto3 JSON mapping rapportctl reads.
const RULE: &str = r#"{
  "allOf": {"rules": [
    {"consent": {"channel": "CHANNEL_EMAIL", "state": "CONSENT_STATE_SUBSCRIBED"}},
    {"event": {"type": "order.placed", "measure": "MEASURE_COUNT",
               "operator": "OPERATOR_GREATER_OR_EQUAL", "threshold": 1,
               "window": {"withinDays": 90}}}
  ]}
}"#;

/// The lead scoring model of the README's tour.
const MODEL: &str = r#"{"name": "Leads", "halfLife": "604800s", "rules": [
  {"points": 10, "condition": {"event": {"type": "order.placed", "measure": "MEASURE_COUNT",
                                         "window": {"withinDays": 365}}}},
  {"points": 20, "condition": {"attribute": {"path": "plan", "operator": "OPERATOR_EQUALS",
                                             "value": {"text": "pro"}}}}
]}"#;

async fn rapportctl(suite: &Suite, key: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(
        rapport_testkit::process::sibling_binary("rapportctl").unwrap(),
    )
    .arg("--endpoint")
    .arg(format!("http://{}", suite.gateway.addr))
    .args(args)
    .env("RAPPORT_API_KEY", key)
    .output()
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "rapportctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_segment_from_a_rule_file_builds_and_explains_itself() {
    let suite = Suite::start().await;
    let key = suite
        .tenant(
            named("segments e2e"),
            &["contacts:write", "segmentation:write"],
        )
        .await;
    let client = suite.client(&key.secret);
    let buyer = create_contact(&client, "buyer@example.com").await;
    let browser = create_contact(&client, "browser@example.com").await;
    for contact in [&buyer, &browser] {
        client
            .contacts()
            .change_consent(ChangeConsentRequest {
                contact_id: contact.id.clone(),
                consent: Some(Consent {
                    channel: Channel::Email.into(),
                    status: ConsentStatus::Subscribed.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    client
        .contacts()
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: buyer.id.clone(),
                r#type: "order.placed".into(),
                channel: Channel::Web.into(),
                occur_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }],
        })
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("rapport-e2e-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let rule_file = dir.join("buyers.json");
    std::fs::write(&rule_file, RULE).unwrap();
    let rule_path = rule_file.to_str().unwrap();

    // The projection follows the feed within moments.
    let mut previewed = String::new();
    for _ in 0..100 {
        previewed = rapportctl(&suite, &key.secret, &["segments", "preview", rule_path]).await;
        if previewed.starts_with("1 of 2 contacts") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(previewed.starts_with("1 of 2 contacts"), "{previewed}");
    assert!(previewed.contains(&buyer.id), "{previewed}");

    let created = rapportctl(
        &suite,
        &key.secret,
        &[
            "segments",
            "create",
            "--name",
            "Subscribed buyers",
            "--rule",
            rule_path,
        ],
    )
    .await;
    let segment_id = created.split_whitespace().next().unwrap().to_owned();
    let mut segmentation = client.segmentation();
    for _ in 0..100 {
        let segment = segmentation
            .get_segment(GetSegmentRequest {
                id: segment_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap();
        if segment.build.unwrap_or_default().state() == BuildState::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members = rapportctl(&suite, &key.secret, &["segments", "members", &segment_id]).await;
    assert_eq!(members.trim(), buyer.id);
    let count = rapportctl(&suite, &key.secret, &["segments", "count", &segment_id]).await;
    assert_eq!(count.trim(), "1");
    let explained = rapportctl(
        &suite,
        &key.secret,
        &["segments", "explain", &browser.id, "--segment", &segment_id],
    )
    .await;
    assert!(
        explained.contains("no    order.placed counted in the last 90 days >= 1  [counted 0]"),
        "{explained}"
    );

    // The browser orders: they enter at once, not at the next build.
    client
        .contacts()
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: browser.id.clone(),
                r#type: "order.placed".into(),
                channel: Channel::Web.into(),
                occur_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let mut history = String::new();
    for _ in 0..100 {
        history = rapportctl(&suite, &key.secret, &["segments", "history", &segment_id]).await;
        if history.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].ends_with(&format!("entered {segment_id} {} v1 event", browser.id)),
        "{history}"
    );
    assert!(
        lines[1].ends_with(&format!("entered {segment_id} {} v1 build", buyer.id)),
        "{history}"
    );
    let count = rapportctl(&suite, &key.secret, &["segments", "count", &segment_id]).await;
    assert_eq!(count.trim(), "2");

    // A lead score from the README's model file: the buyer's one order
    // today (10 points, barely decayed), no pro plan.
    let model_file = dir.join("leads.json");
    std::fs::write(&model_file, MODEL).unwrap();
    let created = rapportctl(
        &suite,
        &key.secret,
        &["segments", "create-model", model_file.to_str().unwrap()],
    )
    .await;
    let model_id = created.split_whitespace().next().unwrap().to_owned();
    let scored = rapportctl(
        &suite,
        &key.secret,
        &["segments", "score", &model_id, &buyer.id],
    )
    .await;
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(lines[0], "10.00", "{scored}");
    assert!(
        lines[1]
            .ends_with("1 x +10 points  each order.placed in the last 365 days  (model.rules[0])"),
        "{scored}"
    );
    assert!(
        lines[2].ends_with("0 x +20 points  attribute plan = \"pro\"  (model.rules[1])"),
        "{scored}"
    );
    // The README's "Hot leads", with a bound both orders' scores pass.
    let hot_file = dir.join("hot.json");
    let hot = format!(r#"{{"leadScore": {{"modelId": "{model_id}", "min": 5}}}}"#);
    std::fs::write(&hot_file, hot).unwrap();
    let created = rapportctl(
        &suite,
        &key.secret,
        &[
            "segments",
            "create",
            "--name",
            "Hot leads",
            "--rule",
            hot_file.to_str().unwrap(),
        ],
    )
    .await;
    let hot_id = created.split_whitespace().next().unwrap().to_owned();
    let mut members = String::new();
    for _ in 0..100 {
        members = rapportctl(&suite, &key.secret, &["segments", "members", &hot_id]).await;
        if members.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut expected = [buyer.id.as_str(), browser.id.as_str()];
    expected.sort_unstable();
    assert_eq!(members.lines().collect::<Vec<_>>(), expected);
    std::fs::remove_dir_all(&dir).unwrap();

    // A key without the segmentation scope is refused.
    let contacts_only = suite.key(&key.tenant_id, &["contacts:write"]).await;
    let error = suite
        .client(&contacts_only.secret)
        .segmentation()
        .count_segment(CountSegmentRequest { segment_id })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    assert!(!reason(&error).is_empty());
}
