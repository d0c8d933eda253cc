//! Every call a process serves or makes, told the way OpenTelemetry's RPC
//! conventions tell it: a span named `package.Service/Method` with the
//! `rpc.*` attributes, its outcome taken from the call's final gRPC status
//! (in the headers of a trailers-only answer, or in the trailers after the
//! last message), and the call-duration histograms.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use tonic::Code;
use tonic_types::StatusExt as _;
use tracing::field::Empty;

/// Stands for a method no Rapport contract names, so that made-up paths
/// cannot grow the metrics without bound.
const OTHER: &str = "_OTHER";

/// Bucket boundaries of the duration histograms, in seconds: from half a
/// millisecond (a cached read) to the longest call a server allows.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Which end of the call this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// One call being served or made, until its final status is known.
pub struct RpcCall {
    span: tracing::Span,
    side: Side,
    started: Instant,
    /// `rpc.system`, `rpc.service`, `rpc.method`: the metrics' attributes.
    attributes: [KeyValue; 3],
    finished: bool,
}

impl RpcCall {
    /// A call this process serves, at `path` (`/package.Service/Method`).
    /// Its span is a root; the caller's context is applied by whoever
    /// decides to trust it.
    pub fn server(path: &str, request_id: &str) -> Self {
        let (service, method) = method_of(path);
        let span = tracing::info_span!(
            parent: None,
            "rpc",
            otel.name = %span_name(service, method),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            rapport.error.reason = Empty,
            request_id = %request_id,
            tenant_id = Empty,
            principal = Empty,
        );
        instruments()
            .active
            .add(1, &base_attributes(service, method));
        Self::new(span, Side::Server, service, method)
    }

    /// A call this process makes at `path`, as a child of the current span.
    pub fn client(path: &str) -> Self {
        let (service, method) = method_of(path);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %span_name(service, method),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            rapport.error.reason = Empty,
        );
        Self::new(span, Side::Client, service, method)
    }

    fn new(span: tracing::Span, side: Side, service: &'static str, method: &'static str) -> Self {
        Self {
            span,
            side,
            started: Instant::now(),
            attributes: base_attributes(service, method),
            finished: false,
        }
    }

    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Follows `response` to its final status: at once when its headers
    /// carry it (an error before any message), else when its body ends.
    pub fn observe<B>(mut self, response: http::Response<B>) -> http::Response<Observed<B>> {
        let status = grpc_code(response.headers())
            .or_else(|| (!is_grpc(response.headers())).then(|| http_code(response.status())));
        if let Some(code) = status {
            self.finish(code, response.headers());
            return response.map(|body| Observed { body, call: None });
        }
        response.map(|body| Observed {
            body,
            call: Some(self),
        })
    }

    /// Ends a call that got no response at all (its peer unreachable).
    pub fn fail(mut self, code: Code) {
        self.finish(code, &http::HeaderMap::new());
    }

    /// Ends the call with the status in `fields` (headers or trailers).
    fn finish(&mut self, code: Code, fields: &http::HeaderMap) {
        if self.finished {
            return;
        }
        self.finished = true;
        let reason = (code != Code::Ok).then(|| error_reason(fields)).flatten();
        self.record(code, reason.as_deref());
    }

    fn record(&self, code: Code, reason: Option<&str>) {
        let span = &self.span;
        span.record("rpc.grpc.status_code", code as i32);
        if is_error(self.side, code) {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(reason) = reason {
            span.record("rapport.error.reason", reason);
        }
        let instruments = instruments();
        let mut attributes = self.attributes.to_vec();
        attributes.push(KeyValue::new("rpc.grpc.status_code", code as i64));
        let seconds = self.started.elapsed().as_secs_f64();
        match self.side {
            Side::Server => {
                instruments.server_duration.record(seconds, &attributes);
                instruments.active.add(-1, &self.attributes);
                if let Some(reason) = reason {
                    attributes.push(KeyValue::new("rapport.error.reason", reason.to_owned()));
                    instruments.refused.add(1, &attributes);
                }
                if code != Code::Ok {
                    span.in_scope(|| {
                        tracing::info!(
                            grpc_status = code as i32,
                            reason = reason.unwrap_or("-"),
                            "call failed"
                        );
                    });
                }
            }
            Side::Client => instruments.client_duration.record(seconds, &attributes),
        }
    }
}

impl Drop for RpcCall {
    /// A call dropped before its status: the other end went away.
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.record(Code::Cancelled, None);
        }
    }
}

/// A response body that ends its call when its trailers pass.
pub struct Observed<B> {
    body: B,
    call: Option<RpcCall>,
}

