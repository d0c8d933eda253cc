//! One contact judged: ExplainMembership (every node, its verdict and what
//! was found) and EvaluateRule (the same, once segmentation has applied
//! given positions of the feeds it follows).

use std::time::{Duration, Instant};

use rapport_core::db::finish_read;
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_events::consumer::Subscription;
use rapport_proto::segmentation::v1::explain_membership_request::Target;
use rapport_proto::segmentation::v1::*;
use uuid::Uuid;

use super::{SegmentationApi, check_references, contact_not_found};
use crate::consumers::{contacts, feedback};
use crate::domain::explain::explain;
use crate::domain::rule::Rule as TypedRule;
use crate::domain::scoring::Models;
use crate::domain::validate;
use crate::store::segment::Lock;
use crate::store::{cursor, evaluate, scoring};

/// The feeds segmentation follows, by producer.
const FOLLOWED: [Subscription; 2] = [contacts::SUBSCRIPTION, feedback::SUBSCRIPTION];
const DEFAULT_WAIT: Duration = Duration::from_secs(2);
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting call looks at the cursors again.
const POLL: Duration = Duration::from_millis(10);

/// What to judge: a stored segment's rule, or an unsaved rule (checked).
enum Judged {
    Segment(Uuid),
    Rule(TypedRule),
}

/// The rule a caller gave to judge, if it gave one.
fn given_rule(target: Option<&Target>) -> Option<&Rule> {
    match target {
        Some(Target::Rule(rule)) => Some(rule),
        _ => None,
    }
}

fn read_target(
    contact_id: &str,
    target: Option<&Target>,
    models: &Models,
    violations: &mut Violations,
) -> (Uuid, Option<Judged>) {
    let contact = violations.parse_id("contact_id", contact_id);
    let judged = match target {
        None => {
            violations.add("target", "must name a segment_id or hold a rule");
            None
        }
        Some(Target::SegmentId(id)) => Some(Judged::Segment(violations.parse_id("segment_id", id))),
        Some(Target::Rule(rule)) => {
            validate::validate(rule, "rule", models, violations).map(Judged::Rule)
        }
    };
    (contact, judged)
}

/// The positions asked for, by index into [`FOLLOWED`].
fn read_positions(positions: &[FeedPosition], violations: &mut Violations) -> [i64; 2] {
    let mut wanted = [0; 2];
    for (i, position) in positions.iter().enumerate() {
        let path = format!("min_positions[{i}]");
        match FOLLOWED
            .iter()
            .position(|feed| feed.producer == position.producer)
        {
            Some(feed) if wanted[feed] == 0 => wanted[feed] = position.position.max(0),
            Some(_) => violations.add(format!("{path}.producer"), "is named twice"),
            None => violations.add(
                format!("{path}.producer"),
                "must be `contacts` or `feedback`",
            ),
        }
        if position.position < 0 {
            violations.add(format!("{path}.position"), "must not be negative");
        }
    }
    wanted
}

fn read_wait(max_wait: Option<&prost_types::Duration>, violations: &mut Violations) -> Duration {
    match max_wait {
        None => DEFAULT_WAIT,
        Some(wait) => match Duration::try_from(*wait) {
            Ok(wait) => wait.min(MAX_WAIT),
            Err(_) => {
                violations.add("max_wait", "must be a duration of zero or more");
                DEFAULT_WAIT
            }
        },
    }
}

impl SegmentationApi {
    pub(super) async fn explain(
        &self,
        ctx: &TenantContext,
        req: ExplainMembershipRequest,
    ) -> ApiResult<ExplainMembershipResponse> {
        let models = self
            .models_for_reading(ctx, given_rule(req.target.as_ref()))
            .await?;
        let mut violations = Violations::default();
        let (contact, judged) = read_target(
            &req.contact_id,
            req.target.as_ref(),
            &models,
            &mut violations,
        );
        violations.check()?;
        self.judge(ctx, contact, judged).await
    }

