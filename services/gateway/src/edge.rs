//! The edge: every call that is not the gateway's own (admin, health) comes
//! here. It authenticates the API key, checks the scope the method needs,
//! applies the tenant's and the key's rate limits, swaps client credentials
//! for a minted internal one, and forwards the call unchanged over HTTP/2 to
//! the service that owns the `rapport.<service>.v1` package. Bodies,
//! metadata, trailers, status details, deadlines and cancellation pass
//! through; there is no code per method.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use prost::bytes::Bytes;
use rapport_core::credential::{Access, CREDENTIAL_HEADER};
use rapport_core::io::CoalescedWrites;
use rapport_core::request_id::{self, REQUEST_ID_HEADER};
use rapport_core::shed::HoldsPermit;
use rapport_core::{ApiError, telemetry};
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::gateway::v1::ErrorReason;
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;
use tower::ServiceExt as _;
use tower::util::{BoxCloneSyncService, MapResponse};

use crate::auth::{Authenticator, Caller};
use crate::domain::rate_limit::{Quota, RateLimiter};
use rapport_core::contract::MethodTable;
use rapport_core::shares::TenantShares;

/// A service behind the gateway: where it is, and the HTTP/2 client that
/// multiplexes calls to it. hyper's client is used as is: no buffer task
/// between a call and its stream, no deadline of its own (the gateway's
/// deadline layer ends calls with DEADLINE_EXCEEDED and drops them, which
/// resets the upstream stream).
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Each client keeps one HTTP/2 connection; calls take turns, so that
    /// both ends spread the streams over several connection tasks.
    clients: Vec<Client<Connector, Body>>,
    next: std::sync::atomic::AtomicUsize,
}

/// How long a caller is asked to wait when a service cannot be reached.
const UPSTREAM_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// HTTP/2 connections per upstream.
const UPSTREAM_CONNECTIONS: usize = 4;

/// Opens upstream connections whose writes are coalesced across calls, as
/// the gateway's own server connections are (see [`CoalescedWrites`]).
type Connector = MapResponse<HttpConnector, fn(TokioIo<TcpStream>) -> CoalescedIo>;
type CoalescedIo = TokioIo<CoalescedWrites<TcpStream>>;

fn coalesced(connection: TokioIo<TcpStream>) -> CoalescedIo {
    TokioIo::new(CoalescedWrites::new(connection.into_inner()))
}

impl Upstream {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.authority().is_some(),
            "{url} is not http://host:port"
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        let clients = (0..UPSTREAM_CONNECTIONS)
            .map(|_| {
                Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(true)
                    .http2_keep_alive_interval(std::time::Duration::from_secs(30))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .build(connector.clone().map_response(coalesced as fn(_) -> _))
            })
            .collect();
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            anyhow::bail!("{url} is not http://host:port");
        };
        Ok(Self {
            scheme,
            authority,
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Sends `request` (whose URI is a path, whose body is one message) to
    /// this upstream. A connection that could not even be opened (a
    /// replica shutting down) is tried once more on the next connection:
    /// nothing was sent, so nothing can happen twice.
    async fn call(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> Result<http::Response<Body>, hyper_util::client::legacy::Error> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = http::Uri::from_parts(uri).expect("scheme, authority and path make a URI");
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let send = |turn: usize| {
            let request =
                http::Request::from_parts(parts.clone(), Body::new(Full::new(body.clone())));
            self.clients[turn % self.clients.len()].request(request)
        };
        let response = match send(turn).await {
            Err(error) if error.is_connect() => send(turn + 1).await?,
            other => other?,
        };
        Ok(response.map(Body::new))
    }
}

/// Reflection answered by the gateway itself, for every service behind it.
pub type LocalService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

const REFLECTION_PREFIX: &str = "/grpc.reflection.";
/// Who public calls are logged and limited as.
const PUBLIC_PRINCIPAL: &str = "public";
/// The rate-limit bucket and in-flight pool all public calls share.
const PUBLIC_BUCKET: uuid::Uuid = uuid::Uuid::nil();

#[derive(Clone)]
pub struct Edge {
    inner: Arc<EdgeInner>,
}

pub struct EdgeInner {
    pub authenticator: Authenticator,
    pub limiter: RateLimiter,
    pub key_quota: Quota,
    /// The rate all public calls share.
    pub public_quota: Quota,
    pub in_flight: TenantShares,
    pub methods: MethodTable,
    /// Upstreams by service name (`contacts`).
    pub upstreams: HashMap<String, Upstream>,
    /// `None` when reflection is switched off.
    pub reflection: Option<LocalService>,
}

impl Edge {
    pub fn new(inner: EdgeInner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl tower::Service<http::Request<axum::body::Body>> for Edge {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let response = inner.handle(request.map(Body::new)).await;
            Ok(response.unwrap_or_else(Status::into_http))
        })
    }
}

impl EdgeInner {
    async fn handle(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let path = request.uri().path().to_owned();
        if path.starts_with(REFLECTION_PREFIX) {
            let reflection = self.reflection.clone().ok_or_else(|| {
                Status::unimplemented("server reflection is switched off on this gateway")
            })?;
            self.authenticator.authenticate(request.headers()).await?;
            return Ok(reflection
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {}));
        }

        let rule = self.methods.get(&path).ok_or_else(|| {
            Status::unimplemented(format!("no method {path} is served behind this gateway"))
        })?;
        let admission = if rule.public {
            self.admit_public(&rule.service)?
        } else {
            self.admit_key_holder(request.headers(), &rule.service, rule.access)
                .await?
        };
        let upstream = self
            .upstreams
            .get(&rule.service)
            .ok_or_else(|| not_configured(&rule.service))?;

