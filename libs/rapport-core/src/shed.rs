//! Shedding instead of queueing: a server serves at most so many calls at
//! once, and refuses one more within microseconds (RESOURCE_EXHAUSTED with
//! a RetryInfo delay) rather than letting it wait, unseen, for a slot while
//! its deadline runs out. Health checks are never shed.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use rapport_proto::common::v1::ErrorReason as Common;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::error::ApiError;

/// How long a shed caller is asked to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(50);
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone)]
pub struct ShedLayer {
    slots: Arc<Semaphore>,
}

impl ShedLayer {
    /// At most `max_in_flight` calls at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            slots: self.slots.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S, B> Service<http::Request<B>> for Shed<S>
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
        let slot = if request.uri().path().starts_with(HEALTH_PREFIX) {
            None
        } else {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let refused = ApiError::resource_exhausted(
                        Common::Overloaded,
                        "the service is at its limit of calls in flight; retry after the delay",
                        RETRY_AFTER,
                    );
                    let response = tonic::Status::from(refused).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        };
        let future = crate::middleware::take_ready(&mut self.inner).call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match slot {
                Some(slot) => {
                    response.map(|body| tonic::body::Body::new(HoldsPermit::new(body, slot)))
                }
                None => response,
            })
        })
    }
}

/// A response body that holds a permit (or any guard) until it ends, so
/// that a stream keeps its slot for as long as it runs.
pub struct HoldsPermit<G = OwnedSemaphorePermit> {
    body: tonic::body::Body,
    _permit: G,
}

impl<G> HoldsPermit<G> {
    pub fn new(body: tonic::body::Body, permit: G) -> Self {
        Self {
            body,
            _permit: permit,
        }
    }
}

impl<G: Unpin> http_body::Body for HoldsPermit<G> {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
