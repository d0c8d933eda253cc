//! Lead scoring models and contacts' scores: points per event halving
//! every half-life, points for standing conditions, contributions per
//! rule, and the model's lifecycle.

mod common;

use std::time::Duration;

use common::*;
use rapport_proto::contacts::v1::Contact;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::{reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

fn orders_and_pro() -> ScoringModel {
    ScoringModel {
        name: "Leads".into(),
        rules: vec![
            ScoringRule {
                condition: Some(counted("order.placed", 365, Operator::GreaterOrEqual, 1.0)),
                points: 10.0,
            },
            ScoringRule {
                condition: Some(attribute(
                    "plan",
                    Operator::Equals,
                    value::Kind::Text("pro".into()),
                )),
                points: 20.0,
            },
        ],
        half_life: Some(prost_types::Duration {
            seconds: 7 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn score(client: &mut Client, model: &str, contact: &str) -> GetContactScoreResponse {
    client
        .get_contact_score(GetContactScoreRequest {
            model_id: model.into(),
            contact_id: contact.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

#[tokio::test]
async fn a_score_halves_its_event_points_every_half_life() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let mut attributes = prost_types::Struct::default();
    attributes.fields.insert(
        "plan".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("pro".into())),
        },
    );
    let ann = create_contact(
        &mut contacts,
        Contact {
            email: "ann@example.com".into(),
            attributes: Some(attributes),
            ..Default::default()
        },
    )
    .await;
    record(
        &mut contacts,
        &ann.id,
        &[
            ("order.placed", days_ago(0), None),
            ("order.placed", days_ago(7), None),
        ],
    )
    .await;
    harness.settle().await;
    let model = client
        .create_scoring_model(CreateScoringModelRequest {
            model: Some(orders_and_pro()),
            request_id: "leads".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();

    // 10 + 10 x 0.5 for the orders, 20 for the plan.
    let now = score(&mut client, &model.id, &ann.id).await;
    assert!(close(now.score, 35.0), "{now:?}");
    let orders = &now.contributions[0];
    assert_eq!(
        (orders.path.as_str(), orders.matched),
        ("model.rules[0]", 2)
    );
    assert!(close(orders.contributed, 15.0));
    assert_eq!(now.contributions[1].matched, 1);

    // A week on, the orders' points have halved again.
    harness.advance_clock(Duration::from_secs(7 * 86_400)).await;
    let later = score(&mut client, &model.id, &ann.id).await;
    assert!(close(later.score, 27.5), "{later:?}");

    // A shorter half-life applies at once.
    let mut patch = ScoringModel {
        id: model.id.clone(),
        half_life: Some(prost_types::Duration {
            seconds: 7 * 43_200,
            nanos: 0,
        }),
        ..Default::default()
    };
    client
        .update_scoring_model(UpdateScoringModelRequest {
            model: Some(patch.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["half_life".into()],
            }),
            etag: model.etag.clone(),
        })
        .await
        .unwrap();
    // 7 and 14 days old at a half-life of 3.5 days: 10/4 + 10/16.
    let shorter = score(&mut client, &model.id, &ann.id).await;
    assert!(close(shorter.score, 2.5 + 0.625 + 20.0), "{shorter:?}");

    // The etag read before is stale now.
    patch.name = "Renamed".into();
    let stale = client
        .update_scoring_model(UpdateScoringModelRequest {
            model: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            etag: model.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_bad_model_is_refused_at_its_fields_and_models_keep_to_their_tenant() {
    let harness = start().await;
    let mut client = harness.client(Uuid::now_v7());
    let mut bad = orders_and_pro();
    bad.rules[0].points = -1.0;
    bad.rules[1].condition = Some(all_of(Vec::new()));
    bad.half_life = None;
    let refused = client
        .create_scoring_model(CreateScoringModelRequest {
            model: Some(bad),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "model.half_life",
            "model.rules[0].points",
            "model.rules[1].condition"
        ]
    );

    let model = client
        .create_scoring_model(CreateScoringModelRequest {
            model: Some(orders_and_pro()),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    let listed = client
        .list_scoring_models(ListScoringModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models, std::slice::from_ref(&model));

    let mut other = harness.client(Uuid::now_v7());
    let hidden = other
        .get_scoring_model(GetScoringModelRequest {
            id: model.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&hidden), "SCORING_MODEL_NOT_FOUND");
    let not_theirs = other
        .delete_scoring_model(DeleteScoringModelRequest {
            id: model.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_theirs.code(), Code::NotFound);

    client
        .delete_scoring_model(DeleteScoringModelRequest {
            id: model.id.clone(),
        })
        .await
        .unwrap();
    let gone = client
        .get_scoring_model(GetScoringModelRequest { id: model.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}
