//! What a service's database work tells its observers: one span per
//! transaction (its time, statement count and outcome) and the pool's
//! connection metrics, per OpenTelemetry's database conventions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, ObservableUpDownCounter};
use sqlx::PgPool;
use tracing::field::Empty;
use tracing_subscriber::registry::LookupSpan as _;

/// The span of one transaction: its time, and how many statements it ran
/// (one span per transaction, never one per statement, so a trace stays
/// readable).
pub(super) struct TxSpan {
    span: tracing::Span,
    /// The call's span, which holds the counter while the transaction is open.
    call: tracing::Span,
    statements: Arc<AtomicU32>,
    pub(super) committed: bool,
}

impl TxSpan {
    /// A transaction span under the current call's span, which counts the
    /// statements run in the call from now on; none outside any call.
    pub(super) fn begin() -> Self {
        let statements = Arc::new(AtomicU32::new(0));
        let call = tracing::Span::current();
        if call.is_none() {
            return Self {
                span: tracing::Span::none(),
                call,
                statements,
                committed: false,
            };
        }
        let span = tracing::info_span!(
            "db",
            otel.name = "transaction",
            otel.kind = "client",
            db.system.name = "postgresql",
            rapport.db.statements = Empty,
            rapport.db.outcome = Empty,
        );
        // Statements run on the call's task, inside the call's span (a
        // transaction's span is never entered): the call's span holds the
        // counter of its open transaction.
        with_extensions(&call, |extensions| {
            extensions.replace(StatementCounter(statements.clone()));
        });
        Self {
            span,
            call,
            statements,
            committed: false,
        }
    }
}

/// Runs `change` on the extensions of `span` in the registry.
fn with_extensions(
    span: &tracing::Span,
    change: impl FnOnce(&mut tracing_subscriber::registry::ExtensionsMut<'_>),
) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            change(&mut data.extensions_mut());
        }
    });
}

impl Drop for TxSpan {
    fn drop(&mut self) {
        // Statements after this transaction are not its own.
        with_extensions(&self.call, |extensions| {
            let ours = extensions
                .get_mut::<StatementCounter>()
                .is_some_and(|counter| Arc::ptr_eq(&counter.0, &self.statements));
            if ours {
                extensions.remove::<StatementCounter>();
            }
        });
        self.span.record(
            "rapport.db.statements",
            self.statements.load(Ordering::Relaxed),
        );
        self.span.record(
            "rapport.db.outcome",
            if self.committed { "commit" } else { "rollback" },
        );
    }
}

/// The statement counter of a call's open transaction.
struct StatementCounter(Arc<AtomicU32>);

/// Counts the statements sqlx reports (its `sqlx::query` events) against
/// the open transaction of the call they run in.
pub struct StatementCounting;

impl<S> tracing_subscriber::Layer<S> for StatementCounting
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if let Some(counter) = span.extensions().get::<StatementCounter>() {
                counter.0.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// What [`StatementCounting`] hears: sqlx's report of each statement, and
/// the calls' spans it runs in (a layer sees only the spans its filter lets
/// through; the libraries' debug and trace spans stay off).
pub fn statement_events<S>() -> impl tracing_subscriber::layer::Filter<S> {
    tracing_subscriber::filter::filter_fn(|metadata| {
        (metadata.is_span() && *metadata.level() <= tracing::Level::INFO)
            || metadata.target() == "sqlx::query"
    })
}

/// The pool's metrics, per the database client conventions.
pub(super) struct PoolMetrics {
    pub(super) wait_time: Histogram<f64>,
    _connections: ObservableUpDownCounter<i64>,
    _max: ObservableUpDownCounter<i64>,
}

impl PoolMetrics {
    pub(super) fn new(pool: &PgPool) -> Self {
        let meter = opentelemetry::global::meter("rapport");
        let observed = pool.clone();
        let connections = meter
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Connections of the pool, by state")
            .with_callback(move |observer| {
                let idle = observed.num_idle() as i64;
                let open = i64::from(observed.size());
                observer.observe(idle, &[pool_name(), state("idle")]);
                observer.observe(open - idle, &[pool_name(), state("used")]);
            })
            .build();
        let limit = i64::from(pool.options().get_max_connections());
        let max = meter
            .i64_observable_up_down_counter("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("Most connections the pool may open")
            .with_callback(move |observer| observer.observe(limit, &[pool_name()]))
            .build();
        let wait_time = meter
            .f64_histogram("db.client.connection.wait_time")
            .with_unit("s")
            .with_description("Time a call waited for a connection (and its tenant's share)")
            .with_boundaries(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ])
            .build();
        Self {
            wait_time,
            _connections: connections,
            _max: max,
        }
    }
}

pub(super) fn pool_name() -> KeyValue {
    KeyValue::new("db.client.connection.pool.name", "rapport")
}

fn state(state: &'static str) -> KeyValue {
    KeyValue::new("db.client.connection.state", state)
}
