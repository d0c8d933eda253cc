//! Cross-origin gRPC-Web: a page served from one of the configured origins
//! (`RAPPORT_CORS_ALLOWED_ORIGINS`; none by default) may call the gateway
//! from the browser. Preflights are answered; the request headers a
//! gRPC-Web client sends are allowed, and the response headers it reads
//! (the call's status and its details) are exposed to it.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// What a gRPC-Web client sends besides the CORS-safelisted headers.
const REQUEST_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "x-request-id",
];

/// What it reads of an answer: the status (in headers when the call fails
/// before a body), its details, and the request id to quote.
const EXPOSED_HEADERS: [&str; 4] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
];

/// The CORS layer for `origins`, or none when no origin is allowed.
pub fn layer(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let names = |names: &[&'static str]| {
        names
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect::<Vec<_>>()
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::POST])
            .allow_headers(names(&REQUEST_HEADERS))
            .expose_headers(names(&EXPOSED_HEADERS))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// An origin as browsers send it (`scheme://host[:port]`, lower-cased,
/// without a default port), from one written with nothing else.
pub fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    let origin = url.origin().ascii_serialization();
    let only_origin = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || !only_origin {
        return Err(format!(
            "{text:?} is not an origin: give scheme://host[:port], such as https://app.example.com"
        ));
    }
    HeaderValue::from_str(&origin).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("https://app.example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:5173/").unwrap(),
            "http://localhost:5173"
        );
        // As a browser would send it.
        assert_eq!(
            parse_origin("https://App.Example.com:443").unwrap(),
            "https://app.example.com"
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://app.example.com/?q=1",
            "https://user@app.example.com",
            "ftp://files.example.com",
            "*",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
