//! Time sweeps: for each segment whose rule has a window relative to now,
//! the moment up to which time's effects have been applied, and the
//! contacts a window's edge passed over since. An edge passes a contact
//! when one of its dated facts crosses it, so the indexes on those dates
//! find them without reading everyone.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::crossings;
use crate::domain::reads::TimeEdge;
use crate::domain::rule::Window;

/// Sweeps `segment` from `from` on (its build judged everyone then), or
/// stops sweeping it when its rule has no edge.
pub async fn schedule(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    has_edges: bool,
    from: DateTime<Utc>,
) -> sqlx::Result<()> {
    if !has_edges {
        sqlx::query("DELETE FROM segmentation.sweeps WHERE segment_id = $1")
            .bind(segment)
            .execute(tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO segmentation.sweeps (tenant_id, segment_id, swept_until) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, segment_id) DO UPDATE SET swept_until = excluded.swept_until",
    )
    .bind(tenant)
    .bind(segment)
    .bind(from)
    .execute(tx)
    .await?;
    Ok(())
}

/// Segments last swept before `before`, oldest first (run with no tenant
/// set: the table holds ids and times only).
pub async fn due(
    tx: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as(
        "SELECT tenant_id, segment_id FROM segmentation.sweeps \
         WHERE swept_until < $1 ORDER BY swept_until LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Takes `segment`'s sweep for this transaction: where it was left, or
/// `None` when another replica holds it or it is gone.
pub async fn take(tx: &mut PgConnection, segment: Uuid) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT swept_until FROM segmentation.sweeps WHERE segment_id = $1 \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(segment)
    .fetch_optional(tx)
    .await
}

/// Records that time's effects on `segment` are applied up to `until`.
pub async fn advance(
    tx: &mut PgConnection,
    segment: Uuid,
    until: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE segmentation.sweeps SET swept_until = $2 WHERE segment_id = $1")
        .bind(segment)
        .bind(until)
        .execute(tx)
        .await?;
    Ok(())
}

/// The contacts of `tenant` with a fact that crossed one of `edges` in
/// `[from, to)` (and those whose lead score `segment` noted would decay
/// past a bound by `to`), in id order. A window `[now - d, now)` loses a fact
/// dated `t` when now passes `t + d`, and gains one dated in the future
/// when now passes `t`; "more than d days ago" gains it at `t + d`.
pub async fn crossed(
    tx: &mut PgConnection,
    tenant: Uuid,
    segment: Uuid,
    edges: &[TimeEdge],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> sqlx::Result<Vec<Uuid>> {
    let mut contacts = Vec::new();
    for edge in edges {
        let found: Vec<Uuid> = match edge {
            TimeEdge::Events { event_type, window } => {
                let spans = spans(*window, from, to);
                let key = Some(("type", Key::Text(event_type)));
                // Only events dated ahead of the batch that applied them
                // arrive later: the others were counted when judged.
                let ahead = Some("occur_time >= applied_time");
                dated(tx, tenant, "events", "occur_time", key, spans, ahead).await?
            }
            TimeEdge::StageEntered { stage, within_days } => {
                let spans = spans(Window::Within(*within_days), from, to);
                let key = Some(("stage", Key::Number(*stage)));
                dated(tx, tenant, "stage_changes", "change_time", key, spans, None).await?
            }
            TimeEdge::Answers { kind, window } => {
                let spans = spans(*window, from, to);
                let key = Some(("kind", Key::Number(*kind)));
                dated(tx, tenant, "answers", "answer_time", key, spans, None).await?
            }
            TimeEdge::Created(window) => {
                let spans = spans(*window, from, to);
                dated(tx, tenant, "profiles", "create_time", None, spans, None).await?
            }
            TimeEdge::AttributeDaysAgo { path, days } => {
                // Compared with a moment that moves (not a date of its
                // own that an index could hold): every profile is read.
                // The edge is included: `<=` and `=` flip on it.
                let days = Duration::days(i64::from(*days));
                sqlx::query_scalar(
                    "SELECT contact_id FROM segmentation.profiles \
                     WHERE tenant_id = $1 \
                       AND segmentation.attribute_time(attributes #> $2) BETWEEN $3 AND $4",
                )
                .bind(tenant)
                .bind(path)
                .bind(from - days)
                .bind(to - days)
                .fetch_all(&mut *tx)
                .await?
            }
            // Noted per contact as they were judged: every moment come
            // (a judgement replaces the note, so none is seen twice).
            TimeEdge::ScoreDecay => crossings::due(tx, tenant, segment, to).await?,
            TimeEdge::PropertyDaysAgo {
                event_type,
                path,
                days,
            } => {
                let days = Duration::days(i64::from(*days));
                sqlx::query_scalar(
                    "SELECT contact_id FROM segmentation.events \
                     WHERE tenant_id = $1 AND type = $2 \
                       AND segmentation.attribute_time(properties #> $3) BETWEEN $4 AND $5",
                )
                .bind(tenant)
                .bind(event_type)
                .bind(path)
                .bind(from - days)
                .bind(to - days)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        contacts.extend(found);
    }
    contacts.sort_unstable();
    contacts.dedup();
    Ok(contacts)
}

type Span = (DateTime<Utc>, DateTime<Utc>);

/// What picks the facts a leaf reads: an event type, a stage, a kind.
enum Key<'a> {
    Text(&'a str),
    Number(i16),
}

/// The contacts of `tenant` with a row of `table` (those whose `key`
/// column holds the key, if given) dated by `date` in either span; in the
/// arrival span only the rows `ahead` picks, if given.
async fn dated(
    tx: &mut PgConnection,
    tenant: Uuid,
    table: &str,
    date: &str,
    key: Option<(&str, Key<'_>)>,
    (aged, arrived): (Span, Span),
    ahead: Option<&str>,
) -> sqlx::Result<Vec<Uuid>> {
    let filter = key
        .as_ref()
        .map(|(column, _)| format!(" AND {column} = $6"))
        .unwrap_or_default();
    let ahead = ahead
        .map(|ahead| format!(" AND {ahead}"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT contact_id FROM segmentation.{table} WHERE tenant_id = $1{filter} \
           AND (({date} >= $2 AND {date} < $3) OR ({date} >= $4 AND {date} < $5{ahead}))"
    );
    let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(aged.0)
        .bind(aged.1)
        .bind(arrived.0)
        .bind(arrived.1);
    let query = match key {
        Some((_, Key::Text(text))) => query.bind(text.to_owned()),
        Some((_, Key::Number(number))) => query.bind(number),
        None => query,
    };
    query.fetch_all(tx).await
}

/// For a window relative to now, the dates whose facts leave it (or, for
/// "more than d days ago", enter it) while now moves over `[from, to)`,
/// and the dates that arrive in "the last d days" (future-dated facts);
/// an empty span where there is none.
fn spans(window: Window, from: DateTime<Utc>, to: DateTime<Utc>) -> (Span, Span) {
    let none = (from, from);
    match window {
        Window::Within(days) => {
            let days = Duration::days(i64::from(days));
            ((from - days, to - days), (from, to))
        }
        Window::Before(days) => {
            let days = Duration::days(i64::from(days));
            ((from - days, to - days), none)
        }
        Window::Between(..) | Window::Ever => (none, none),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_window_loses_what_ages_out_and_gains_what_was_dated_ahead() {
        let from = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let to = from + Duration::minutes(1);
        let thirty = Duration::days(30);
        assert_eq!(
            spans(Window::Within(30), from, to),
            ((from - thirty, to - thirty), (from, to))
        );
        assert_eq!(
            spans(Window::Before(30), from, to),
            ((from - thirty, to - thirty), (from, from))
        );
        assert_eq!(spans(Window::Ever, from, to), ((from, from), (from, from)));
    }
}
