//! `rapportctl feedback`: surveys, invitations, answers and summaries.

use std::collections::BTreeMap;
use std::io::Write as _;

use clap::Subcommand;
use futures::StreamExt as _;
use rapport_client::RapportClient;
use rapport_proto::common::v1::Channel;
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::question_summary::Figures;
use rapport_proto::feedback::v1::*;

use crate::{parse_channel, short_name};

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Create and activate a ready-made NPS survey: "nps" (0–10, required),
    /// then "why" (free text) for detractors.
    NpsSurvey {
        #[arg(long)]
        name: String,
        /// Such as post-support or post-purchase.
        #[arg(long)]
        touchpoint: String,
        /// email, sms, push, in-app, chat, web, phone or social.
        #[arg(long, value_parser = parse_channel, default_value = "email")]
        channel: Channel,
        /// Also open an anonymous link anyone can answer with.
        #[arg(long)]
        anonymous_link: bool,
    },
    /// List surveys, newest first.
    Surveys,
    /// Invite contacts to a survey; prints each invitation's token.
    Invite {
        survey_id: String,
        #[arg(required = true)]
        contact_ids: Vec<String>,
    },
    /// Answer as a respondent with an invitation or link token (no API key
    /// needed).
    Answer {
        token: String,
        /// A score answer, as question=score (repeatable).
        #[arg(long = "score", value_parser = parse_pair)]
        scores: Vec<(String, String)>,
        /// A free-text answer, as question=text (repeatable).
        #[arg(long = "text", value_parser = parse_pair)]
        texts: Vec<(String, String)>,
        /// A choice answer, as question=choice[,choice] (repeatable).
        #[arg(long = "choice", value_parser = parse_pair)]
        choices: Vec<(String, String)>,
        /// Save without completing; answer again with the same (or the
        /// printed resume) token to go on.
        #[arg(long)]
        partial: bool,
    },
    /// Show a survey's summary: counts, NPS with its margin, CSAT, CES...
    Summary { survey_id: String },
    /// Write a survey's responses as CSV to standard output.
    Export {
        survey_id: String,
        /// Partial responses too.
        #[arg(long)]
        all: bool,
    },
}

/// Whether the command is answered without an API key.
pub fn is_public(command: &FeedbackCommand) -> bool {
    matches!(command, FeedbackCommand::Answer { .. })
}

