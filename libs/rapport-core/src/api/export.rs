//! Streams of chunks (exports): one consistent read-only snapshot of the
//! tenant's data (a REPEATABLE READ transaction held while the stream
//! runs), read a chunk at a time so that a large export is never held in
//! memory at once.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use super::ApiStream;
use crate::db::Tx;
use crate::error::ApiResult;

/// One message of an export, and where the next one starts (`None` when
/// it was the last).
pub struct Chunk<M, C> {
    pub message: M,
    pub next: Option<C>,
}

/// What reading a chunk returns: `None` when nothing is left.
pub type NextChunk<'a, M, C> = BoxFuture<'a, ApiResult<Option<Chunk<M, C>>>>;

/// Something read in chunks, in a stable order.
pub trait ChunkSource: Send + Sync + 'static {
    /// Where a chunk ends and the next begins.
    type Cursor: Send + Sync + 'static;
    /// One message of the stream.
    type Message: Send + 'static;

    /// The chunk after `after` (from the start when `None`), read in `tx`.
    fn next<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        after: Option<&'a Self::Cursor>,
    ) -> NextChunk<'a, Self::Message, Self::Cursor>;
}

enum Position<C> {
    Start(Tx),
    After(Tx, C),
    Done,
}

/// The chunks of `source`, in order, all read in `snapshot` (a transaction
/// from [`crate::db::Database::begin_tenant_snapshot`], in which the caller
/// may already have read what the stream starts with).
pub fn chunked<S: ChunkSource>(snapshot: Tx, source: S) -> ApiStream<S::Message> {
    let source = std::sync::Arc::new(source);
    Box::pin(futures::stream::try_unfold(
        Position::Start(snapshot),
        move |position| {
            let source = source.clone();
            async move {
                let (mut tx, after) = match position {
                    Position::Done => return Ok(None),
                    Position::Start(tx) => (tx, None),
                    Position::After(tx, cursor) => (tx, Some(cursor)),
                };
                let chunk = source.next(&mut tx, after.as_ref()).await?;
                Ok(chunk.map(|chunk| {
                    let next = match chunk.next {
                        Some(cursor) => Position::After(tx, cursor),
                        None => Position::Done,
                    };
                    (chunk.message, next)
                }))
            }
        },
    ))
}
