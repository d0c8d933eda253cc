//! The deadline of the call being served, so that work far from the
//! handler (a database transaction) can be bounded by it.

use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `future` with `deadline` as its call's deadline.
pub async fn scope<F: Future>(deadline: Instant, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// The time left before the deadline of the call this task serves, if it
/// serves one; zero once it has passed.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// What the call this task serves may still spend, at most `ceiling`
/// (all of it outside a call).
pub fn within(ceiling: Duration) -> Duration {
    remaining().map_or(ceiling, |left| left.min(ceiling))
}
