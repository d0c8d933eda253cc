//! The public SubmitResponse: a respondent's answers under an invitation's
//! or a survey link's token, with no API key. The token names the tenant;
//! a resumed response keeps its language and answers.

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use rapport_core::db::set_local;
use rapport_core::idempotency::{Claim, check_request_id};
use rapport_core::{ApiError, ApiResult, Violations};
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use super::{FeedbackApi, IDEMPOTENCY, survey_not_found};
use crate::domain::answer;
use crate::domain::survey::{self as rules, MAX_QUESTIONS, headline_question};
use crate::domain::token::{self, TokenKind};
use crate::events;
use crate::store::anonymous_link;
use crate::store::counts::{self, Increment};
use crate::store::invitation::{self as invitations, NewInvitation, StoredInvitation};
use crate::store::response::{self as store, StoredResponse};
use crate::store::survey::{Lock, StoredSurvey};

/// Longest language tag accepted.
const MAX_LANGUAGE_LEN: usize = 35;

impl FeedbackApi {
    pub(super) async fn submit(
        &self,
        req: SubmitResponseRequest,
    ) -> ApiResult<SubmitResponseResponse> {
        let now = self.clock.now();
        let Some(kind) = token::kind_of(&req.token) else {
            return Err(invalid_token());
        };
        let mut violations = Violations::default();
        if req.answers.len() > MAX_QUESTIONS {
            violations.add("answers", format!("at most {MAX_QUESTIONS} answers"));
        }
        if req.language.len() > MAX_LANGUAGE_LEN {
            violations.add("language", "is not one of the survey's languages");
        }
        // Each call with a link starts a response: an empty one is not kept.
        if kind == TokenKind::AnonymousLink && req.answers.is_empty() {
            violations.add(
                "answers",
                "a response begun from a survey link needs an answer",
            );
        }
        check_request_id(&req.request_id, &mut violations);
        violations.check()?;

        let hash = token::hash(&req.token);
        let mut tx = self
            .db
            .begin_with_settings(&[("app.token_hash", &hash)])
            .await?;
        let (tenant, invitation, survey_id) = match kind {
            TokenKind::Invitation => {
                let found = invitations::find_by_token(&mut tx)
                    .await?
                    .ok_or_else(invalid_token)?;
                enter_tenant(&mut tx, found.tenant_id).await?;
                let invitation = invitations::lock(&mut tx, found.id)
                    .await?
                    .ok_or_else(invalid_token)?;
                let survey_id = invitation.survey_id;
                (found.tenant_id, Some(invitation), survey_id)
            }
            TokenKind::AnonymousLink => {
                let found = crate::store::survey::find_by_anonymous_token(&mut tx)
                    .await?
                    .ok_or_else(invalid_token)?;
                enter_tenant(&mut tx, found.tenant_id).await?;
                (found.tenant_id, None, found.id)
            }
        };
        // A retry of a call that went through gets its answer again, rather
        // than a second response (or RESPONSE_ALREADY_COMPLETED).
        let claim = match IDEMPOTENCY
            .claim(
                &mut tx,
                tenant,
                "SubmitResponse",
                &req.request_id,
                &req,
                now,
            )
            .await?
        {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed(claim) => claim,
        };
        // Shared until commit: an update or close of the survey waits for
        // this answer, or this answer for it (and then reads the new state).
        let survey = crate::store::survey::get(&mut tx, survey_id, Lock::Share)
            .await?
            .ok_or_else(|| survey_not_found(survey_id))?;
        if survey.status() != SurveyStatus::Active {
            return Err(ApiError::failed_precondition(
                ErrorReason::SurveyNotActive,
                "this survey is not taking responses",
            ));
        }
        let existing = match &invitation {
            Some(invitation) => {
                if invitation.complete_time.is_some() {
                    return Err(already_completed());
                }
                if invitation.expire_time <= now {
                    return Err(ApiError::failed_precondition(
                        ErrorReason::InvitationExpired,
                        "this invitation has expired and can no longer be answered",
                    ));
                }
                store::for_invitation(&mut tx, invitation.id).await?
            }
            None => None,
        };
        if existing.as_ref().is_some_and(StoredResponse::is_completed) {
            return Err(already_completed());
        }

        let mut violations = Violations::default();
        let language = pick_language(&survey, existing.as_ref(), &req.language, &mut violations);
        let saved = match &existing {
            Some(response) => store::answers(&mut tx, &[response.id])
                .await?
                .remove(&response.id)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let answers = answer::assemble(
            &survey.survey,
            saved,
            &req.answers,
            req.complete,
            &mut violations,
        );
        violations.check()?;

        // An anonymous link hands out an invitation of its own, whose token
        // continues the response.
        let (invitation, resume_token) = match invitation {
            Some(invitation) => (invitation, String::new()),
            None => {
                let (resume_token, token_hash) = token::generate(TokenKind::Invitation);
                let ttl = Duration::days(i64::from(rules::invitation_ttl_days(&survey.survey)));
                let created = invitations::insert(
                    &mut tx,
                    tenant,
                    survey.id,
                    true,
                    i16::try_from(survey.survey.channel).unwrap_or_default(),
                    &[NewInvitation {
                        id: Uuid::now_v7(),
                        contact_id: None,
                        token_hash,
                    }],
                    now,
                    now + ttl,
                )
                .await?;
                let invitation = created.into_iter().next().ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("inserting an invitation returned no row"))
                })?;
                (invitation, resume_token)
            }
        };
        let status = if req.complete {
            ResponseStatus::Completed
        } else {
            ResponseStatus::Partial
        };
        let headline = headline_question(&survey.survey).map(|q| q.id.as_str());
        let response = StoredResponse {
            id: existing.as_ref().map_or_else(Uuid::now_v7, |r| r.id),
            survey_id: survey.id,
            invitation_id: invitation.id,
            contact_id: invitation.contact_id,
            anonymous: invitation.anonymous,
            channel: invitation.channel,
            touchpoint: survey.survey.touchpoint.clone(),
            language,
            status: status as i16,
            score: answers
                .iter()
                .find(|a| Some(a.question_id.as_str()) == headline)
                .and_then(answer::score)
                .and_then(|score| i16::try_from(score).ok()),
            has_comment: answers
                .iter()
                .any(|a| matches!(a.value, Some(Value::Text(_)))),
            tags: existing
                .as_ref()
                .map(|r| r.tags.clone())
                .unwrap_or_default(),
            start_time: now,
            update_time: now,
            complete_time: req.complete.then_some(now),
        };
        if existing.is_some() {
            store::clear_answers(&mut tx, response.id).await?;
        }
        store::save(&mut tx, tenant, &response, &answers).await?;
        if req.complete {
            let submitted = events::response_submitted(&survey, &invitation, &response, &answers);
            invitations::complete(&mut tx, tenant, invitation.id, &submitted, now).await?;
            // Last: the rows it adds to are the most shared, so they are
            // held for the commit only.
            counts::add(
                &mut tx,
                tenant,
                survey.id,
                completion_counts(&invitation, &answers, now),
            )
            .await?;
        }
        if kind == TokenKind::AnonymousLink {
            count_anonymous_response(&mut tx, &survey, now).await?;
        }
        let submitted = SubmitResponseResponse {
            response_id: response.id.to_string(),
            status: status.into(),
            resume_token: if req.complete {
                String::new()
            } else {
                resume_token
            },
        };
        // Erasing the respondent drops the stored reply too.
        let subjects: Vec<Uuid> = [
            Some(response.id),
            Some(invitation.id),
            invitation.contact_id,
        ]
        .into_iter()
        .flatten()
        .collect();
        claim
            .complete(&mut tx, tenant, &submitted, &subjects, now)
            .await?;
        tx.commit().await?;
        Ok(submitted)
    }
}