    pub(super) async fn evaluate_rule(
        &self,
        ctx: &TenantContext,
        req: EvaluateRuleRequest,
    ) -> ApiResult<EvaluateRuleResponse> {
        let mut violations = Violations::default();
        let target = req.target.map(|target| match target {
            evaluate_rule_request::Target::SegmentId(id) => Target::SegmentId(id),
            evaluate_rule_request::Target::Rule(rule) => Target::Rule(rule),
        });
        let models = self
            .models_for_reading(ctx, given_rule(target.as_ref()))
            .await?;
        let (contact, judged) =
            read_target(&req.contact_id, target.as_ref(), &models, &mut violations);
        let wanted = read_positions(&req.min_positions, &mut violations);
        let wait = read_wait(req.max_wait.as_ref(), &mut violations);
        violations.check()?;
        let applied = self.wait_for(wanted, wait).await?;
        let judged = self.judge(ctx, contact, judged).await?;
        Ok(EvaluateRuleResponse {
            matched: judged.matched,
            root: judged.root,
            member: judged.member,
            applied_positions: FOLLOWED
                .iter()
                .zip(applied)
                .map(|(feed, position)| FeedPosition {
                    producer: feed.producer.to_owned(),
                    position,
                })
                .collect(),
        })
    }

    /// Waits until the consumers have applied `wanted` (by index into
    /// [`FOLLOWED`]), at most `wait`; returns what they have applied.
    async fn wait_for(&self, wanted: [i64; 2], wait: Duration) -> ApiResult<[i64; 2]> {
        let started = Instant::now();
        let consumers = FOLLOWED.map(|feed| feed.consumer);
        loop {
            let mut tx = self.db.begin_with_settings(&[]).await?;
            let applied = cursor::applied(&mut tx, &consumers).await?;
            finish_read(tx);
            let applied = [applied[0], applied[1]];
            let behind: Vec<String> = FOLLOWED
                .iter()
                .zip(wanted.iter().zip(applied))
                .filter(|(_, (wanted, applied))| applied < *wanted)
                .map(|(feed, (wanted, applied))| {
                    format!(
                        "{} feed applied to {applied}, asked for {wanted}",
                        feed.producer
                    )
                })
                .collect();
            if behind.is_empty() {
                return Ok(applied);
            }
            if started.elapsed() >= wait {
                return Err(ApiError::unavailable(
                    ErrorReason::FeedBehind,
                    format!("segmentation is behind: {}", behind.join("; ")),
                    Duration::from_millis(500),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `judged` for `contact`, node by node.
    async fn judge(
        &self,
        ctx: &TenantContext,
        contact: Uuid,
        judged: Option<Judged>,
    ) -> ApiResult<ExplainMembershipResponse> {
        let now = self.clock.now();
        let Some(judged) = judged else {
            return Err(ApiError::internal(anyhow::anyhow!("a valid target is set")));
        };
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let (rule, segment) = match judged {
            Judged::Rule(rule) => {
                check_references(&mut tx, &rule, "rule", None).await?;
                (rule, None)
            }
            Judged::Segment(id) => {
                let segment = self.segment(&mut tx, id, Lock::None).await?;
                let Some(stored) = &segment.rule else {
                    return Err(ApiError::failed_precondition(
                        ErrorReason::WrongSegmentKind,
                        format!("segment {id} is a list: it has no rule to explain"),
                    ));
                };
                let rule = scoring::stored_rule(&mut tx, stored)
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!(
                            "segment {id}'s stored rule fails its checks"
                        ))
                    })?;
                (rule, Some(id))
            }
        };
        let findings = evaluate::findings(&mut tx, ctx.tenant_id, contact, &rule, now)
            .await?
            .ok_or_else(|| contact_not_found(contact))?;
        let member = match segment {
            Some(segment) => evaluate::is_member(&mut tx, ctx.tenant_id, segment, contact).await?,
            None => false,
        };
        finish_read(tx);
        let root = explain(&rule, "rule", &findings);
        Ok(ExplainMembershipResponse {
            matched: root.matched,
            root: Some(root),
            member,
        })
    }
}
