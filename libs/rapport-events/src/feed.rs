//! The change feed a producer serves: `rapport.events.v1.EventFeedService`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::Stream;
use prost::Message as _;
use rapport_core::convert::to_timestamp;
use rapport_core::credential::Access;
use rapport_core::db::begin_with_settings;
use rapport_core::tenant::authorize_service;
use rapport_core::{ApiError, Violations};
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::events::v1::ErrorReason;
use rapport_proto::events::v1::event_feed_service_server::EventFeedService;
use rapport_proto::events::v1::{
    EventEnvelope, GetFeedHeadRequest, GetFeedHeadResponse, GetSnapshotRequest, SubscribeRequest,
    SubscribeResponse,
};
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, FromRow, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::outbox::Outbox;
use crate::snapshot::{self, SnapshotSource, SnapshotStream};

/// Positions read per query while catching up.
const PAGE: i64 = 500;
/// The longest a follower waits before looking again without a wake-up.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The least time between progress messages: a filtered subscriber learns
/// it may move its cursor past left-out events about once a second, not
/// once per commit.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Serves one producer's feed. Followers wait on the newest position,
/// which one listener per process ([`track_head`]) learns from the
/// sequencer's notifications; they never poll the database in a busy loop.
#[derive(Clone)]
pub struct Feed {
    pool: PgPool,
    outbox: Outbox,
    head: watch::Receiver<i64>,
    /// Cancelled when the service stops: subscriptions then end with
    /// UNAVAILABLE, and their consumers resume from their cursors.
    draining: CancellationToken,
    snapshot: Arc<dyn SnapshotSource>,
}

impl Feed {
    /// The feed of `outbox`, whose newest position `head` tracks, and
    /// whose snapshot `snapshot` reads.
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        head: watch::Receiver<i64>,
        draining: CancellationToken,
        snapshot: Arc<dyn SnapshotSource>,
    ) -> Self {
        Self {
            pool,
            outbox,
            head,
            draining,
            snapshot,
        }
    }
}

/// Keeps `head` at the newest position, from notifications (and a read
/// at each reconnect, so none is missed), until `stop`.
pub async fn track_head(
    pool: PgPool,
    outbox: Outbox,
    head: watch::Sender<i64>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&outbox.feed_channel()).await?;
            head.send_replace(read_head(&pool, &outbox).await?);
            loop {
                let notification = listener.recv().await?;
                if let Ok(position) = notification.payload().parse::<i64>() {
                    head.send_if_modified(|current| {
                        let newer = position > *current;
                        if newer {
                            *current = position;
                        }
                        newer
                    });
                }
            }
        };
        let result: sqlx::Result<()> = tokio::select! {
            () = stop.cancelled() => return,
            result = listening => result,
        };
        if let Err(error) = result {
            tracing::warn!(%error, producer = outbox.producer, "feed listener lost its connection; reconnecting");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
        }
    }
}

async fn read_head(pool: &PgPool, outbox: &Outbox) -> sqlx::Result<i64> {
    let mut tx = begin_with_settings(pool, &[("app.feed", "on")]).await?;
    let head = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT last_position FROM {}",
        outbox.state_table()
    )))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(head)
}

#[derive(FromRow)]
struct Row {
    tenant_id: Uuid,
    event_id: Uuid,
    position: i64,
    r#type: String,
    aggregate_id: Uuid,
    occur_time: DateTime<Utc>,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

impl Row {
    fn into_envelope(self, producer: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: self.event_id.to_string(),
            tenant_id: self.tenant_id.to_string(),
            producer: producer.to_owned(),
            r#type: self.r#type,
            aggregate_id: self.aggregate_id.to_string(),
            occur_time: Some(to_timestamp(self.occur_time)),
            position: self.position,
            // A redacted payload is empty.
            payload: prost_types::Any::decode(self.payload.as_slice()).ok(),
            traceparent: self.traceparent.unwrap_or_default(),
        }
    }
}

