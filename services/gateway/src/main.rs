use clap::Parser as _;
use rapport_gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = rapport_core::telemetry::init("rapport-gateway", &config.telemetry)?;
    let result = if config.database.migrate_only {
        rapport_core::db::migrate_only(&config.database, &rapport_gateway::MIGRATOR).await
    } else {
        let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
        rapport_gateway::serve(&config, listener, rapport_core::shutdown::signal()).await
    };
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "gateway failed");
    }
    telemetry.shutdown().await;
    result
}
