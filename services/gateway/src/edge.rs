//! The edge: every call that is not the gateway's own (admin, health) comes
//! here. It finds the client the call comes from, admits the call (see
//! [`crate::admission`]), swaps client credentials for a signed internal
//! one, and forwards the call unchanged over HTTP/2 to the service that owns
//! the `rapport.<service>.v1` package. Bodies, metadata, trailers, status
//! details, deadlines and cancellation pass through; there is no code per
//! method. Nothing about the methods behind it is told to a caller it has
//! not authenticated: an unknown method looks like any method needing a key.
//! Plain-HTTP requests go by the route table instead (see [`crate::web`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::StatusCode;
use http_body_util::BodyExt as _;
use ipnet::IpNet;
use rapport_core::connection::ConnectionInfo;
use rapport_core::contract::{MethodRule, MethodTable};
use rapport_core::credential::CREDENTIAL_HEADER;
use rapport_core::middleware::CallTrace;
use rapport_core::request_id::{self, REQUEST_ID_HEADER};
use rapport_core::shed::HoldsPermit;
use rapport_core::telemetry::rpc::RpcCall;
use rapport_core::{ApiError, telemetry, wire};
use rapport_proto::gateway::v1::ErrorReason;
use tonic::Status;
use tonic::body::Body;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
use tracing::Instrument as _;

use crate::admission::{Admission, Admissions, not_configured};
use crate::domain::client::{Client, client_address};
use crate::upstream::{self, Upstream};
use crate::web::{self, WebRoutes};

/// Reflection answered by the gateway itself, for every service behind it.
pub type LocalService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

const REFLECTION_PREFIX: &str = "/grpc.reflection.";
/// The longest token a public call's rate is kept by; a longer one is no
/// token any service hands out, and shares one bucket with the rest.
const MAX_TOKEN_BYTES: u64 = 256;

#[derive(Clone)]
pub struct Edge {
    inner: Arc<EdgeInner>,
}

pub struct EdgeInner {
    pub admissions: Admissions,
    pub methods: MethodTable,
    /// Upstreams by service name (`contacts`).
    pub upstreams: HashMap<String, Upstream>,
    /// `None` when reflection is switched off.
    pub reflection: Option<LocalService>,
    /// Proxies whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Plain-HTTP routes.
    pub web: WebRoutes,
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
    /// Admits and forwards `request`. Admission runs before the call's span
    /// is entered: only a caller whose key is valid has its trace
    /// continued; a keyless or refused one gets a trace of Rapport's own,
    /// linked to the trace it sent.
    async fn handle(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let path = request.uri().path().to_owned();
        let client = self.client_of(&request);
        let trace = request.extensions().get::<CallTrace>().cloned();
        if let Some(route) = self.web.table.find(&path) {
            return Ok(self
                .web
                .serve(route, client, request, &self.admissions, &self.upstreams)
                .instrument(span_of(trace.as_ref(), Trust::Distrust))
                .await);
        }
        if !is_grpc(&request) {
            return Ok(web::plain(StatusCode::NOT_FOUND, "no such page"));
        }
        let Some(rule) = self.methods.get(&path) else {
            // Only a caller with a valid key learns that there is no such
            // method, or what reflection lists.
            self.admissions
                .authenticator
                .authenticate(request.headers(), client)
                .await?;
            let span = span_of(trace.as_ref(), Trust::Trust);
            return match &self.reflection {
                Some(reflection) if path.starts_with(REFLECTION_PREFIX) => Ok(reflection
                    .clone()
                    .oneshot(request)
                    .instrument(span)
                    .await
                    .unwrap_or_else(|never| match never {})),
                _ => Err(Status::unimplemented(format!(
                    "no method {path} is served behind this gateway"
                ))),
            };
        };

        // Every request is one message, which the limits layer has already
        // read whole: this takes it without a copy.
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let (admission, trust) = if rule.public {
            let token = rate_limit_key(rule, &parts.headers, &body);
            let admission = self
                .admissions
                .public(client, token.as_deref(), &rule.service)?;
            (admission, Trust::Distrust)
        } else {
            let admission = self
                .admissions
                .key_holder(&parts.headers, client, &rule.service, rule.access)
                .await?;
            (admission, Trust::Trust)
        };
        let upstream = self
            .upstreams
            .get(&rule.service)
            .ok_or_else(|| not_configured(&rule.service))?;
        self.forward(upstream, rule, parts, body, admission)
            .instrument(span_of(trace.as_ref(), trust))
            .await
    }

    async fn forward(
        &self,
        upstream: &Upstream,
        rule: &MethodRule,
        mut parts: http::request::Parts,
        body: prost::bytes::Bytes,
        admission: Admission,
    ) -> Result<http::Response<Body>, Status> {
        let server_span = tracing::Span::current();
        server_span.record("tenant_id", admission.tenant_label.as_str());
        server_span.record("principal", admission.principal.as_str());
        // The hop to the service is a client span of its own, so the
        // gateway's time can be told from the service's.
        let call = RpcCall::client(parts.uri.path());
        call.span()
            .in_scope(|| make_forwardable(&mut parts.headers, admission.credential));
        let sent = upstream
            .call(parts, body)
            .instrument(call.span().clone())
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(service = %rule.service, %error, "upstream unreachable");
                call.fail(tonic::Code::Unavailable);
                return Err(ApiError::unavailable(
                    ErrorReason::ServiceUnavailable,
                    format!(
                        "the {} service is unreachable; retry with backoff",
                        rule.service
                    ),
                    upstream::RETRY_AFTER,
                )
                .into());
            }
        };
        // The slot is held until the response, streams included, is done.
        Ok(call
            .observe(response)
            .map(|body| Body::new(HoldsPermit::new(Body::new(body), admission.slot))))
    }

    /// The client a call comes from: its peer, or the client a trusted
    /// proxy in front recorded.
    fn client_of(&self, request: &http::Request<Body>) -> Client {
        let peer = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|info| info.remote_addr)
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        Client::of(client_address(peer, &forwarded, &self.trusted_proxies))
    }
}

/// Whether a call's caller may place the gateway's work in its trace.
enum Trust {
    Trust,
    Distrust,
}

/// The span to run a call in, its caller trusted or not; the current span
/// where the server decides nothing (in tests that serve the edge alone).
fn span_of(trace: Option<&CallTrace>, trust: Trust) -> tracing::Span {
    match (trace, trust) {
        (Some(trace), Trust::Trust) => trace.trust_caller(),
        (Some(trace), Trust::Distrust) => trace.distrust_caller(),
        (None, _) => tracing::Span::current(),
    }
}

/// Whether `request` is a gRPC call (gRPC-Web ones arrive translated).
fn is_grpc(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The value of the field a public method is rate limited by, read on the
/// wire from the request body; `None` when the method has none, or the
/// body does not carry it (the service will refuse such a call).
fn rate_limit_key(rule: &MethodRule, headers: &http::HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let number = rule.rate_limit_key?;
    let gzip = headers
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding == "gzip");
    let message = wire::unary_message(body, gzip)?;
    // Read no further than the public limit the limits layer already held
    // the body to; a token longer than any real one counts as no token.
    let value = wire::field_bytes(message, number, u64::from(u16::MAX)).ok()??;
    (value.len() as u64 <= MAX_TOKEN_BYTES).then_some(value)
}

/// Makes `headers` what the service should see: no API key, no credential
/// or internal header a client made up, the signed credential, the request
/// id and the gateway's span as the trace parent.
pub(crate) fn make_forwardable(headers: &mut http::HeaderMap, credential: http::HeaderValue) {
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
}
