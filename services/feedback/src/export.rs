//! A survey's responses as CSV: a header row, then one row per response in
//! id (creation) order, in chunks read in short transactions of their own
//! so that a slow reader holds no connection.

use futures::{FutureExt as _, StreamExt as _};
use rapport_core::api::ApiStream;
use rapport_core::api::export::{Chunk, ChunkSource, NextChunk, chunked};
use rapport_core::db::Tx;
use rapport_core::{ApiError, ApiResult};
use rapport_proto::common::v1::Channel;
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::{Answer, ExportResponsesResponse, ResponseStatus, Survey};
use sqlx::PgConnection;
use tonic::Status;
use uuid::Uuid;

use crate::store::response::{self as store, StoredResponse};

/// Responses per chunk.
const CHUNK: i64 = 500;

/// Columns before the one-per-question columns.
const FIXED_COLUMNS: [&str; 12] = [
    "response_id",
    "invitation_id",
    "contact_id",
    "status",
    "channel",
    "touchpoint",
    "language",
    "score",
    "tags",
    "start_time",
    "update_time",
    "complete_time",
];

/// The CSV of `survey`'s responses (only completed ones when
/// `completed_only`), read in `snapshot`: the header row, then the
/// responses in chunks.
pub fn csv_stream(
    snapshot: Tx,
    survey: Survey,
    completed_only: bool,
) -> ApiStream<ExportResponsesResponse> {
    let header = encode(&[header(&survey)]);
    let rows = chunked(
        snapshot,
        Rows {
            survey_id: Uuid::parse_str(&survey.id).unwrap_or_default(),
            survey,
            completed_only,
        },
    );
    Box::pin(futures::stream::once(async move { header.map_err(Status::from) }).chain(rows))
}

/// A survey's responses as CSV rows, in chunks.
struct Rows {
    survey_id: Uuid,
    survey: Survey,
    completed_only: bool,
}

impl ChunkSource for Rows {
    type Cursor = Uuid;
    type Message = ExportResponsesResponse;

    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a Uuid>,
    ) -> NextChunk<'a, ExportResponsesResponse, Uuid> {
        async move {
            let page = store::export_page(
                tx,
                self.survey_id,
                self.completed_only,
                after.copied(),
                CHUNK,
            )
            .await?;
            let Some(last) = page.last().map(|r| r.id) else {
                return Ok(None);
            };
            let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
            let mut answers = store::answers(tx, &ids).await?;
            let rows: Vec<Vec<String>> = page
                .iter()
                .map(|r| row(&self.survey, r, &answers.remove(&r.id).unwrap_or_default()))
                .collect();
            let next = (page.len() as i64 == CHUNK).then_some(last);
            Ok(Some(Chunk {
                message: encode(&rows)?,
                next,
            }))
        }
        .boxed()
    }
}

fn header(survey: &Survey) -> Vec<String> {
    FIXED_COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(survey.questions.iter().map(|q| format!("q_{}", q.id)))
        .collect()
}

fn row(survey: &Survey, response: &StoredResponse, answers: &[Answer]) -> Vec<String> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let status = ResponseStatus::try_from(i32::from(response.status))
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("RESPONSE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let channel = Channel::try_from(i32::from(response.channel))
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("CHANNEL_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let mut row = vec![
        response.id.to_string(),
        if response.anonymous {
            String::new()
        } else {
            response.invitation_id.to_string()
        },
        response
            .contact_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        status,
        channel,
        response.touchpoint.clone(),
        response.language.clone(),
        response.score.map(|s| s.to_string()).unwrap_or_default(),
        response.tags.join(";"),
        time(Some(response.start_time)),
        time(Some(response.update_time)),
        time(response.complete_time),
    ];
    row.extend(survey.questions.iter().map(|question| {
        match answers
            .iter()
            .find(|a| a.question_id == question.id)
            .and_then(|a| a.value.as_ref())
        {
            Some(Value::Score(score)) => score.to_string(),
            Some(Value::Choices(selection)) => selection.choice_ids.join(";"),
            Some(Value::Text(text)) => defuse_formula(text),
            None => String::new(),
        }
    }));
    row
}

/// Respondents write free text, and spreadsheets run cells that start like
/// a formula: such a cell gets a leading apostrophe (OWASP's advice for CSV
/// injection), which spreadsheets show as text.
fn defuse_formula(text: &str) -> String {
    // Spreadsheets skip leading blanks before reading a formula.
    let start = text.trim_start_matches([' ', '\t', '\r', '\n']);
    if start.len() != text.len() || start.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn encode(rows: &[Vec<String>]) -> ApiResult<ExportResponsesResponse> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.write_record(row).map_err(ApiError::internal)?;
    }
    let csv_chunk = writer
        .into_inner()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    Ok(ExportResponsesResponse { csv_chunk })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_in_free_text_are_defused() {
        assert_eq!(defuse_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse_formula("great = fast"), "great = fast");
        assert_eq!(defuse_formula("\n =1+1"), "'\n =1+1");
    }

    #[test]
    fn fields_with_commas_quotes_and_newlines_are_quoted() {
        let chunk = encode(&[vec![
            "plain".into(),
            "a, b".into(),
            "say \"hi\"".into(),
            "two\nlines".into(),
        ]])
        .unwrap();
        assert_eq!(
            String::from_utf8(chunk.csv_chunk).unwrap(),
            "plain,\"a, b\",\"say \"\"hi\"\"\",\"two\nlines\"\n"
        );
    }
}
