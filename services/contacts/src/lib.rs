//! The contacts service: profiles, consent, lifecycle stage and the
//! omnichannel timeline, in its own `contacts` schema.

pub mod api;
pub mod domain;
pub mod store;

use clap::Parser;
use rapport_core::config::{CredentialConfig, DatabaseConfig, ServerConfig, TelemetryConfig};
use rapport_core::credential::CredentialKey;
use rapport_core::server::ServeOptions;
use rapport_proto::contacts::v1::contacts_service_server::{ContactsServiceServer, SERVICE_NAME};
use rapport_proto::events::v1::event_feed_service_server::{
    EventFeedServiceServer, SERVICE_NAME as FEED_SERVICE_NAME,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;

/// This service's migrations, applied to the `contacts` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Configuration of the contacts service (`rapport-contacts --help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "rapport-contacts", version, about = "Rapport contacts service")]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(
        long,
        env = "RAPPORT_CONTACTS_LISTEN_ADDR",
        default_value = "0.0.0.0:50061"
    )]
    pub listen_addr: std::net::SocketAddr,
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

/// The contacts change feed.
pub const OUTBOX: rapport_events::Outbox = rapport_events::Outbox {
    producer: "contacts",
    schema: "contacts",
};

/// Connects to the database (migrating it when configured to) and serves
/// the contacts API on `listener` until `shutdown` completes.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let key = CredentialKey::new(&config.credential.credential_secret)?;
    let pool = rapport_core::db::connect(&config.database, &MIGRATOR).await?;
    let feed = EventFeedServiceServer::new(rapport_events::feed::Feed::new(pool.clone(), OUTBOX));
    let retention = std::time::Duration::from_secs(config.feed_retention_hours * 3600);
    let sequencer = tokio::spawn(rapport_events::sequencer::run(
        pool.clone(),
        OUTBOX,
        retention,
    ));
    let contacts = ContactsServiceServer::new(api::ContactsApi::new(pool.clone()))
        .max_decoding_message_size(config.server.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let result = rapport_core::server::serve(
        listener,
        &config.server,
        ServeOptions::service(key),
        Routes::new(contacts).add_service(feed),
        &[SERVICE_NAME, FEED_SERVICE_NAME],
        shutdown,
    )
    .await;
    sequencer.abort();
    pool.close().await;
    result
}
