//! Plain-HTTP requests at the gateway's address: a hosted survey page,
//! campaign tracking and unsubscribe links, the dashboard's files. A route
//! table (`RAPPORT_HTTP_ROUTES`) sends each path prefix to a service behind
//! the gateway, public (limited per client address like public gRPC calls)
//! or keyed (an API key whose scopes cover the service). The service is
//! told the address clients know the gateway by (`x-forwarded-host`,
//! `x-forwarded-proto`), so the links it writes point there. A path no
//! route and no method claims is 404.

use std::collections::HashMap;

use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use prost::bytes::Bytes;
use rapport_core::credential::Access;
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::admission::{Admissions, not_configured};
use crate::domain::client::Client;
use crate::domain::http_route::{HttpRoute, RouteAccess, RouteTable};
use crate::edge::make_forwardable;
use crate::upstream::Upstream;

/// The routes, and what a routed request may carry.
pub struct WebRoutes {
    pub table: RouteTable,
    /// Largest request body of a public route, and of a keyed one.
    pub max_public_bytes: usize,
    pub max_keyed_bytes: usize,
    /// The host and scheme clients reach the gateway by
    /// (`RAPPORT_PUBLIC_BASE_URL`); else the request's own host.
    pub public_base: Option<(HeaderValue, HeaderValue)>,
}

impl WebRoutes {
    /// Answers `request` from `client` by `route`: admitted, forwarded to
    /// the route's service with a credential for it, and its answer
    /// streamed back; a refusal is an HTTP status, not a gRPC one.
    pub async fn serve(
        &self,
        route: &HttpRoute,
        client: Client,
        request: http::Request<Body>,
        admissions: &Admissions,
        upstreams: &HashMap<String, Upstream>,
    ) -> http::Response<Body> {
        match self
            .forward(route, client, request, admissions, upstreams)
            .await
        {
            Ok(response) => response,
            Err(refusal) => refusal,
        }
    }

    async fn forward(
        &self,
        route: &HttpRoute,
        client: Client,
        request: http::Request<Body>,
        admissions: &Admissions,
        upstreams: &HashMap<String, Upstream>,
    ) -> Result<http::Response<Body>, http::Response<Body>> {
        let (mut parts, body) = request.into_parts();
        let (admission, max_bytes) = match route.access {
            RouteAccess::Public => (
                admissions.public(client, None, &route.service),
                self.max_public_bytes,
            ),
            RouteAccess::Keyed => {
                let access = if parts.method.is_safe() {
                    Access::Read
                } else {
                    Access::Write
                };
                let admitted = admissions
                    .key_holder(&parts.headers, client, &route.service, access)
                    .await;
                (admitted, self.max_keyed_bytes)
            }
        };
        let admission = admission.map_err(|status| refusal(&status))?;
        let upstream = upstreams
            .get(&route.service)
            .ok_or_else(|| refusal(&not_configured(&route.service).into()))?;
        let body = match Limited::new(body, max_bytes).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return Err(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {max_bytes} bytes"),
                ));
            }
        };

        let (host, proto) = match &self.public_base {
            Some(base) => base.clone(),
            None => (
                parts
                    .headers
                    .get(http::header::HOST)
                    .cloned()
                    .unwrap_or_else(|| HeaderValue::from_static("localhost")),
                HeaderValue::from_static("http"),
            ),
        };
        parts.headers.remove(http::header::HOST);
        parts.headers.insert("x-forwarded-host", host);
        parts.headers.insert("x-forwarded-proto", proto);
        make_forwardable(&mut parts.headers, admission.credential);
        // Services behind the gateway speak HTTP/2, whatever the client did.
        parts.version = http::Version::HTTP_2;
        let response = upstream.call(parts, body).await.map_err(|error| {
            tracing::warn!(service = %route.service, %error, "upstream unreachable");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the {} service is unreachable; retry later", route.service),
            )
        })?;
        Ok(response
            .map(|body| Body::new(rapport_core::shed::HoldsPermit::new(body, admission.slot))))
    }
}

/// The HTTP answer to a refusal: the status that matches its gRPC code,
/// its message as text, and when to retry if it says.
fn refusal(status: &Status) -> http::Response<Body> {
    let code = match status.code() {
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = plain(code, status.message());
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        // Whole seconds, rounded up.
        .map(|delay| delay.as_secs() + u64::from(delay.subsec_nanos() > 0));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A plain-text answer.
pub fn plain(code: StatusCode, text: &str) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Full::new(Bytes::from(format!("{text}\n")))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
