//! Lifecycle stage and consent changes, and their histories.

mod common;

use common::{create, person};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_testkit::violated_fields;
use uuid::Uuid;

#[tokio::test]
async fn lifecycle_and_consent_changes_keep_history() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = create(
        &mut client,
        Contact {
            lifecycle_stage: LifecycleStage::Discovery as i32,
            ..person("h@example.com")
        },
    )
    .await;

    for stage in [LifecycleStage::Education, LifecycleStage::Purchase] {
        client
            .change_lifecycle_stage(ChangeLifecycleStageRequest {
                contact_id: contact.id.clone(),
                lifecycle_stage: stage as i32,
                source: "journey".into(),
            })
            .await
            .unwrap();
    }
    let history = client
        .list_lifecycle_history(ListLifecycleHistoryRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let stages: Vec<_> = history
        .changes
        .iter()
        .map(|c| (c.from_stage, c.to_stage))
        .collect();
    assert_eq!(
        stages,
        [
            (
                LifecycleStage::Education as i32,
                LifecycleStage::Purchase as i32
            ),
            (
                LifecycleStage::Discovery as i32,
                LifecycleStage::Education as i32
            )
        ]
    );
    assert_eq!(history.changes[0].source, "journey");
    let rest = client
        .list_lifecycle_history(ListLifecycleHistoryRequest {
            contact_id: contact.id.clone(),
            page_size: 2,
            page_token: history.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(
        rest.changes[0].from_stage,
        LifecycleStage::Unspecified as i32
    );
    assert!(rest.next_page_token.is_empty());

    let consent = |status: ConsentStatus| Consent {
        channel: Channel::Sms as i32,
        status: status as i32,
        change_time: None,
        source: "sms-keyword".into(),
    };
    client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Subscribed)),
        })
        .await
        .unwrap();
    // Same status again: no new history entry.
    client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Subscribed)),
        })
        .await
        .unwrap();
    let after = client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(consent(ConsentStatus::Unsubscribed)),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(after.consents[0].status, ConsentStatus::Unsubscribed as i32);
    let consent_history = client
        .list_consent_history(ListConsentHistoryRequest {
            contact_id: contact.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<_> = consent_history
        .changes
        .iter()
        .map(|c| (c.from_status, c.to_status))
        .collect();
    assert_eq!(
        statuses,
        [
            (
                ConsentStatus::Subscribed as i32,
                ConsentStatus::Unsubscribed as i32
            ),
            (
                ConsentStatus::Unspecified as i32,
                ConsentStatus::Subscribed as i32
            ),
        ]
    );

    let err = client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(Consent {
                channel: Channel::Web as i32,
                status: 0,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["consent.channel", "consent.status"]);
}
