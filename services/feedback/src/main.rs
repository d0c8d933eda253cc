use clap::Parser as _;
use rapport_feedback::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = rapport_core::telemetry::init("rapport-feedback", &config.telemetry)?;
    let result = if config.database.migrate_only {
        rapport_core::db::migrate_only(&config.database, &rapport_feedback::MIGRATOR).await
    } else {
        let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
        rapport_feedback::serve(&config, listener, rapport_core::shutdown::signal()).await
    };
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "feedback service failed");
    }
    telemetry.shutdown().await;
    result
}
