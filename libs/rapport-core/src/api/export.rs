//! Streams of chunks (exports), each chunk read in a short read-only
//! transaction of its own, so that a slow reader holds no connection and a
//! large export is never held in memory at once.

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::ApiStream;
use crate::db::{begin_tenant_read, finish_read};
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
    Start,
    After(C),
    Done,
}

/// The chunks of `source` for `tenant`, in order.
pub fn chunked<S: ChunkSource>(pool: PgPool, tenant: Uuid, source: S) -> ApiStream<S::Message> {
    let source = std::sync::Arc::new(source);
    Box::pin(futures::stream::try_unfold(
        Position::Start,
        move |position| {
            let pool = pool.clone();
            let source = source.clone();
            async move {
                let after = match &position {
                    Position::Done => return Ok(None),
                    Position::Start => None,
                    Position::After(cursor) => Some(cursor),
                };
                let mut tx = begin_tenant_read(&pool, tenant)
                    .await
                    .map_err(crate::ApiError::from)?;
                let chunk = source.next(&mut tx, after).await?;
                finish_read(tx);
                Ok(chunk.map(|chunk| {
                    let next = chunk.next.map_or(Position::Done, Position::After);
                    (chunk.message, next)
                }))
            }
        },
    ))
}