        let (parts, body) = forwardable(request, admission.credential).into_parts();
        // Every request is one message, which the limits layer has already
        // read whole: this takes it without a copy.
        let body = body.collect().await?.to_bytes();
        let started = Instant::now();
        let response = upstream.call(parts, body).await.map_err(|error| {
            tracing::warn!(service = %rule.service, %error, "upstream unreachable");
            ApiError::unavailable(
                ErrorReason::ServiceUnavailable,
                format!(
                    "the {} service is unreachable; retry with backoff",
                    rule.service
                ),
                UPSTREAM_RETRY_AFTER,
            )
        })?;
        tracing::info!(
            tenant_id = %admission.tenant_label,
            key = %admission.principal,
            method = %path,
            // Present when the call failed before any message (trailers-only).
            grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("-"),
            elapsed_us = started.elapsed().as_micros() as u64,
            "forwarded"
        );
        // The slot is held until the response, streams included, is done.
        Ok(response.map(|body| Body::new(HoldsPermit::new(body, admission.slot))))
    }

    /// Admits a call with an API key: authenticated, in scope, within the
    /// key's and tenant's rates and the tenant's calls in flight.
    async fn admit_key_holder(
        &self,
        headers: &http::HeaderMap,
        service: &str,
        access: Access,
    ) -> Result<Admission, Status> {
        let caller = self.authenticator.authenticate(headers).await?;
        let span = tracing::Span::current();
        span.record("tenant_id", tracing::field::display(caller.tenant_id));
        span.record("principal", caller.key_prefix.as_str());
        if !caller.grant.allows(service, access) {
            let needed = match access {
                Access::Read => "read",
                Access::Write => "write",
            };
            return Err(ApiError::permission_denied(
                Common::MissingScope,
                format!("this API key lacks the scope {service}:{needed}"),
            )
            .into());
        }
        self.admit(&caller)?;
        let credential = caller
            .credential(service)
            .cloned()
            .ok_or_else(|| not_configured(service))?;
        let slot = self
            .in_flight
            .try_acquire(caller.tenant_id)
            .ok_or_else(|| {
                ApiError::resource_exhausted(
                    ErrorReason::TenantConcurrencyLimited,
                    "the tenant has too many calls in flight; retry after the delay",
                    std::time::Duration::from_millis(100),
                )
            })?;
        Ok(Admission {
            credential,
            tenant_label: caller.tenant_id.to_string(),
            principal: caller.key_prefix.clone(),
            slot,
        })
    }

    /// Admits a public call (such as a customer answering a survey): no
    /// key, so no tenant; all public calls share one rate and one pool of
    /// slots, which keeps anonymous traffic from crowding out tenants.
    fn admit_public(&self, service: &str) -> Result<Admission, Status> {
        tracing::Span::current().record("principal", PUBLIC_PRINCIPAL);
        if let Err(wait) = self
            .limiter
            .check(PUBLIC_BUCKET, self.public_quota, Instant::now())
        {
            return Err(ApiError::resource_exhausted(
                ErrorReason::PublicRateLimited,
                "too many public calls right now; retry after the delay",
                wait,
            )
            .into());
        }
        let slot = self.in_flight.try_acquire(PUBLIC_BUCKET).ok_or_else(|| {
            ApiError::resource_exhausted(
                ErrorReason::PublicConcurrencyLimited,
                "too many public calls in flight; retry after the delay",
                std::time::Duration::from_millis(100),
            )
        })?;
        let credential = self
            .authenticator
            .public_credential(service)
            .ok_or_else(|| not_configured(service))?;
        Ok(Admission {
            credential,
            tenant_label: "-".to_owned(),
            principal: PUBLIC_PRINCIPAL.to_owned(),
            slot,
        })
    }

    /// The key's and then the tenant's token bucket: a key over its own
    /// quota is refused before it can drain its tenant's.
    fn admit(&self, caller: &Caller) -> Result<(), Status> {
        let now = Instant::now();
        if let Err(wait) = self.limiter.check(caller.key_id, self.key_quota, now) {
            return Err(ApiError::resource_exhausted(
                ErrorReason::ApiKeyRateLimited,
                "this API key's rate limit is reached; retry after the delay",
                wait,
            )
            .into());
        }
        if let Err(wait) = self
            .limiter
            .check(caller.tenant_id, caller.tenant_quota, now)
        {
            return Err(ApiError::resource_exhausted(
                ErrorReason::TenantRateLimited,
                "the tenant's rate limit is reached; retry after the delay",
                wait,
            )
            .into());
        }
        Ok(())
    }
}

/// UNAVAILABLE for a service this gateway has no upstream for.
fn not_configured(service: &str) -> ApiError {
    ApiError::unavailable(
        ErrorReason::ServiceNotConfigured,
        format!("the {service} service is not available on this gateway"),
        UPSTREAM_RETRY_AFTER,
    )
}

/// What an admitted call forwards with, and the slot it holds.
struct Admission {
    credential: http::HeaderValue,
    /// For the access log: the tenant id, or `-` for public calls.
    tenant_label: String,
    principal: String,
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// The request as the service should see it: no API key, no credential or
/// internal header a client made up, the minted credential, the request id
/// and the gateway's span as the trace parent.
fn forwardable(
    mut request: http::Request<Body>,
    credential: http::HeaderValue,
) -> http::Request<Body> {
    let headers = request.headers_mut();
    headers.remove(http::header::AUTHORIZATION);
    let internal: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-rapport-"))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
    headers.insert(CREDENTIAL_HEADER, credential);
    if let Some(id) = request_id::current().and_then(|id| http::HeaderValue::from_str(&id).ok()) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    telemetry::inject_current_context_into_headers(headers);
    request
}
