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

fn orders_only(points: f64) -> ScoringModel {
    ScoringModel {
        name: "Buyers".into(),
        rules: vec![ScoringRule {
            condition: Some(counted("order.placed", 365, Operator::GreaterOrEqual, 1.0)),
            points,
        }],
        half_life: Some(prost_types::Duration {
            seconds: 7 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn scored_at_least(model: &str, min: f64) -> Rule {
    leaf(rule::Node::LeadScore(LeadScoreCondition {
        model_id: model.into(),
        min: Some(min),
        max: None,
    }))
}

/// `contact`'s entries and exits of `segment`, newest first.
async fn causes(client: &mut Client, segment: &str, contact: &str) -> Vec<(bool, ChangeCause)> {
    history(client, segment)
        .await
        .into_iter()
        .filter(|(_, id, _)| id == contact)
        .map(|(entered, _, cause)| (entered, cause))
        .collect()
}

#[tokio::test]
async fn a_lead_score_in_a_rule_lets_contacts_in_and_decay_takes_them_out() {
    let harness = start().await;
    let tenant = Uuid::now_v7();
    let mut contacts = harness.contacts(tenant);
    let mut client = harness.client(tenant);
    let model = client
        .create_scoring_model(CreateScoringModelRequest {
            model: Some(orders_only(10.0)),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    let hot = create_built(&mut client, "hot", scored_at_least(&model.id, 15.0)).await;
    let ann = new_contact(&mut contacts, "ann@example.com").await;
    let bob = new_contact(&mut contacts, "bob@example.com").await;

    // Ann's two orders score 20, Bob's one 10.
    let now = chrono::Utc::now();
    record(
        &mut contacts,
        &ann.id,
        &[("order.placed", now, None), ("order.placed", now, None)],
    )
    .await;
    record(&mut contacts, &bob.id, &[("order.placed", now, None)]).await;
    harness.settle().await;
    assert_eq!(member_ids(&mut client, &hot.id).await, [ann.id.as_str()]);

    // 20 halves to 15 after log2(20/15) x 7 days, about 2.9 days: two
    // days on Ann is still in, a day later decay has taken her out.
    harness.advance_clock(Duration::from_secs(2 * 86_400)).await;
    harness.settle().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(member_ids(&mut client, &hot.id).await, [ann.id.as_str()]);
    harness.advance_clock(Duration::from_secs(86_400)).await;
    eventually("decay takes Ann out", || {
        let mut client = client.clone();
        let hot = hot.id.clone();
        async move { member_ids(&mut client, &hot).await.is_empty() }
    })
    .await;
    assert_eq!(
        causes(&mut client, &hot.id, &ann.id).await,
        [(false, ChangeCause::Time), (true, ChangeCause::Event)]
    );

    // A model in use is not deleted; a changed one rebuilds its segments:
    // at 30 points per order, three days of decay leave Ann at 44.6 and
    // Bob at 22.3.
    let refused = client
        .delete_scoring_model(DeleteScoringModelRequest {
            id: model.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "SCORING_MODEL_IN_USE");
    assert!(refused.message().contains(&hot.id), "{refused:?}");
    client
        .update_scoring_model(UpdateScoringModelRequest {
            model: Some(ScoringModel {
                id: model.id.clone(),
                ..orders_only(30.0)
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["rules".into()],
            }),
            etag: model.etag.clone(),
        })
        .await
        .unwrap();
    eventually("the changed model rebuilds the segment", || {
        let mut client = client.clone();
        let hot = hot.id.clone();
        async move { member_ids(&mut client, &hot).await.len() == 2 }
    })
    .await;
    assert_eq!(
        causes(&mut client, &hot.id, &bob.id).await,
        [(true, ChangeCause::Build)]
    );
    let explained = client
        .explain_membership(ExplainMembershipRequest {
            contact_id: ann.id.clone(),
            target: Some(explain_membership_request::Target::SegmentId(
                hot.id.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    let root = explained.root.unwrap();
    assert!(explained.matched && explained.member, "{root:?}");
    assert!(root.observed.starts_with("score 44.5"), "{root:?}");

    // A rule naming no model of the tenant is refused at its field.
    let unknown = client
        .create_segment(CreateSegmentRequest {
            segment: Some(dynamic(
                "nobody",
                scored_at_least(&Uuid::now_v7().to_string(), 1.0),
            )),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&unknown),
        ["segment.rule.lead_score.model_id"]
    );
}
