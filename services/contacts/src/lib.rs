//! The contacts service: profiles, consent, lifecycle stage and the
//! omnichannel timeline, in its own `contacts` schema. It produces the
//! contacts change feed.

pub mod api;
pub mod domain;
pub mod events;
pub mod snapshot;
pub mod store;

use rapport_core::service::{self, Service, ServiceInfo};
use rapport_core::shutdown::Shutdown;
use rapport_events::FeedConfig;
use rapport_proto::contacts::v1::contacts_service_server::ContactsServiceServer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

/// This service's migrations, applied to the `contacts` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub static SERVICE: ServiceInfo = ServiceInfo {
    name: "contacts",
    default_listen_addr: "0.0.0.0:50061",
    migrator: &MIGRATOR,
};

/// What the contacts service adds to the shared settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[command(flatten)]
    pub feed: FeedConfig,
}

/// Configuration of the contacts service (`rapport-contacts --help`).
pub type Config = service::Config<Settings>;

/// Serves the contacts API and feed on `listener` until `shutdown`.
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
        snapshot::ContactsSnapshot,
    );
    let api = api::ContactsApi::new(service.db().clone(), service.clock().clone());
    service.add(ContactsServiceServer::new(api));
    service.serve(listener, shutdown).await
}
