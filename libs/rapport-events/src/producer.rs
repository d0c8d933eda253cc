//! Making a service a producer: its sequencer runs while it serves, and it
//! serves its change feed.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rapport_core::service::Service;
use rapport_proto::events::v1::event_feed_service_server::EventFeedServiceServer;
use tokio::sync::watch;

use crate::feed::{self, Feed};
use crate::outbox::Outbox;
use crate::sequencer;
use crate::snapshot::SnapshotSource;

/// Settings of a service that produces a change feed.
#[derive(Debug, Clone, Args)]
pub struct FeedConfig {
    /// Hours the change feed keeps events; older ones are pruned.
    #[arg(long, env = "RAPPORT_FEED_RETENTION_HOURS", default_value_t = 168)]
    pub feed_retention_hours: u64,
}

impl FeedConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.feed_retention_hours * 3600)
    }
}

/// Positions `outbox`'s events while `service` serves, and serves them as
/// its `rapport.events.v1.EventFeedService`, with `snapshot` as the
/// snapshot new consumers start from.
pub fn produce(
    service: &mut Service,
    outbox: Outbox,
    config: &FeedConfig,
    snapshot: impl SnapshotSource,
) {
    let (head_sender, head) = watch::channel(0);
    let pool = service.db().pool().clone();
    service.spawn({
        let pool = pool.clone();
        move |stop| feed::track_head(pool, outbox, head_sender, stop)
    });
    let clock = service.clock().clone();
    let retention = config.retention();
    service.spawn({
        let pool = pool.clone();
        move |stop| sequencer::run(pool, outbox, retention, clock, stop)
    });
    let feed = Feed::new(pool, outbox, head, service.draining(), Arc::new(snapshot));
    service.add(EventFeedServiceServer::new(feed));
}