/// Counts a response begun from `survey`'s anonymous link against its
/// hourly limit, or refuses it until the next hour. Last in the
/// transaction: the count is the survey's one row for the hour, held until
/// commit.
async fn count_anonymous_response(
    tx: &mut sqlx::PgConnection,
    survey: &StoredSurvey,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let hour = now
        .duration_trunc(Duration::hours(1))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("truncating {now} to the hour: {e}")))?;
    let limit = rules::anonymous_link_hourly_limit(&survey.survey);
    if anonymous_link::count_response(tx, survey.tenant_id, survey.id, hour, limit).await? {
        return Ok(());
    }
    let next_hour = hour + Duration::hours(1);
    Err(ApiError::resource_exhausted(
        ErrorReason::AnonymousLinkLimited,
        format!(
            "this survey's link has begun its {limit} responses for this hour; retry after the delay"
        ),
        (next_hour - now).to_std().unwrap_or_default(),
    ))
}

/// Leaves token-lookup mode for the token's tenant.
async fn enter_tenant(tx: &mut sqlx::PgConnection, tenant: Uuid) -> ApiResult<()> {
    set_local(
        tx,
        &[
            ("app.token_hash", ""),
            ("app.tenant_id", &tenant.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// The language to record: the one asked for, else the one already
/// recorded, else the survey's default.
fn pick_language(
    survey: &StoredSurvey,
    existing: Option<&StoredResponse>,
    requested: &str,
    violations: &mut Violations,
) -> String {
    if !requested.is_empty() {
        if !survey.survey.languages.iter().any(|l| l == requested) {
            violations.add(
                "language",
                format!(
                    "{requested:?} is not one of the survey's languages {:?}",
                    survey.survey.languages
                ),
            );
        }
        return requested.to_owned();
    }
    existing
        .map(|r| r.language.clone())
        .or_else(|| survey.survey.languages.first().cloned())
        .unwrap_or_default()
}

/// What completing a response with `answers` adds to its survey's counts.
fn completion_counts(
    invitation: &StoredInvitation,
    answers: &[Answer],
    now: DateTime<Utc>,
) -> Vec<Increment> {
    let day = now.date_naive();
    let mut increments = vec![Increment::metric(day, counts::COMPLETED, 1)];
    if !invitation.anonymous {
        increments.push(Increment::metric(
            invitation.create_time.date_naive(),
            counts::INVITED_COMPLETED,
            1,
        ));
    }
    for answer in answers {
        let answered = Increment::metric(day, &answer.question_id, 1);
        match &answer.value {
            Some(Value::Score(score)) => increments.push(Increment {
                score: i16::try_from(*score).unwrap_or(counts::NO_SCORE),
                ..answered
            }),
            Some(Value::Choices(selection)) => {
                increments.extend(selection.choice_ids.iter().map(|choice| Increment {
                    choice_id: choice.clone(),
                    ..answered.clone()
                }));
                increments.push(answered);
            }
            _ => increments.push(answered),
        }
    }
    increments
}

/// NOT_FOUND, not UNAUTHENTICATED: a survey token is a link, not a
/// credential, and clients must not answer it with re-authentication.
fn invalid_token() -> ApiError {
    ApiError::not_found(
        ErrorReason::InvalidSurveyToken,
        "the token is not a valid survey invitation or link; check the link you were sent",
    )
}

fn already_completed() -> ApiError {
    ApiError::failed_precondition(
        ErrorReason::ResponseAlreadyCompleted,
        "this invitation was already answered; the first answer stands",
    )
}
