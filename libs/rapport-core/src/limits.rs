//! Request limits that bite before a message is decoded. Every Rapport
//! request is one message (no method streams requests), so a call's body is
//! read up to the method's limit and no further: public methods, which
//! anyone may call, take a small limit; others the general one. A service
//! then checks the message on the wire ([`crate::wire`]), through the
//! decompressor when it came gzipped, so that neither bytes nor entries nor
//! decoded memory can grow past what the contract allows; the gateway only
//! caps the bytes and leaves the rest to the service that owns the method.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full, Limited};
use tower::{Layer, Service};

use crate::contract::MethodTable;
use crate::error::ApiError;
use crate::wire::{self, FRAME_HEADER, WireLimits};

/// How much memory a request may take once decoded, as a multiple of its
/// byte limit: room for honest requests, a bound on hostile ones.
const DECODED_PER_BYTE: u64 = 4;

/// What the limits layer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Bytes only (the gateway: the service that owns the method checks
    /// the rest).
    Bytes,
    /// Bytes, caps and decoded size of the message (the services).
    Message,
}

/// Limits every call of a server by its method's byte limit.
#[derive(Clone)]
pub struct RequestLimitsLayer {
    inner: Arc<Limits>,
}

struct Limits {
    methods: MethodTable,
    general: u64,
    public: u64,
    check: Check,
}

impl RequestLimitsLayer {
    /// `general` bytes for methods of the contract, `public` for those
    /// marked public.
    pub fn new(general: usize, public: usize, check: Check) -> Self {
        Self {
            inner: Arc::new(Limits {
                methods: MethodTable::new(&[]),
                general: general as u64,
                public: public.min(general) as u64,
                check,
            }),
        }
    }
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits {
            inner,
            limits: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestLimits<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, B> Service<http::Request<B>> for RequestLimits<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut inner = crate::middleware::take_ready(&mut self.inner);
        let limits = self.limits.clone();
        Box::pin(async move {
            let Some(rule) = limits.methods.get(request.uri().path()) else {
                // Health, reflection, or no such method: tonic answers.
                return inner.call(request.map(tonic::body::Body::new)).await;
            };
            let max_bytes = if rule.public {
                limits.public
            } else {
                limits.general
            };
            let gzip = request
                .headers()
                .get("grpc-encoding")
                .is_some_and(|encoding| encoding == "gzip");
            let (parts, body) = request.into_parts();
            let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX) + FRAME_HEADER;
            let bytes = match Limited::new(body, cap).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let refusal = if error.is::<http_body_util::LengthLimitError>() {
                        ApiError::request_too_large(
                            "request",
                            format!(
                                "is larger than the {} KiB this method takes",
                                max_bytes / 1024
                            ),
                        )
                    } else {
                        ApiError::invalid_field("request", "its body could not be read")
                    };
                    return Ok(tonic::Status::from(refusal).into_http());
                }
            };
            if limits.check == Check::Message
                && let Err(refusal) = check_message(&bytes, gzip, &rule.input, max_bytes)
            {
                return Ok(tonic::Status::from(refusal).into_http());
            }
            let request =
                http::Request::from_parts(parts, tonic::body::Body::new(Full::new(bytes)));
            inner.call(request).await
        })
    }
}

/// Checks the one message of a unary request body on the wire.
fn check_message(
    body: &[u8],
    gzip: bool,
    input: &prost_reflect::MessageDescriptor,
    max_bytes: u64,
) -> Result<(), ApiError> {
    let Some(message) = wire::unary_message(body, gzip) else {
        return Ok(());
    };
    let limits = WireLimits {
        max_bytes,
        max_decoded_bytes: max_bytes.saturating_mul(DECODED_PER_BYTE),
    };
    wire::check(message, input, limits).map_err(|refusal| {
        if refusal.malformed {
            ApiError::invalid_field(refusal.field, refusal.description)
        } else {
            ApiError::request_too_large(refusal.field, refusal.description)
        }
    })
}