/// One page of a subscription.
struct Page {
    /// The matching events, in position order.
    rows: Vec<Row>,
    /// The position through which the page looked: no later event is
    /// missing from `rows`, matching or not.
    scanned_through: i64,
    head: i64,
}

impl Feed {
    /// The events after `after` that match `types` (all when empty) among
    /// the next [`PAGE`] positions, up to the head as it was when the page
    /// was read, or FEED_CURSOR_EXPIRED when events after `after` were
    /// pruned.
    ///
    /// A page is a window of positions, not the first rows past `after`:
    /// positions have no gaps, so the window bounds the rows any plan
    /// reads. (Asked for the first rows of an open range, the planner,
    /// which cannot see through the row-level policy that every row passes,
    /// chose to read the whole backlog and sort it: 50 ms a page behind a
    /// burst of 100,000 events.)
    ///
    /// The head is read first, so every position up to it has committed
    /// and the rows are complete up to it; the prune mark is read last, so a
    /// prune that removed any of the rows is always seen.
    async fn page(&self, after: i64, types: &[String]) -> Result<Page, Status> {
        let mut tx = begin_with_settings(&self.pool, &[("app.feed", "on")])
            .await
            .map_err(ApiError::from)?;
        let state = |column: &str| {
            AssertSqlSafe(format!(
                "SELECT {column} FROM {}",
                self.outbox.state_table()
            ))
        };
        let head: i64 = sqlx::query_scalar(state("last_position"))
            .fetch_one(&mut *tx)
            .await
            .map_err(ApiError::from)?;
        let through = head.min(after + PAGE).max(after);
        let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT tenant_id, event_id, position, type, aggregate_id, occur_time, payload, traceparent \
             FROM {} \
             WHERE position > $1 AND position <= $2 \
               AND (cardinality($3::text[]) = 0 OR type = ANY($3)) \
             ORDER BY position",
            self.outbox.table()
        )))
        .bind(after)
        .bind(through)
        .bind(types)
        .fetch_all(&mut *tx)
        .await
        .map_err(ApiError::from)?;
        let pruned: i64 = sqlx::query_scalar(state("pruned_through"))
            .fetch_one(&mut *tx)
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        if after < pruned {
            return Err(expired(after, pruned, self.outbox.producer));
        }
        Ok(Page {
            rows,
            scanned_through: through,
            head,
        })
    }
}