impl<B> http_body::Body for Observed<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(mut call) = this.call.take()
        {
            let code = grpc_code(trailers).unwrap_or(Code::Unknown);
            call.finish(code, trailers);
        }
        if let Poll::Ready(None) = &polled
            && let Some(mut call) = this.call.take()
        {
            // A body that ends without trailers broke the protocol.
            call.finish(Code::Unknown, &http::HeaderMap::new());
        }
        if let Poll::Ready(Some(Err(_))) = &polled
            && let Some(mut call) = this.call.take()
        {
            // The body broke off (a service gone mid-stream), which is not
            // the caller going away.
            call.finish(Code::Unavailable, &http::HeaderMap::new());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether `code` marks the span an error: on the server, only the codes
/// the conventions count as the server's fault; on the client, any.
pub fn is_error(side: Side, code: Code) -> bool {
    match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC code that stands for the HTTP status of a plain-HTTP answer
/// (a page behind the gateway), so that its span and metrics read alike.
fn http_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        200..=399 => Code::Ok,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

fn grpc_code(fields: &http::HeaderMap) -> Option<Code> {
    let value = fields.get("grpc-status")?.to_str().ok()?;
    Some(Code::from(value.parse::<i32>().ok()?))
}

/// The ErrorInfo reason a refused call carries, such as `RATE_LIMITED`.
fn error_reason(fields: &http::HeaderMap) -> Option<String> {
    let status = tonic::Status::from_header_map(fields)?;
    status.get_details_error_info().map(|info| info.reason)
}

/// The service and method of `path`, or [`OTHER`] for a path that is no
/// method of the contracts this process knows.
fn method_of(path: &str) -> (&'static str, &'static str) {
    known_methods()
        .get(path.trim_start_matches('/'))
        .map_or((OTHER, OTHER), |(service, method)| (service, method))
}

fn span_name(service: &str, method: &str) -> String {
    if service == OTHER {
        OTHER.to_owned()
    } else {
        format!("{service}/{method}")
    }
}

fn base_attributes(service: &'static str, method: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service),
        KeyValue::new("rpc.method", method),
    ]
}

/// Every method of every contract this process knows, by
/// `package.Service/Method`, with its service and method names.
fn known_methods() -> &'static std::collections::HashMap<String, (&'static str, &'static str)> {
    static METHODS: OnceLock<std::collections::HashMap<String, (&'static str, &'static str)>> =
        OnceLock::new();
    METHODS.get_or_init(|| {
        let mut names: HashSet<(String, String)> = HashSet::new();
        for service in rapport_proto::descriptor_pool().services() {
            for method in service.methods() {
                names.insert((service.full_name().to_owned(), method.name().to_owned()));
            }
        }
        for (service, method) in [
            ("grpc.health.v1.Health", "Check"),
            ("grpc.health.v1.Health", "Watch"),
            (
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo",
            ),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo",
            ),
        ] {
            names.insert((service.to_owned(), method.to_owned()));
        }
        names
            .into_iter()
            .map(|(service, method)| {
                let path = format!("{service}/{method}");
                // Leaked once per method of the contract, to be `'static`
                // attribute values without a copy per call.
                let service: &'static str = Box::leak(service.into_boxed_str());
                let method: &'static str = Box::leak(method.into_boxed_str());
                (path, (service, method))
            })
            .collect()
    })
}

struct Instruments {
    server_duration: Histogram<f64>,
    client_duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    refused: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("rapport");
        Instruments {
            server_duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_unit("s")
                .with_description("Duration of the calls this process served")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            client_duration: meter
                .f64_histogram("rpc.client.call.duration")
                .with_unit("s")
                .with_description("Duration of the calls this process made")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("rapport.rpc.server.active_calls")
                .with_unit("{call}")
                .with_description("Calls being served")
                .build(),
            refused: meter
                .u64_counter("rapport.rpc.server.refused_calls")
                .with_unit("{call}")
                .with_description(
                    "Calls answered with an error reason (shed, limited, invalid, ...)",
                )
                .build(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_faults_are_errors_on_the_server() {
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(is_error(Side::Server, code), "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::Cancelled,
        ] {
            assert!(!is_error(Side::Server, code), "{code:?}");
        }
        assert!(is_error(Side::Client, Code::NotFound));
        assert!(!is_error(Side::Client, Code::Ok));
    }

    #[test]
    fn a_plain_http_answer_reads_as_the_code_of_its_status() {
        assert_eq!(http_code(http::StatusCode::OK), Code::Ok);
        assert_eq!(http_code(http::StatusCode::FOUND), Code::Ok);
        assert_eq!(http_code(http::StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(
            http_code(http::StatusCode::TOO_MANY_REQUESTS),
            Code::ResourceExhausted
        );
        assert_eq!(
            http_code(http::StatusCode::BAD_REQUEST),
            Code::InvalidArgument
        );
        assert_eq!(http_code(http::StatusCode::BAD_GATEWAY), Code::Internal);
    }

    #[test]
    fn methods_of_the_contract_are_named_and_others_are_one_name() {
        assert_eq!(
            method_of("/rapport.contacts.v1.ContactsService/GetContact"),
            ("rapport.contacts.v1.ContactsService", "GetContact")
        );
        assert_eq!(method_of("/made.up.Service/Anything"), (OTHER, OTHER));
        assert_eq!(method_of("/"), (OTHER, OTHER));
    }
}