pub async fn run(client: &RapportClient, command: FeedbackCommand) -> anyhow::Result<()> {
    let mut feedback = client.feedback();
    match command {
        FeedbackCommand::NpsSurvey {
            name,
            touchpoint,
            channel,
            anonymous_link,
        } => {
            let created = feedback
                .create_survey(CreateSurveyRequest {
                    survey: Some(nps_survey(name, touchpoint, channel, anonymous_link)),
                    request_id: String::new(),
                })
                .await?
                .into_inner()
                .survey
                .unwrap_or_default();
            let survey = feedback
                .activate_survey(ActivateSurveyRequest { id: created.id })
                .await?
                .into_inner()
                .survey
                .unwrap_or_default();
            println!("id         {}", survey.id);
            println!(
                "status     {}",
                short_name(survey.status().as_str_name(), "SURVEY_STATUS_")
            );
            if !survey.anonymous_link_token.is_empty() {
                println!("link token {}", survey.anonymous_link_token);
            }
        }
        FeedbackCommand::Surveys => {
            let page = feedback
                .list_surveys(ListSurveysRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            for survey in page.surveys {
                println!(
                    "{}  {:<7} {:<16} {}",
                    survey.id,
                    short_name(survey.status().as_str_name(), "SURVEY_STATUS_"),
                    survey.touchpoint,
                    survey.name
                );
            }
        }
        FeedbackCommand::Invite {
            survey_id,
            contact_ids,
        } => {
            let invited = feedback
                .create_invitations(CreateInvitationsRequest {
                    survey_id,
                    contact_ids,
                    ..Default::default()
                })
                .await?
                .into_inner();
            for invitation in invited.invitations {
                println!(
                    "invited {}  token {}",
                    invitation.contact_id, invitation.token
                );
            }
            for skipped in invited.skipped {
                println!(
                    "skipped {}  {}",
                    skipped.contact_id,
                    short_name(skipped.reason().as_str_name(), "SKIP_REASON_")
                );
            }
        }
        FeedbackCommand::Answer {
            token,
            scores,
            texts,
            choices,
            partial,
        } => {
            let mut answers = Vec::new();
            for (question_id, score) in scores {
                let score = score
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--score {question_id}={score}: not a number"))?;
                answers.push(Answer {
                    question_id,
                    value: Some(Value::Score(score)),
                });
            }
            answers.extend(texts.into_iter().map(|(question_id, text)| Answer {
                question_id,
                value: Some(Value::Text(text)),
            }));
            answers.extend(choices.into_iter().map(|(question_id, picked)| Answer {
                question_id,
                value: Some(Value::Choices(ChoiceSelection {
                    choice_ids: picked.split(',').map(str::to_owned).collect(),
                })),
            }));
            let saved = feedback
                .submit_response(SubmitResponseRequest {
                    token,
                    answers,
                    complete: !partial,
                    language: String::new(),
                    request_id: uuid::Uuid::now_v7().to_string(),
                })
                .await?
                .into_inner();
            println!("response   {}", saved.response_id);
            println!(
                "status     {}",
                short_name(saved.status().as_str_name(), "RESPONSE_STATUS_")
            );
            if !saved.resume_token.is_empty() {
                println!("resume     {}", saved.resume_token);
            }
        }
        FeedbackCommand::Summary { survey_id } => {
            let summary = feedback
                .get_survey_summary(GetSurveySummaryRequest {
                    survey_id,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .summary
                .unwrap_or_default();
            print_summary(&summary);
        }
        FeedbackCommand::Export { survey_id, all } => {
            let mut stream = feedback
                .export_responses(ExportResponsesRequest {
                    survey_id,
                    completed_only: !all,
                })
                .await?
                .into_inner();
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?.csv_chunk)?;
            }
        }
    }
    Ok(())
}

fn nps_survey(name: String, touchpoint: String, channel: Channel, anonymous_link: bool) -> Survey {
    let english = |text: &str| BTreeMap::from([("en".to_owned(), text.to_owned())]);
    Survey {
        name,
        touchpoint,
        channel: channel.into(),
        languages: vec!["en".into()],
        title: english("How did we do?"),
        questions: vec![
            Question {
                id: "nps".into(),
                kind: QuestionKind::Nps.into(),
                required: true,
                text: english("How likely are you to recommend us to a friend?"),
                ..Default::default()
            },
            Question {
                id: "why".into(),
                kind: QuestionKind::FreeText.into(),
                text: english("What should we do better?"),
                show_if: Some(ShowCondition {
                    question_id: "nps".into(),
                    min_score: 0,
                    max_score: 6,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        anonymous_link_enabled: anonymous_link,
        ..Default::default()
    }
}

fn print_summary(summary: &SurveySummary) {
    println!("completed  {}", summary.completed_count);
    println!("partial    {}", summary.partial_count);
    println!("invited    {}", summary.invited_count);
    if let Some(rate) = summary.response_rate {
        println!("response   {:.1}%", rate * 100.0);
    }
    for question in &summary.questions {
        let figures = match &question.figures {
            Some(Figures::Nps(f)) => format!(
                "NPS {:+.1} ± {:.1} ({} promoters, {} passives, {} detractors)",
                f.nps, f.margin_of_error, f.promoters, f.passives, f.detractors
            ),
            Some(Figures::Csat(f)) => format!("CSAT {:.1}%, mean {:.2}", f.csat_percent, f.mean),
            Some(Figures::Ces(f)) => {
                format!("CES mean {:.2}, {:.1}% agree", f.mean, f.agree_percent)
            }
            Some(Figures::Rating(f)) => format!("rating mean {:.2}", f.mean),
            Some(Figures::Choice(f)) => f
                .counts
                .iter()
                .map(|c| format!("{} {}", c.choice_id, c.count))
                .collect::<Vec<_>>()
                .join(", "),
            None => String::new(),
        };
        println!(
            "{:<10} answered {}, skipped {}  {figures}",
            question.question_id, question.answered_count, question.skipped_count
        );
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not question=value"))
}
