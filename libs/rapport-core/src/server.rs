//! Serving a set of tonic services the way every Rapport service does:
//! health and reflection alongside, request ids and trace context, the
//! credential check, a deadline, shedding over the limit of calls in
//! flight, request limits before decoding, coalesced socket writes, HTTP/2
//! and connection limits, and a bounded graceful shutdown.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower_http::cors::CorsLayer;

use crate::config::ServerConfig;
use crate::connection::{self, ActivityLayer};
use crate::credential::Verifier;
use crate::limits::{Check, RequestLimitsLayer};
use crate::middleware::{AuthenticationLayer, DeadlineLayer, GrpcWebLayer, RequestContextLayer};
use crate::shed::ShedLayer;

/// Streams one connection may make the server reset for its own protocol
/// errors before the server ends the connection (GOAWAY): hyper's default,
/// which tonic leaves unset, turning off the mitigation of "MadeYouReset"
/// (CVE-2025-8671).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Largest header block a client may send: gRPC's usual hard limit, where
/// h2 would accept 16 MiB.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// How often an HTTP/2 ping checks that the peer is still there, and how
/// long its answer may take before the connection is closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server admits calls.
pub struct ServeOptions {
    /// Verify the internal credential of every call but health checks (the
    /// services). `None` leaves authentication to the routes (the gateway).
    pub credential: Option<Verifier>,
    /// Serve gRPC server reflection of every Rapport proto.
    pub reflection: bool,
    /// Also accept gRPC-Web over HTTP/1.1, for browsers.
    pub grpc_web: bool,
    /// Answer browsers' cross-origin checks (preflights, allowed origins
    /// and exposed headers) before anything else sees the request.
    pub cors: Option<CorsLayer>,
    /// What is checked of a request before it is decoded.
    pub check: Check,
}

impl ServeOptions {
    /// What every service behind the gateway uses.
    pub fn service(verifier: Verifier) -> Self {
        Self {
            credential: Some(verifier),
            reflection: true,
            grpc_web: false,
            cors: None,
            check: Check::Message,
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` completes, then reports
/// NOT_SERVING, stops accepting, and gives in-flight calls up to the
/// configured grace period to finish.
///
/// `service_names` are the fully qualified gRPC service names in `routes`;
/// each is reported SERVING by `grpc.health.v1` while the server runs.
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    options: ServeOptions,
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
    let mut routes = routes.add_service(health_service);
    if options.reflection {
        let (v1, v1alpha) = reflection_services()?;
        routes = routes.add_service(v1).add_service(v1alpha);
    }

    let layers = ServiceBuilder::new()
        .option_layer(options.cors)
        .layer(ActivityLayer)
        // gRPC-Web is translated first, so that the call's status is read
        // from gRPC trailers whichever way the call came.
        .option_layer(options.grpc_web.then_some(GrpcWebLayer))
        .layer(RequestContextLayer)
        .layer(DeadlineLayer::new(config.request_timeout()))
        .option_layer(options.credential.map(AuthenticationLayer::new))
        .layer(ShedLayer::new(config.max_concurrent_requests))
        .layer(RequestLimitsLayer::new(
            config.max_message_bytes,
            config.max_public_message_bytes,
            options.check,
        ));

    let local_addr = listener.local_addr()?;
    let incoming = connection::accept(listener, config.connection_limits());
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
        .accept_http1(options.grpc_web)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
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

/// gRPC server reflection (v1 and v1alpha) of every Rapport proto.
pub fn reflection_services() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rapport_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rapport_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}
