//! The segmentation service: segments (rules and lists), their set-based
//! builds, previews and explanations, in its own `segmentation` schema. It
//! follows the contacts and feedback feeds into projections shaped for the
//! queries rules compile to, keeps membership current as they change and
//! as time passes, and produces its own feed of entries and exits.

pub mod api;
pub mod builder;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod live;
pub mod snapshot;
pub mod store;
pub mod sweeper;

use std::sync::Arc;

use rapport_core::service::{self, Service, ServiceInfo};
use rapport_core::shutdown::Shutdown;
use rapport_events::{ConsumerConfig, FeedConfig, Following};
use rapport_proto::segmentation::v1::segmentation_service_server::SegmentationServiceServer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::consumers::{contacts, feedback};

/// This service's migrations, applied to the `segmentation` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub static SERVICE: ServiceInfo = ServiceInfo {
    name: "segmentation",
    default_listen_addr: "0.0.0.0:50063",
    migrator: &MIGRATOR,
};

/// What the segmentation service adds to the shared settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The contacts service, whose feed feeds the profile, stage and event
    /// projections.
    #[arg(
        long,
        env = "RAPPORT_CONTACTS_URL",
        default_value = "http://127.0.0.1:50061"
    )]
    pub contacts_url: String,
    /// The feedback service, whose feed feeds the scored answers.
    #[arg(
        long,
        env = "RAPPORT_FEEDBACK_URL",
        default_value = "http://127.0.0.1:50062"
    )]
    pub feedback_url: String,
    /// Days an archived segment is kept (and can be undeleted) before it is
    /// deleted for good.
    #[arg(long, env = "RAPPORT_SEGMENT_RETENTION_DAYS", default_value_t = 30)]
    pub segment_retention_days: u32,
    #[command(flatten)]
    pub feed: FeedConfig,
    #[command(flatten)]
    pub consumer: ConsumerConfig,
}

/// Configuration of the segmentation service (`rapport-segmentation --help`).
pub type Config = service::Config<Settings>;

/// Serves the segmentation API and feed on `listener` until `shutdown`,
/// following the contacts and feedback feeds and running builds and time
/// sweeps meanwhile.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut service = Service::start(&SERVICE, &config.common).await?;
    rapport_events::produce(
        &mut service,
        events::OUTBOX,
        &config.service.feed,
        snapshot::SegmentationSnapshot,
    );
    let clock = service.clock().clone();
    let mut following = Following::new(&config.service.consumer);
    following.follow(
        &service,
        contacts::SUBSCRIPTION,
        &config.service.contacts_url,
        contacts::ContactChanges {
            clock: clock.clone(),
        },
    )?;
    following.follow(
        &service,
        feedback::SUBSCRIPTION,
        &config.service.feedback_url,
        feedback::FeedbackChanges {
            clock: clock.clone(),
        },
    )?;
    following.start(&mut service);
    let wake = Arc::new(Notify::new());
    let builder = builder::Builder {
        pool: service.db().pool().clone(),
        clock: service.clock().clone(),
        wake: wake.clone(),
    };
    service.spawn(|stopping| builder.run(stopping));
    let sweeper = sweeper::Sweeper {
        pool: service.db().pool().clone(),
        clock,
    };
    service.spawn(|stopping| sweeper.run(stopping));
    let api = api::SegmentationApi::new(
        service.db().clone(),
        service.clock().clone(),
        wake,
        chrono::Duration::days(i64::from(config.service.segment_retention_days)),
    );
    service.add(SegmentationServiceServer::new(api));
    service.serve(listener, shutdown).await
}
