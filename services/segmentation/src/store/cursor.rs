//! How far segmentation has applied the feeds it follows: its consumers'
//! cursors (read with no tenant set: they hold positions only).

use sqlx::PgConnection;

/// The applied position of each of `consumers` (0 before the first batch).
pub async fn applied(tx: &mut PgConnection, consumers: &[&str]) -> sqlx::Result<Vec<i64>> {
    let found: Vec<(String, i64)> = sqlx::query_as(
        "SELECT consumer, position FROM segmentation.feed_cursors WHERE consumer = ANY($1)",
    )
    .bind(consumers)
    .fetch_all(tx)
    .await?;
    Ok(consumers
        .iter()
        .map(|consumer| {
            found
                .iter()
                .find(|(name, _)| name == consumer)
                .map_or(0, |(_, position)| *position)
        })
        .collect())
}
