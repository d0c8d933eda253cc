//! Issue figures for the feedback service: SubmitResponse throughput
//! through the gateway (public calls, one invitation token each), and the
//! time of a survey summary over 100,000 and then 1,000,000 responses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rapport_client::{Auth, RapportClient, Transport};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{BatchUpsertContactsRequest, Contact};
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::feedback::v1::*;
use uuid::Uuid;

use crate::Args;
use crate::load::closed_loop;
use crate::stack::{Stack, connect};

/// HTTP/2 connections the public load is spread over.
const CONNECTIONS: usize = 4;
/// Contacts per CreateInvitations call (its maximum).
const INVITE_BATCH: usize = 1000;
/// Responses written per seeding statement.
const SEED_CHUNK: i64 = 100_000;
/// Summary calls timed at each size; the median is reported.
const SUMMARY_RUNS: usize = 5;

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<()> {
    let tenant_client = connect(&stack.gateway, Auth::ApiKey(stack.api_key.clone()), 1)
        .await?
        .remove(0);
    let mut feedback = tenant_client.feedback();
    submit_throughput(args, stack, &tenant_client, &mut feedback).await?;
    summary_growth(args, stack, &mut feedback).await
}

async fn submit_throughput(
    args: &Args,
    stack: &Stack,
    tenant_client: &RapportClient,
    feedback: &mut FeedbackServiceClient<Transport>,
) -> anyhow::Result<()> {
    let survey = active_survey(feedback, "bench-submit").await?;
    let mut contacts = tenant_client.contacts();
    let mut tokens = Vec::with_capacity(args.submit_invitations);
    while tokens.len() < args.submit_invitations {
        // Invitations go to contacts only: a batch of new ones each time.
        let invitees = (0..INVITE_BATCH)
            .map(|_| Contact {
                email: format!("{}@invitee.example.com", Uuid::now_v7()),
                ..Default::default()
            })
            .collect();
        let invitees = contacts
            .batch_upsert_contacts(BatchUpsertContactsRequest {
                contacts: invitees,
                request_id: String::new(),
            })
            .await?
            .into_inner()
            .contacts;
        let invited = feedback
            .create_invitations(CreateInvitationsRequest {
                survey_id: survey.clone(),
                contact_ids: invitees.into_iter().map(|c| c.id).collect(),
                ..Default::default()
            })
            .await?
            .into_inner();
        tokens.extend(invited.invitations.into_iter().map(|i| i.token));
    }
    let tokens = Arc::new(tokens);
    let public: Arc<Vec<RapportClient>> =
        Arc::new(connect(&stack.gateway, Auth::Public, CONNECTIONS).await?);
    let used = tokens.clone();
    let report = closed_loop(
        args.concurrency,
        Duration::from_secs(1),
        Duration::from_secs(args.seconds),
        move |i| {
            let mut client = public[i % CONNECTIONS].feedback();
            let token = used.get(i).cloned();
            async move {
                let Some(token) = token else { return false };
                client
                    .submit_response(SubmitResponseRequest {
                        token,
                        answers: answers(i),
                        complete: true,
                        ..Default::default()
                    })
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    println!(
        "feedback: SubmitResponse through the gateway (public, a token each), {} calls in flight, {} s",
        args.concurrency, args.seconds
    );
    println!("  throughput   {:>10.0} responses/s", report.per_second());
    println!(
        "  latency      p50 {:.2} ms, p99 {:.2} ms",
        report.p(0.50),
        report.p(0.99)
    );
    println!(
        "  errors       {}{}\n",
        report.errors,
        if report.errors > 0 {
            format!(" (raise --submit-invitations above {})", tokens.len())
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A respondent's answers: an NPS score, a CSAT score, and a comment from
/// one in five.
fn answers(i: usize) -> Vec<Answer> {
    let mut answers = vec![
        Answer {
            question_id: "nps".into(),
            value: Some(Value::Score((i % 11) as i32)),
        },
        Answer {
            question_id: "csat".into(),
            value: Some(Value::Score((i % 5) as i32 + 1)),
        },
    ];
    if i.is_multiple_of(5) {
        answers.push(Answer {
            question_id: "why".into(),
            value: Some(Value::Text("The reply took two days".into())),
        });
    }
    answers
}

async fn summary_growth(
    args: &Args,
    stack: &Stack,
    feedback: &mut FeedbackServiceClient<Transport>,
) -> anyhow::Result<()> {
    let survey = active_survey(feedback, "bench-summary").await?;
    let survey_id: Uuid = survey.parse()?;
    let mut admin = stack.db.admin().await;
    let small = args.summary_responses / 10;
    println!(
        "feedback: GetSurveySummary (NPS, CSAT and free text), median of {SUMMARY_RUNS} calls"
    );
    let mut seeded = 0;
    let mut previous: Option<(i64, Duration)> = None;
    for target in [small, args.summary_responses] {
        let started = Instant::now();
        while seeded < target {
            let chunk = SEED_CHUNK.min(target - seeded);
            seed(&mut admin, stack.tenant, survey_id, chunk).await?;
            seeded += chunk;
        }
        recount(&mut admin, survey_id).await?;
        // As autovacuum would after such a load.
        sqlx::query(
            "VACUUM ANALYZE feedback.answers, feedback.responses, feedback.invitations, \
             feedback.survey_counts",
        )
        .execute(&mut admin)
        .await?;
        let seeding = started.elapsed();
        let time = median_summary_time(feedback, &survey, target).await?;
        let growth = previous
            .map(|(count, before)| {
                format!(
                    "   ({:.1}x the time for {:.0}x the responses)",
                    time.as_secs_f64() / before.as_secs_f64(),
                    target as f64 / count as f64
                )
            })
            .unwrap_or_default();
        println!(
            "  {target:>9} responses   {:>8.1} ms{growth}   (seeded in {:.0} s)",
            time.as_secs_f64() * 1000.0,
            seeding.as_secs_f64()
        );
        previous = Some((target, time));
    }
    println!();
    Ok(())
}

async fn median_summary_time(
    feedback: &mut FeedbackServiceClient<Transport>,
    survey: &str,
    expected: i64,
) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(SUMMARY_RUNS);
    for _ in 0..SUMMARY_RUNS {
        let started = Instant::now();
        let summary = feedback
            .get_survey_summary(GetSurveySummaryRequest {
                survey_id: survey.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .summary
            .unwrap_or_default();
        times.push(started.elapsed());
        anyhow::ensure!(
            summary.completed_count == expected,
            "the summary counted {} responses, not {expected}",
            summary.completed_count
        );
    }
    times.sort();
    Ok(times[SUMMARY_RUNS / 2])
}

/// Writes `count` completed responses straight into the schema (their
/// running counts follow in [`recount`]), as the seeding of a benchmark
/// may: an NPS score each, a CSAT score from six in ten, a comment from one
/// in five.
async fn seed(
    admin: &mut sqlx::PgConnection,
    tenant: Uuid,
    survey: Uuid,
    count: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "WITH inv AS ( \
             INSERT INTO feedback.invitations (tenant_id, id, survey_id, contact_id, anonymous, \
                 channel, token_hash, create_time, expire_time, complete_time) \
             SELECT $1, gen_random_uuid(), $2, gen_random_uuid(), false, 1, md5(random()::text), \
                 now(), now() + interval '30 days', now() \
             FROM generate_series(1, $3) \
             RETURNING id, contact_id), \
         resp AS ( \
             INSERT INTO feedback.responses (tenant_id, id, survey_id, invitation_id, contact_id, \
                 anonymous, channel, touchpoint, language, status, score, has_comment, \
                 start_time, update_time, complete_time) \
             SELECT $1, gen_random_uuid(), $2, inv.id, inv.contact_id, false, 1, 'bench-summary', \
                 'en', 2, floor(random() * 11)::int2, random() < 0.2, now(), now(), now() \
             FROM inv \
             RETURNING id, score, has_comment, complete_time) \
         INSERT INTO feedback.answers (tenant_id, response_id, question_id, ordinal, survey_id, \
             score, text, complete_time) \
         SELECT $1, r.id, a.question_id, a.ordinal, $2, a.score, a.text, r.complete_time \
         FROM resp AS r CROSS JOIN LATERAL (VALUES \
             ('nps', 1::int2, r.score, NULL::text), \
             ('csat', 2::int2, (1 + floor(random() * 5))::int2, NULL::text), \
             ('why', 3::int2, NULL::int2, 'The reply took two days')) \
             AS a(question_id, ordinal, score, text) \
         WHERE a.question_id = 'nps' \
            OR (a.question_id = 'csat' AND random() < 0.6) \
            OR (a.question_id = 'why' AND r.has_comment)",
    )
    .bind(tenant)
    .bind(survey)
    .bind(count)
    .execute(admin)
    .await?;
    Ok(())
}

/// Rebuilds the survey's running counts from the seeded rows, as
/// SubmitResponse and CreateInvitations keep them (one slot).
async fn recount(admin: &mut sqlx::PgConnection, survey: Uuid) -> anyhow::Result<()> {
    for statement in [
        "DELETE FROM feedback.survey_counts WHERE survey_id = $1",
        "INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count) \
         SELECT tenant_id, survey_id, (complete_time AT TIME ZONE 'UTC')::date, '#completed', -1, '', 0, count(*) \
         FROM feedback.responses WHERE survey_id = $1 AND status = 2 GROUP BY 1, 2, 3",
        "INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count) \
         SELECT tenant_id, survey_id, (complete_time AT TIME ZONE 'UTC')::date, question_id, coalesce(score, -1), '', 0, count(*) \
         FROM feedback.answers WHERE survey_id = $1 AND complete_time IS NOT NULL GROUP BY 1, 2, 3, 4, 5",
        "INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count) \
         SELECT tenant_id, survey_id, (create_time AT TIME ZONE 'UTC')::date, m.metric, -1, '', 0, count(*) \
         FROM feedback.invitations, \
              LATERAL (VALUES ('#invited', true), ('#invited_completed', complete_time IS NOT NULL)) AS m(metric, counted) \
         WHERE survey_id = $1 AND NOT anonymous AND m.counted GROUP BY 1, 2, 3, 4",
    ] {
        sqlx::query(statement)
            .bind(survey)
            .execute(&mut *admin)
            .await?;
    }
    Ok(())
}

/// An active survey: nps (required), csat, why (free text).
async fn active_survey(
    feedback: &mut FeedbackServiceClient<Transport>,
    touchpoint: &str,
) -> anyhow::Result<String> {
    let english = |text: &str| BTreeMap::from([("en".to_owned(), text.to_owned())]);
    let question = |id: &str, kind: QuestionKind, required: bool| Question {
        id: id.into(),
        kind: kind.into(),
        required,
        text: english(id),
        ..Default::default()
    };
    let survey = Survey {
        name: touchpoint.into(),
        touchpoint: touchpoint.into(),
        channel: Channel::Email.into(),
        languages: vec!["en".into()],
        title: english("How did we do?"),
        questions: vec![
            question("nps", QuestionKind::Nps, true),
            question("csat", QuestionKind::Csat, false),
            question("why", QuestionKind::FreeText, false),
        ],
        ..Default::default()
    };
    let created = feedback
        .create_survey(CreateSurveyRequest {
            survey: Some(survey),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .survey
        .unwrap_or_default();
    feedback
        .activate_survey(ActivateSurveyRequest {
            id: created.id.clone(),
        })
        .await?;
    Ok(created.id)
}
