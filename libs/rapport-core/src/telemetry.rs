//! Logs and traces: `tracing` with text or JSON output, OpenTelemetry spans
//! exported over OTLP when configured, and W3C trace context carried in gRPC
//! metadata in both directions.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetryConfig};

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
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meters = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        // Metrics (such as a feed consumer's lag) go to the same collector.
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
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));

    let filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("invalid log filter {:?}", config.log_filter))?;
    let fmt_layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
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

/// Makes `span` a child of the W3C trace context in `headers`, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when no OpenTelemetry layer is installed (as in some tests).
    let _ = span.set_parent(parent);
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

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
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
