//! CreateInvitations: single-use tokens for the tenant's contacts, within
//! the fatigue rules.

use std::collections::{HashMap, HashSet};

use chrono::Duration;
use rapport_core::convert::to_timestamp;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::{ApiError, ApiResult, TenantContext, Violations};
use rapport_proto::common::v1::Channel;
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use super::{FeedbackApi, IDEMPOTENCY, survey_not_found};
use crate::domain::fatigue::{self, FatigueRules, PastInvitation};
use crate::domain::survey::invitation_ttl_days;
use crate::domain::token::{self, TokenKind};
use crate::store::counts::{self, Increment};
use crate::store::invitation::{self as store, NewInvitation};
use crate::store::survey::Lock;

/// Most contacts one CreateInvitations call takes.
pub const MAX_INVITATIONS: usize = 1000;

impl FeedbackApi {
    pub(super) async fn create_invitations(
        &self,
        ctx: &TenantContext,
        req: CreateInvitationsRequest,
    ) -> ApiResult<CreateInvitationsResponse> {
        let now = self.clock.now();
        let mut violations = Violations::default();
        let survey_id = violations.parse_id("survey_id", &req.survey_id);
        if req.contact_ids.is_empty() || req.contact_ids.len() > MAX_INVITATIONS {
            violations.add(
                "contact_ids",
                format!("must hold 1 to {MAX_INVITATIONS} contact ids"),
            );
        }
        let contacts = violations.parse_distinct_ids("contact_ids", &req.contact_ids);
        if Channel::try_from(req.channel).is_err() {
            violations.add("channel", "is not a known channel");
        }
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;

        // Asked before the transaction, which then holds no connection
        // while the contacts service answers.
        let mut unknown = self
            .directory
            .unknown_among(ctx.tenant_id, &contacts)
            .await?;
        let mut tx = self.db.begin_tenant(ctx.tenant_id).await?;
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                ctx.tenant_id,
                "CreateInvitations",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        // Shared: a concurrent close waits for these invitations, or they for it.
        let survey = crate::store::survey::get(&mut tx, survey_id, Lock::Share)
            .await?
            .ok_or_else(|| survey_not_found(survey_id))?;
        if survey.status() != SurveyStatus::Active {
            return Err(ApiError::failed_precondition(
                ErrorReason::SurveyNotActive,
                format!("survey {survey_id} is not active; activate it before inviting"),
            ));
        }
        let rules = FatigueRules {
            tenant_days: crate::store::settings::get(&mut tx).await?.fatigue_days,
            survey_days: survey.survey.fatigue_days,
        };
        store::lock_contacts(&mut tx, ctx.tenant_id, &contacts).await?;
        // Gone since the directory answered: merged away or deleted.
        unknown.extend(crate::store::contacts::gone_among(&mut tx, &contacts).await?);
        let erased: HashSet<Uuid> = store::erased_among(&mut tx, &contacts)
            .await?
            .into_iter()
            .collect();
        let mut past: HashMap<Uuid, Vec<PastInvitation>> = HashMap::new();
        for invitation in
            store::blocking(&mut tx, &contacts, survey_id, rules.horizon(now), now).await?
        {
            if let Some(contact) = invitation.contact_id {
                past.entry(contact).or_default().push(PastInvitation {
                    survey_id: invitation.survey_id,
                    create_time: invitation.create_time,
                    expire_time: invitation.expire_time,
                    answered: invitation.complete_time.is_some(),
                });
            }
        }

        let mut response = CreateInvitationsResponse::default();
        let mut new = Vec::new();
        let mut tokens = Vec::new();
        let requested = contacts.clone();
        for contact in contacts {
            let skip = if erased.contains(&contact) {
                Some((SkipReason::ContactErased, None))
            } else if unknown.contains(&contact) {
                Some((SkipReason::ContactNotFound, None))
            } else {
                let history = past.get(&contact).map_or(&[][..], Vec::as_slice);
                fatigue::skip_reason(survey_id, rules, history, now)
                    .map(|(reason, time)| (reason, Some(to_timestamp(time))))
            };
            if let Some((reason, last_invite_time)) = skip {
                response.skipped.push(SkippedContact {
                    contact_id: contact.to_string(),
                    reason: reason.into(),
                    last_invite_time,
                });
                continue;
            }
            let (token, token_hash) = token::generate(TokenKind::Invitation);
            tokens.push(token);
            new.push(NewInvitation {
                id: Uuid::now_v7(),
                contact_id: Some(contact),
                token_hash,
            });
        }
        let channel = if req.channel == Channel::Unspecified as i32 {
            survey.survey.channel
        } else {
            req.channel
        };
        let expire_time = now + Duration::days(i64::from(invitation_ttl_days(&survey.survey)));
        let stored = store::insert(
            &mut tx,
            ctx.tenant_id,
            survey_id,
            false,
            i16::try_from(channel).unwrap_or_default(),
            &new,
            now,
            expire_time,
        )
        .await?;
        for (invitation, token) in stored.iter().zip(tokens) {
            response.invitations.push(invitation.to_proto(token));
        }
        if !stored.is_empty() {
            counts::add(
                &mut tx,
                ctx.tenant_id,
                survey_id,
                vec![Increment::metric(
                    now.date_naive(),
                    counts::INVITED,
                    stored.len() as i64,
                )],
            )
            .await?;
        }
        // The stored copy holds the tokens, so that a retry can hand
        // them out again; it goes after the retention window, or when
        // one of the contacts it names is erased.
        let subjects: Vec<Uuid> = stored
            .iter()
            .map(|i| i.id)
            .chain(requested.iter().copied())
            .collect();
        claim
            .complete(&mut tx, ctx.tenant_id, &response, &subjects, now)
            .await?;
        tx.commit().await?;
        Ok(response)
    }
}
