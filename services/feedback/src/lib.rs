//! The feedback service: surveys, invitations, responses and per-survey
//! summaries, in its own `feedback` schema. It follows the contacts change
//! feed to forget erased contacts.

pub mod api;
pub mod contact_changes;
pub mod domain;
pub mod events;
pub mod export;
pub mod store;

use std::time::Duration;

use clap::Parser;
use rapport_core::config::{CredentialConfig, DatabaseConfig, ServerConfig, TelemetryConfig};
use rapport_core::credential::CredentialKey;
use rapport_core::server::ServeOptions;
use rapport_events::consumer::Consumer;
use rapport_proto::events::v1::event_feed_service_server::{
    EventFeedServiceServer, SERVICE_NAME as FEED_SERVICE_NAME,
};
use rapport_proto::feedback::v1::feedback_service_server::{FeedbackServiceServer, SERVICE_NAME};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::transport::Endpoint;

use crate::contact_changes::{CONSUMER, CONTACT_ERASED, CONTACT_MERGED, ContactChanges};

/// This service's migrations, applied to the `feedback` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Configuration of the feedback service (`rapport-feedback --help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "rapport-feedback", version, about = "Rapport feedback service")]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(
        long,
        env = "RAPPORT_FEEDBACK_LISTEN_ADDR",
        default_value = "0.0.0.0:50062"
    )]
    pub listen_addr: std::net::SocketAddr,
    /// The contacts service, whose change feed tells which contacts were
    /// erased or merged.
    #[arg(
        long,
        env = "RAPPORT_CONTACTS_URL",
        default_value = "http://127.0.0.1:50061"
    )]
    pub contacts_url: String,
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub credential: CredentialConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Hours the change feed keeps events; older ones are pruned.
    #[arg(long, env = "RAPPORT_FEED_RETENTION_HOURS", default_value_t = 168)]
    pub feed_retention_hours: u64,
}

/// The feedback change feed.
pub const OUTBOX: rapport_events::Outbox = rapport_events::Outbox {
    producer: "feedback",
    schema: "feedback",
};

/// Connects to the database (migrating it when configured to) and serves
/// the feedback API on `listener` until `shutdown` completes, following the
/// contacts feed meanwhile.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let key = CredentialKey::new(&config.credential.credential_secret)?;
    let pool = rapport_core::db::connect(&config.database, &MIGRATOR).await?;
    let feed = EventFeedServiceServer::new(rapport_events::feed::Feed::new(pool.clone(), OUTBOX));
    let retention = Duration::from_secs(config.feed_retention_hours * 3600);
    let sequencer = tokio::spawn(rapport_events::sequencer::run(
        pool.clone(),
        OUTBOX,
        retention,
    ));
    let contacts_feed = Endpoint::from_shared(config.contacts_url.clone())?.connect_lazy();
    let consumer = Consumer::new(
        CONSUMER,
        "feedback.feed_cursors",
        "contacts",
        vec![CONTACT_ERASED.to_owned(), CONTACT_MERGED.to_owned()],
        pool.clone(),
        contacts_feed,
        key.clone(),
        ContactChanges,
    );
    let following = tokio::spawn(async move {
        if let Err(stopped) = consumer.run(std::future::pending()).await {
            tracing::error!(error = %stopped, "stopped following the contacts feed");
        }
    });
    let feedback = FeedbackServiceServer::new(api::FeedbackApi::new(pool.clone()))
        .max_decoding_message_size(config.server.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let result = rapport_core::server::serve(
        listener,
        &config.server,
        ServeOptions::service(key),
        Routes::new(feedback).add_service(feed),
        &[SERVICE_NAME, FEED_SERVICE_NAME],
        shutdown,
    )
    .await;
    following.abort();
    sequencer.abort();
    pool.close().await;
    result
}
