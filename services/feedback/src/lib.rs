//! The feedback service: surveys, invitations, responses and per-survey
//! summaries, in its own `feedback` schema. It produces the feedback change
//! feed and follows the contacts feed to know the live contacts and forget
//! erased ones.

pub mod api;
pub mod consumers;
pub mod directory;
pub mod domain;
pub mod events;
pub mod export;
pub mod snapshot;
pub mod store;

use rapport_core::service::{self, Service, ServiceInfo};
use rapport_core::shutdown::Shutdown;
use rapport_events::{ConsumerConfig, FeedConfig, Following};
use rapport_proto::feedback::v1::feedback_service_server::FeedbackServiceServer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::consumers::contacts::{ContactChanges, SUBSCRIPTION};

/// This service's migrations, applied to the `feedback` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub static SERVICE: ServiceInfo = ServiceInfo {
    name: "feedback",
    default_listen_addr: "0.0.0.0:50062",
    migrator: &MIGRATOR,
};

/// What the feedback service adds to the shared settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The contacts service: its change feed tells which contacts exist,
    /// were erased or merged, and CreateInvitations asks it about contacts
    /// the feed has not brought yet.
    #[arg(
        long,
        env = "RAPPORT_CONTACTS_URL",
        default_value = "http://127.0.0.1:50061"
    )]
    pub contacts_url: String,
    #[command(flatten)]
    pub feed: FeedConfig,
    #[command(flatten)]
    pub consumer: ConsumerConfig,
}

/// Configuration of the feedback service (`rapport-feedback --help`).
pub type Config = service::Config<Settings>;

/// Serves the feedback API and feed on `listener` until `shutdown`,
/// following the contacts feed meanwhile.
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
        snapshot::FeedbackSnapshot,
    );
    let mut following = Following::new(&config.service.consumer);
    let changes = ContactChanges {
        clock: service.clock().clone(),
    };
    following.follow(
        &service,
        SUBSCRIPTION,
        &config.service.contacts_url,
        changes,
    )?;
    following.start(&mut service);
    let directory = directory::ContactDirectory::new(
        service.db().clone(),
        &config.service.contacts_url,
        service.identity().clone(),
    )?;
    let api = api::FeedbackApi::new(service.db().clone(), service.clock().clone(), directory);
    service.add(FeedbackServiceServer::new(api));
    service.serve(listener, shutdown).await
}
