//! The services behind the gateway: where each is, and the HTTP/2 client
//! that multiplexes calls to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use prost::bytes::Bytes;
use rapport_core::io::CoalescedWrites;
use tokio::net::TcpStream;
use tonic::body::Body;
use tower::ServiceExt as _;
use tower::util::MapResponse;

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
    next: AtomicUsize,
}

/// How long a caller is asked to wait when a service cannot be reached.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

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
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let clients = (0..UPSTREAM_CONNECTIONS)
            .map(|_| {
                Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
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
            next: AtomicUsize::new(0),
        })
    }

    /// Sends `request` (whose URI is a path, whose body is one message) to
    /// this upstream. A connection that could not even be opened (a
    /// replica shutting down) is tried once more on the next connection:
    /// nothing was sent, so nothing can happen twice.
    pub async fn call(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> Result<http::Response<Body>, hyper_util::client::legacy::Error> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = http::Uri::from_parts(uri).expect("scheme, authority and path make a URI");
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
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
