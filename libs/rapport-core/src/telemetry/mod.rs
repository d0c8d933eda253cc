//! Logs, traces and metrics: `tracing` with text or JSON output (JSON lines
//! name their trace and span), OpenTelemetry spans and metrics exported over
//! OTLP when configured, W3C trace context carried in gRPC metadata in both
//! directions and with every event a change writes (see [`rpc`] for the
//! calls themselves).

pub mod log;
pub mod rpc;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetryConfig};

/// The W3C header that carries a caller's vendor-specific trace state.
const TRACESTATE: &str = "tracestate";

/// Keeps the tracer and meter providers alive; call [`Telemetry::shutdown`]
/// before exit so buffered spans and metrics are flushed.
pub struct Telemetry {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
}

/// Installs the global subscriber and propagator for `service_name`.
///
/// Spans get OpenTelemetry ids even without an exporter, so the trace context
/// of an incoming call is still passed on to the calls it makes.
pub fn init(service_name: String, config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.clone())
        .with_attributes([
            KeyValue::new("service.namespace", "rapport"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            // One per process: tells replicas (and restarts) apart.
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meters = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        // Metrics go to the same collector.
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .context("building the OTLP metric exporter")?;
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(exporter)
            .build();
        opentelemetry::global::set_meter_provider(meter_provider.clone());
        meters = Some(meter_provider);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .context("building the OTLP span exporter")?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    // Spans carry what the conventions name, not the source location,
    // thread and busy/idle timings of each: less to build per call, and
    // less to export.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false);

    let filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("invalid log filter {:?}", config.log_filter))?;
    let fmt_layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(log::WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        // Traces do not depend on how much is logged: a deployment that
        // logs only warnings still exports every call's spans.
        .with(otel_layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
        // Statements are counted for transaction spans only when spans
        // are exported: sqlx formats its report of each one we listen to.
        .with(
            config
                .otlp_endpoint
                .is_some()
                .then(|| crate::db::StatementCounting.with_filter(crate::db::statement_events())),
        )
        .try_init()
        .context("a global tracing subscriber is already installed")?;
    Ok(Telemetry { provider, meters })
}

impl Telemetry {
    /// Flushes and stops span export. The exporter blocks, so this runs on a
    /// blocking thread rather than stalling the runtime.
    pub async fn shutdown(self) {
        let Self { provider, meters } = self;
        let result = tokio::task::spawn_blocking(move || {
            let traces = provider.shutdown();
            let metrics = meters.map_or(Ok(()), |meters| meters.shutdown());
            traces.and(metrics)
        })
        .await;
        if let Ok(Err(error)) = result {
            tracing::warn!(%error, "flushing telemetry at shutdown failed");
        }
    }
}

/// The W3C trace context a caller sent in `headers` (an empty context when
/// it sent none), without its `tracestate`: vendor state from outside is
/// not carried into Rapport.
pub fn caller_context(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor {
            headers,
            skip: Some(TRACESTATE),
        })
    })
}

/// Makes `span` continue the caller's trace.
pub fn continue_trace(span: &tracing::Span, caller: Context) {
    // Fails only when no OpenTelemetry layer is installed (as in some
    // tests) or the span has already started.
    let _ = span.set_parent(caller);
}

/// Keeps the caller's trace as a link of `span`, which starts a trace of
/// its own: for callers Rapport does not trust to place its work in their
/// traces.
pub fn link_trace(span: &tracing::Span, caller: &Context) {
    span.add_link(caller.span().span_context().clone());
}

/// The current span's context as a W3C `traceparent`, to store with the
/// events a change writes; `None` outside any sampled span.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        )
    })
}

/// Links `span` to the trace a stored `traceparent` names (the call that
/// wrote an event); a malformed one is ignored.
pub fn link_traceparent(span: &tracing::Span, traceparent: &str) {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
        link_trace(span, &caller_context(&headers));
    }
}

/// Writes the current span's W3C trace context into outgoing call metadata.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let mut headers = std::mem::take(metadata).into_headers();
    inject_current_context_into_headers(&mut headers);
    *metadata = tonic::metadata::MetadataMap::from_headers(headers);
}

/// Writes the current span's W3C trace context into outgoing HTTP headers,
/// replacing any the request came with.
pub fn inject_current_context_into_headers(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// A tonic interceptor that passes the current trace context on.
pub fn propagate_trace_context(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_current_context(request.metadata_mut());
    Ok(request)
}

struct HeaderExtractor<'a> {
    headers: &'a http::HeaderMap,
    /// A header to read as absent.
    skip: Option<&'static str>,
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if self.skip == Some(key) {
            return None;
        }
        self.headers.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|key| self.skip != Some(*key))
            .collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let key = http::HeaderName::from_bytes(key.as_bytes());
        let value = http::HeaderValue::from_str(&value);
        if let (Ok(key), Ok(value)) = (key, value) {
            self.0.insert(key, value);
        }
    }
}
