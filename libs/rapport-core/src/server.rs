//! Serving a set of tonic services the way every Rapport service does:
//! health and reflection alongside, request ids and trace context, the
//! credential check, a timeout, limits, and a bounded graceful shutdown.

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::config::ServerConfig;
use crate::credential::CredentialKey;
use crate::middleware::{AuthenticationLayer, RequestContextLayer};

/// Serves `routes` on `listener` until `shutdown` completes, then reports
/// NOT_SERVING, stops accepting, and gives in-flight calls up to the
/// configured grace period to finish.
///
/// `service_names` are the fully qualified gRPC service names in `routes`;
/// each is reported SERVING by `grpc.health.v1` while the server runs.
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    key: CredentialKey,
    routes: Routes,
    service_names: &[&str],
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in service_names.iter().copied().chain([""]) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rapport_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rapport_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let layers = ServiceBuilder::new()
        .layer(RequestContextLayer)
        .layer(AuthenticationLayer::new(key))
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests,
        ));

    let local_addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let names: Vec<String> = service_names
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    let signal = async move {
        shutdown.await;
        for name in names.iter().map(String::as_str).chain([""]) {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = draining_tx.send(());
    };

    let server = tonic::transport::Server::builder()
        .timeout(config.request_timeout())
        .max_concurrent_streams(config.max_concurrent_streams)
        .layer(layers)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, signal);
    tracing::info!(%local_addr, "serving");

    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        _ = draining_rx => tracing::info!(grace = ?config.shutdown_grace(), "draining in-flight calls"),
    }
    match tokio::time::timeout(config.shutdown_grace(), server).await {
        Ok(result) => {
            tracing::info!("drained");
            Ok(result?)
        }
        Err(_) => {
            tracing::warn!("shutdown grace period over; abandoning calls still in flight");
            Ok(())
        }
    }
}
