use clap::Parser as _;
use rapport_contacts::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = rapport_core::telemetry::init("rapport-contacts", &config.telemetry)?;
    let result = if config.database.migrate_only {
        rapport_core::db::migrate_only(&config.database, &rapport_contacts::MIGRATOR).await
    } else {
        let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
        rapport_contacts::serve(&config, listener, rapport_core::shutdown::signal()).await
    };
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "contacts service failed");
    }
    telemetry.shutdown().await;
    result
}