/// FAILED_PRECONDITION for a cursor the retained feed no longer covers.
fn expired(after: i64, pruned: i64, producer: &str) -> Status {
    ApiError::failed_precondition(
        ErrorReason::FeedCursorExpired,
        format!(
            "events after position {after} were pruned (through {pruned}); rebuild from the {producer} API and subscribe from GetFeedHead"
        ),
    )
    .with_metadata("pruned_through", pruned.to_string())
    .into()
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

struct Follow {
    feed: Feed,
    head: watch::Receiver<i64>,
    /// The position the subscriber has been told of.
    cursor: i64,
    /// The position through which the feed has looked; beyond `cursor`
    /// when the filter left events out.
    scanned_through: i64,
    last_head: i64,
    types: Vec<String>,
    buffered: VecDeque<Row>,
    /// When the subscriber last got a message, to space progress messages.
    last_sent: Instant,
}

impl Follow {
    /// The next message: an event from the buffer, else progress past
    /// events the filter left out (at most once per [`PROGRESS_INTERVAL`]),
    /// else the next page, else after the head moves (or a second passes,
    /// as a safety net).
    async fn next(mut self) -> Result<Option<(SubscribeResponse, Self)>, Status> {
        loop {
            if self.feed.draining.is_cancelled() {
                return Err(ApiError::unavailable(
                    Common::ServiceStopping,
                    "the producer is stopping; resubscribe from your cursor",
                    Duration::from_millis(100),
                )
                .into());
            }
            if let Some(row) = self.buffered.pop_front() {
                self.cursor = row.position;
                let head_position = (*self.head.borrow()).max(self.last_head).max(row.position);
                let event = row.into_envelope(self.feed.outbox.producer);
                return Ok(Some(self.send(Some(event), head_position)));
            }
            if self.scanned_through > self.cursor && self.last_sent.elapsed() >= PROGRESS_INTERVAL {
                self.cursor = self.scanned_through;
                let head_position = self.last_head.max(self.cursor);
                return Ok(Some(self.send(None, head_position)));
            }
            // Later pages start where the last one stopped looking, so
            // left-out events are read once, not at every wake-up.
            let page = self
                .feed
                .page(self.scanned_through.max(self.cursor), &self.types)
                .await?;
            let moved = page.scanned_through > self.scanned_through;
            self.last_head = page.head;
            self.scanned_through = page.scanned_through.max(self.scanned_through);
            if page.rows.is_empty() && self.scanned_through >= page.head {
                // Caught up, nothing new: wait for news. Only left-out
                // events: progress is due once its interval has passed, news
                // or not.
                let wait = if moved {
                    PROGRESS_INTERVAL.saturating_sub(self.last_sent.elapsed())
                } else {
                    IDLE_CHECK
                };
                let draining = self.feed.draining.clone();
                tokio::select! {
                    _ = tokio::time::timeout(wait, self.head.changed()) => {}
                    () = draining.cancelled() => {}
                }
            }
            self.buffered.extend(page.rows);
        }
    }

    fn send(
        mut self,
        event: Option<EventEnvelope>,
        head_position: i64,
    ) -> (SubscribeResponse, Self) {
        self.last_sent = Instant::now();
        let message = SubscribeResponse {
            event,
            head_position,
            position: self.cursor,
        };
        (message, self)
    }
}

#[tonic::async_trait]
impl EventFeedService for Feed {
    type SubscribeStream = FeedStream;
    type GetSnapshotStream = SnapshotStream;

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        authorize_service(&request, self.outbox.producer, Access::Read)?;
        let kinds = request.into_inner().kinds;
        let mut violations = Violations::default();
        let served = self.snapshot.kinds();
        for (i, kind) in kinds.iter().enumerate() {
            if !served.contains(kind) {
                violations.add(
                    format!("kinds[{i}]"),
                    format!(
                        "is not a kind of the {} snapshot: {}",
                        self.outbox.producer,
                        served.join(", ")
                    ),
                );
            }
        }
        violations.check()?;
        let stream = snapshot::stream(
            &self.pool,
            self.outbox,
            self.snapshot.clone(),
            kinds,
            self.draining.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        authorize_service(&request, self.outbox.producer, Access::Read)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        if req.from_position < 0 {
            violations.add("from_position", "must not be negative");
        }
        violations.check()?;
        let head = read_head(&self.pool, &self.outbox)
            .await
            .map_err(ApiError::from)?;
        if req.from_position > head {
            return Err(ApiError::invalid_field(
                "from_position",
                format!("is past the newest position, {head}"),
            )
            .into());
        }
        // The first page is read now, so an expired cursor fails the call
        // itself rather than the stream.
        let first = self.page(req.from_position, &req.types).await?;
        let follow = Follow {
            feed: self.clone(),
            head: self.head.clone(),
            cursor: req.from_position,
            scanned_through: first.scanned_through,
            last_head: first.head,
            types: req.types,
            buffered: first.rows.into(),
            last_sent: Instant::now(),
        };
        let stream = futures::stream::try_unfold(follow, Follow::next);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_feed_head(
        &self,
        request: Request<GetFeedHeadRequest>,
    ) -> Result<Response<GetFeedHeadResponse>, Status> {
        authorize_service(&request, self.outbox.producer, Access::Read)?;
        let head_position = read_head(&self.pool, &self.outbox)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(GetFeedHeadResponse { head_position }))
    }
}
