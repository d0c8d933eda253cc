//! The connections a server accepts: at most so many open at once (one
//! more is closed as it arrives, before it costs a task or a buffer), each
//! closed once it has carried no call for a while, and each telling its
//! calls the address it came from.
//!
//! HTTP/2 keepalive pings find peers that went away; the idle timeout finds
//! peers that stay but send nothing, which would otherwise hold their slot
//! under the connection cap for ever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpIncoming};
use tower::{Layer, Service};

use crate::io::CoalescedWrites;
use crate::shed::HoldsPermit;

/// How many connections a server keeps, and for how long without a call.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// What a call knows of the connection it came on; in the extensions of
/// every request a Rapport server serves.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address: the client's, or that of a proxy in front.
    pub remote_addr: Option<SocketAddr>,
    activity: Arc<Activity>,
}

/// Calls in flight on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` at which the connection last fell idle.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// When the connection will have been idle for `timeout`, or `None`
    /// while a call is in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + idle_since + timeout)
    }
}

/// One call on a connection, from its request to the end of its response.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections from `listener` within `limits`: beyond the cap a
/// connection is closed as soon as it is accepted.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<ServerConnection<CoalescedWrites<TcpStream>>>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = RefusalLog::default();
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .filter_map(move |accepted| {
            let admitted = accepted.map(|stream| {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    refusals.note(limits.max_connections);
                    return None;
                };
                let remote_addr = stream.peer_addr().ok();
                Some(ServerConnection::new(
                    CoalescedWrites::new(stream),
                    remote_addr,
                    limits.idle_timeout,
                    slot,
                ))
            });
            std::future::ready(admitted.transpose())
        })
}

/// Logs refused connections at most once a second: a flood must not
/// become a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    refused: AtomicU64,
    last_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RefusalLog {
    fn note(&self, cap: usize) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(
                cap,
                refused_so_far = refused,
                "at the connection cap; closing new connections"
            );
        }
    }
}

/// An accepted connection: holds its slot under the cap, and reads as
/// closed once no call has been in flight on it for the idle timeout.
pub struct ServerConnection<T> {
    inner: T,
    info: ConnectionInfo,
    idle_timeout: Duration,
    idle_check: Pin<Box<Sleep>>,
    closed: bool,
    _slot: OwnedSemaphorePermit,
}

impl<T> ServerConnection<T> {
    fn new(
        inner: T,
        remote_addr: Option<SocketAddr>,
        idle_timeout: Duration,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            inner,
            info: ConnectionInfo {
                remote_addr,
                activity: Arc::new(Activity::new()),
            },
            idle_timeout,
            idle_check: Box::pin(tokio::time::sleep(idle_timeout)),
            closed: false,
            _slot: slot,
        }
    }

    /// Whether the idle timeout has run out; otherwise the next check is
    /// set, and will wake the connection's task.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_check.as_mut().poll(cx).is_ready() {
            match self.info.activity.idle_deadline(self.idle_timeout) {
                Some(deadline) if deadline <= Instant::now() => return true,
                Some(deadline) => self.idle_check.as_mut().reset(deadline),
                None => self
                    .idle_check
                    .as_mut()
                    .reset(Instant::now() + self.idle_timeout),
            }
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ServerConnection<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed && this.poll_idle(cx) {
            tracing::debug!(peer = ?this.info.remote_addr, "closing an idle connection");
            this.closed = true;
        }
        if this.closed {
            // End of stream: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ServerConnection<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> Connected for ServerConnection<T> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

/// Counts each call against its connection's activity, from request to
/// the end of the response, so a connection is idle only between calls.
#[derive(Debug, Clone, Default)]
pub struct ActivityLayer;

impl<S> Layer<S> for ActivityLayer {
    type Service = TrackActivity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackActivity { inner }
    }
}

#[derive(Debug, Clone)]
pub struct TrackActivity<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for TrackActivity<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(|info| InFlight::begin(info.activity.clone()));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match call {
                Some(call) => {
                    response.map(|body| tonic::body::Body::new(HoldsPermit::new(body, call)))
                }
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_once_its_last_call_has_ended() {
        let activity = Arc::new(Activity::new());
        let timeout = Duration::from_secs(10);
        assert_eq!(
            activity.idle_deadline(timeout),
            Some(activity.epoch + timeout)
        );
        let first = InFlight::begin(activity.clone());
        let second = InFlight::begin(activity.clone());
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(first);
        assert_eq!(
            activity.idle_deadline(timeout),
            None,
            "a call is still in flight"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        drop(second);
        assert_eq!(
            activity.idle_deadline(timeout),
            Some(activity.epoch + Duration::from_secs(7) + timeout)
        );
    }
}
