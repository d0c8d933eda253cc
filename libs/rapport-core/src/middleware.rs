//! Tower layers every service runs behind: one gives each call its request
//! id, span (per the RPC conventions, see [`crate::telemetry::rpc`]) and
//! parent trace; one bounds it by its deadline; one verifies the internal
//! credential.
//! Authentication is a layer rather than a tonic interceptor so it covers
//! every service on the server in one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument as _;

use rapport_proto::common::v1::ErrorReason as Common;

use crate::credential::{CREDENTIAL_HEADER, Verifier};
use crate::error::ApiError;
use crate::telemetry::rpc::RpcCall;
use crate::{request_id, telemetry};

/// The service `poll_ready` prepared, for the call's future to own; a
/// fresh clone stays behind for the next call (tower's usual pattern).
pub(crate) fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

/// Paths that need no credential: the platform's probes must work without one.
const PUBLIC_PATH_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// Gives each call a request id (taken from `x-request-id` or minted), a
/// span that follows the call to its final status, and echoes the id in the
/// response. The span does not start until whoever authenticates the caller
/// (the credential check in services, the edge at the gateway) decides
/// whether it continues the caller's W3C trace ([`CallTrace`]); a call
/// refused before that starts a trace of its own, linked to the caller's.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContextLayer;

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    inner: S,
}

/// A call's span and its caller's trace context, in the request's
/// extensions when the handler decides whether to trust the caller.
#[derive(Clone)]
pub struct CallTrace {
    inner: Arc<CallTraceInner>,
}

struct CallTraceInner {
    span: tracing::Span,
    caller: opentelemetry::Context,
    decided: AtomicBool,
}

impl CallTrace {
    /// Continues the caller's trace (a caller the handler authenticated),
    /// and returns the span to run the call in.
    pub fn trust_caller(&self) -> tracing::Span {
        if !self.inner.decided.swap(true, Ordering::AcqRel) {
            telemetry::continue_trace(&self.inner.span, self.inner.caller.clone());
        }
        self.inner.span.clone()
    }

    /// Starts a trace of the call's own, linked to the caller's (a keyless
    /// or refused caller), and returns the span to run the call in.
    pub fn distrust_caller(&self) -> tracing::Span {
        if !self.inner.decided.swap(true, Ordering::AcqRel) {
            telemetry::link_trace(&self.inner.span, &self.inner.caller);
        }
        self.inner.span.clone()
    }
}

impl<S, B, R> Service<http::Request<B>> for RequestContext<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    R::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let id = request_id::from_headers(request.headers());
        let call = RpcCall::server(request.uri().path(), &id);
        let trace = CallTrace {
            inner: Arc::new(CallTraceInner {
                span: call.span().clone(),
                caller: telemetry::caller_context(request.headers()),
                decided: AtomicBool::new(false),
            }),
        };
        request.extensions_mut().insert(trace.clone());
        let header_value = http::HeaderValue::from_str(&id).ok();
        let mut inner = take_ready(&mut self.inner);
        Box::pin(request_id::scope(id, async move {
            let mut response = inner.call(request).await?;
            if let Some(value) = header_value {
                response
                    .headers_mut()
                    .insert(request_id::REQUEST_ID_HEADER, value);
            }
            // Refused before anyone decided: not trusted.
            trace.distrust_caller();
            Ok(call.observe(response).map(tonic::body::Body::new))
        }))
    }
}

/// Verifies the internal credential of every call except health checks and
/// makes its [`crate::credential::Grant`] available to handlers. Calls with
/// no or a bad credential are refused with UNAUTHENTICATED before any
/// handler runs.
#[derive(Clone)]
pub struct AuthenticationLayer {
    verifier: Arc<Verifier>,
}

impl AuthenticationLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
        }
    }
}

impl<S> Layer<S> for AuthenticationLayer {
    type Service = Authentication<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authentication {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authentication<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B> Service<http::Request<B>> for Authentication<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let trace = request.extensions().get::<CallTrace>().cloned();
        // A probe's caller is no one to trust; a credentialed caller is.
        let mut trusted = false;
        if !PUBLIC_PATH_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            let verified = match request.headers().get(CREDENTIAL_HEADER) {
                None => Err(ApiError::unauthenticated(
                    Common::MissingCredential,
                    "the call carries no internal credential; call through the gateway",
                )),
                Some(value) => value
                    .to_str()
                    .map_err(|_| {
                        ApiError::unauthenticated(
                            Common::InvalidCredential,
                            "the internal credential is malformed",
                        )
                    })
                    .and_then(|token| self.verifier.verify(token)),
            };
            match verified {
                Ok(grant) => {
                    trusted = true;
                    request.extensions_mut().insert(grant);
                }
                Err(error) => {
                    let response = tonic::Status::from(error).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        let span = match (trace, trusted) {
            (Some(trace), true) => trace.trust_caller(),
            (Some(trace), false) => trace.distrust_caller(),
            (None, _) => tracing::Span::current(),
        };
        if let Some(grant) = request.extensions().get::<crate::credential::Grant>() {
            if let Some(tenant) = grant.tenant_id {
                span.record("tenant_id", tracing::field::display(tenant));
            }
            span.record("principal", grant.principal.as_str());
        }
        let mut inner = take_ready(&mut self.inner);
        Box::pin(inner.call(request).instrument(span))
    }
}

/// Fails a call with DEADLINE_EXCEEDED once the earlier of its own deadline
/// (`grpc-timeout`) and the server's ceiling has passed, dropping (and so
/// cancelling) the work behind it; the work sees the deadline
/// ([`crate::deadline::remaining`]) and carries it down to PostgreSQL.
/// tonic's own server timeout answers CANCELLED instead, which clients
/// would not retry as a deadline.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    ceiling: Duration,
}

impl DeadlineLayer {
    pub fn new(ceiling: Duration) -> Self {
        Self { ceiling }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            ceiling: self.ceiling,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    ceiling: Duration,
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()))
            .map_or(self.ceiling, |timeout| timeout.min(self.ceiling));
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        let future = take_ready(&mut self.inner).call(request);
        let deadline = tokio::time::Instant::now() + budget;
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, crate::deadline::scope(deadline, future)).await
            {
                Ok(result) => result,
                Err(_) if grpc => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call's deadline of {} ms passed",
                    budget.as_millis()
                ))
                .into_http()),
                // A plain-HTTP request (a gateway route): a plain timeout.
                Err(_) => {
                    let mut response = http::Response::new(tonic::body::Body::empty());
                    *response.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
                    Ok(response)
                }
            }
        })
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Translates gRPC-Web calls (from browsers) into gRPC and their answers
/// back, and passes every other request on as it is: tonic-web alone
/// refuses plain HTTP/1.1 requests, which the gateway's routes answer.
#[derive(Debug, Clone, Default)]
pub struct GrpcWebLayer;

impl<S> Layer<S> for GrpcWebLayer {
    type Service = GrpcWeb<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWeb { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcWeb<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for GrpcWeb<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = take_ready(&mut self.inner);
        let grpc_web = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc-web"));
        if grpc_web {
            Box::pin(tonic_web::GrpcWebLayer::new().layer(inner).call(request))
        } else {
            let mut inner = inner;
            Box::pin(inner.call(request.map(tonic::body::Body::new)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_per_the_spec() {
        assert_eq!(
            parse_grpc_timeout(b"300m"),
            Some(Duration::from_millis(300))
        );
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        for bad in [&b""[..], b"m", b"123456789m", b"10x", b"-1S", b"1.5S"] {
            assert_eq!(
                parse_grpc_timeout(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
