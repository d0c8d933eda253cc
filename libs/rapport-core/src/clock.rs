//! The time a service works with. Every service is handed one [`Clock`]:
//! the system clock in production; in a test stack, the same clock moved
//! forward on request (see [`crate::testing`]), so a test can make days pass
//! without sleeping. Code that asks "what time is it" asks its clock, and
//! SQL whose answer depends on the time takes it as a parameter instead of
//! calling `now()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The system time plus an offset that only tests move. Cheap to clone;
/// clones share the offset.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Microseconds added to the system time; zero unless a test moved it.
    offset_us: AtomicI64,
    /// Bumped on every move, so that timers waiting on the clock wake.
    moved: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self {
            inner: Arc::new(Inner {
                offset_us: AtomicI64::new(0),
                moved: watch::channel(0).0,
            }),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.inner.offset_us.load(Ordering::Acquire))
    }

    /// Moves the clock forward by `by` and wakes every [`Clock::sleep_until`].
    /// Time never goes back: a negative move is impossible by type.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.inner.offset_us.fetch_add(micros, Ordering::AcqRel);
        self.inner.moved.send_modify(|moves| *moves += 1);
        self.now()
    }

    /// Waits until the clock reads at least `deadline`: for the time that
    /// remains, or until a test moves the clock past it.
    pub async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut moved = self.inner.moved.subscribe();
        loop {
            let remaining = deadline - self.now();
            let Ok(remaining) = remaining.to_std() else {
                return;
            };
            if remaining.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(remaining) => {}
                changed = moved.changed() => {
                    if changed.is_err() {
                        // The clock is gone with its owner; fall back to waiting.
                        tokio::time::sleep(remaining).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(Duration::from_secs(3 * 86_400));
        let moved = clone.now() - before;
        assert!(moved >= chrono::Duration::days(3), "{moved}");
        assert!(moved < chrono::Duration::days(3) + chrono::Duration::seconds(5));
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_moves_past_its_deadline() {
        let clock = Clock::system();
        let deadline = clock.now() + chrono::Duration::days(1);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(86_400));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke up")
            .expect("no panic");
    }
}
