//! Snapshots a new consumer starts from (`rapport.events.v1`
//! `GetSnapshot`): what a producer's feed has ever said, as its tables hold
//! it now, read in one REPEATABLE READ transaction that also reads the feed
//! position it is consistent with. Every event at or before that position is
//! reflected; later ones may be too, which is harmless because consumers
//! apply every event idempotently. Producers say what their snapshot holds,
//! kind by kind ([`SnapshotSource`]); this module streams it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use futures::future::BoxFuture;
use prost::Message as _;
use rapport_core::ApiError;
use rapport_core::db::begin_snapshot_with_settings;
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::events::v1::{GetSnapshotResponse, SnapshotItem};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use uuid::Uuid;

use crate::outbox::Outbox;

/// Where a page of a kind ends: every snapshot reads its tables in the
/// order of (tenant, id).
pub type SnapshotKey = (Uuid, Uuid);

/// Items read per query.
const PAGE: i64 = 500;
/// A message of the stream ends before it grows past this.
const MESSAGE_BYTES: usize = 1024 * 1024;

/// What a producer's snapshot holds.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The kinds of items it serves: the full names of their payload
    /// messages, such as `rapport.contacts.v1.ContactSnapshot`.
    fn kinds(&self) -> Vec<String>;

    /// Up to `limit` items of `kind` after `after` (from the start when
    /// `None`), in key order, read in `tx` (which sees every tenant).
    fn page<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        kind: &'a str,
        after: Option<SnapshotKey>,
        limit: i64,
    ) -> BoxFuture<'a, sqlx::Result<Vec<(SnapshotKey, SnapshotItem)>>>;
}

pub(crate) type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<GetSnapshotResponse, Status>> + Send>>;

struct Reading {
    tx: Transaction<'static, Postgres>,
    source: Arc<dyn SnapshotSource>,
    /// Kinds still to read, the first being read now.
    kinds: VecDeque<String>,
    after: Option<SnapshotKey>,
    /// Items read and not sent yet.
    pending: VecDeque<SnapshotItem>,
    draining: CancellationToken,
}

/// The snapshot of `kinds`: the position first, then the items.
pub(crate) async fn stream(
    pool: &PgPool,
    outbox: Outbox,
    source: Arc<dyn SnapshotSource>,
    kinds: Vec<String>,
    draining: CancellationToken,
) -> Result<SnapshotStream, ApiError> {
    let mut tx = begin_snapshot_with_settings(pool, &[("app.feed", "on")]).await?;
    let position: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT last_position FROM {}",
        outbox.state_table()
    )))
    .fetch_one(&mut *tx)
    .await?;
    let first = GetSnapshotResponse {
        position,
        items: Vec::new(),
    };
    let reading = Reading {
        tx,
        source,
        kinds: kinds.into(),
        after: None,
        pending: VecDeque::new(),
        draining,
    };
    let items = futures::stream::try_unfold(reading, Reading::next);
    Ok(Box::pin(futures::StreamExt::chain(
        futures::stream::once(async { Ok(first) }),
        items,
    )))
}

impl Reading {
    /// The next message: pending items up to the message size, reading
    /// further pages (and kinds) as needed.
    async fn next(mut self) -> Result<Option<(GetSnapshotResponse, Self)>, Status> {
        loop {
            if self.draining.is_cancelled() {
                return Err(ApiError::unavailable(
                    Common::ServiceStopping,
                    "the producer is stopping; start the snapshot again",
                    std::time::Duration::from_millis(100),
                )
                .into());
            }
            if !self.pending.is_empty() {
                let mut items = Vec::new();
                let mut bytes = 0;
                while let Some(item) = self.pending.front() {
                    let size = item.encoded_len();
                    if !items.is_empty() && bytes + size > MESSAGE_BYTES {
                        break;
                    }
                    bytes += size;
                    items.extend(self.pending.pop_front());
                }
                let message = GetSnapshotResponse { position: 0, items };
                return Ok(Some((message, self)));
            }
            let Some(kind) = self.kinds.front().cloned() else {
                return Ok(None);
            };
            let page = self
                .source
                .page(&mut self.tx, &kind, self.after, PAGE)
                .await
                .map_err(ApiError::from)?;
            self.after = page.last().map(|(key, _)| *key);
            if (page.len() as i64) < PAGE {
                self.kinds.pop_front();
                self.after = None;
            }
            self.pending.extend(page.into_iter().map(|(_, item)| item));
        }
    }
}

/// The kind of snapshot item whose payload is an `M`: its full name.
pub fn kind<M: prost::Name>() -> String {
    M::full_name()
}

/// A snapshot item of `tenant` with `payload`, of the kind its type names.
pub fn item<M: prost::Name>(tenant: Uuid, payload: &M) -> SnapshotItem {
    SnapshotItem {
        tenant_id: tenant.to_string(),
        kind: M::full_name(),
        payload: Some(
            prost_types::Any::from_msg(payload).expect("encoding a message into a Vec cannot fail"),
        ),
    }
}
