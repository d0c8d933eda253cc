//! Following a producer's feed. A consumer keeps its cursor in its own
//! schema and applies each batch of events set-based, in the transaction
//! that moves its cursor, so that a redelivered event changes nothing:
//! at-least-once delivery, exactly-once effect. A new consumer (or one
//! whose cursor fell behind the retained feed) builds from the producer's
//! snapshot, then follows the feed from the position the snapshot names.
//! An event that cannot be applied is set aside as a dead letter, so the
//! rest of the feed flows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use rapport_core::credential::{Access, Grant, Identity, Outbound, Scope};
use rapport_core::db::set_local;
use rapport_proto::EventPayload;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{
    EventEnvelope, GetSnapshotRequest, SnapshotItem, SubscribeRequest,
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

mod apply;

/// Times an event is tried, each in a savepoint of its own, before it is
/// set aside as a dead letter.
pub const ATTEMPTS: usize = 3;

/// What a consumer does with the feed it follows. Every method runs inside
/// a transaction the consumer owns; `app.tenant_id` is set to the tenant of
/// the events or items it is given.
pub trait Handler: Send + Sync {
    /// Applies `events` of one tenant, in feed order, set-based, in the
    /// transaction that moves the cursor past them. An event whose payload
    /// was redacted (a person erased since) has no payload: skip it.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// The snapshot kinds this consumer builds from (payload message
    /// names, see `rapport_events::snapshot::kind`); none when it needs
    /// only the position to start from.
    fn snapshot_kinds(&self) -> Vec<String> {
        Vec::new()
    }

    /// Loads snapshot `items` of one tenant. Must be idempotent: a load cut
    /// short starts again from the beginning.
    fn load<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _items: &'a [SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async { Ok(()) }.boxed()
    }

    /// Forgets the projection before a rebuild from the snapshot (the
    /// cursor fell behind the retained feed). No tenant is set.
    fn reset<'a>(&'a self, _tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        async { Ok(()) }.boxed()
    }
}

/// A shared handler, so its owner can look at its state while it runs.
impl<H: Handler> Handler for Arc<H> {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        (**self).apply(tx, events)
    }

    fn snapshot_kinds(&self) -> Vec<String> {
        (**self).snapshot_kinds()
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        items: &'a [SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        (**self).load(tx, items)
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        (**self).reset(tx)
    }
}

/// The payload of `event` as `M`, or `None` when the event is of another
/// type or its payload was redacted.
pub fn payload<M: EventPayload>(event: &EventEnvelope) -> anyhow::Result<Option<M>> {
    match &event.payload {
        Some(any) if event.r#type == M::EVENT_TYPE && !any.type_url.is_empty() => {
            Ok(Some(any.to_msg()?))
        }
        _ => Ok(None),
    }
}

/// The payload of snapshot `item` as `M`, or `None` when it is of another
/// kind.
pub fn snapshot_payload<M: prost::Name + Default>(
    item: &SnapshotItem,
) -> anyhow::Result<Option<M>> {
    match &item.payload {
        Some(any) if item.kind == M::full_name() => Ok(Some(any.to_msg()?)),
        _ => Ok(None),
    }
}

/// Forgets every tenant's rows of `tables` (schema-qualified) in
/// [`Handler::reset`]: with `app.projection_reset` on, which each table's
/// `projection_reset` policy admits for DELETE, and no tenant set.
pub async fn forget_projection(tx: &mut PgConnection, tables: &[&str]) -> sqlx::Result<()> {
    set_local(&mut *tx, &[("app.projection_reset", "on")]).await?;
    for table in tables {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *tx)
            .await?;
    }
    set_local(tx, &[("app.projection_reset", "off")]).await
}

/// What a consumer follows and where it keeps its place.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    /// The consumer's name, which keys its cursor, such as `feedback.contacts`.
    pub consumer: &'static str,
    /// The producing service, such as `contacts` (the scope its feed needs).
    pub producer: &'static str,
    /// The consumer's schema, which holds `feed_cursors` and `dead_letters`
    /// as [`schema_sql`] defines them.
    pub schema: &'static str,
    /// The event types to apply; all when empty.
    pub types: &'static [&'static str],
}

impl Subscription {
    fn cursors(&self) -> String {
        format!("{}.feed_cursors", self.schema)
    }

    pub(crate) fn dead_letters(&self) -> String {
        format!("{}.dead_letters", self.schema)
    }
}

/// One consumer of one producer's feed.
pub struct Consumer<H> {
    pub subscription: Subscription,
    pub pool: PgPool,
    pub feed: Channel,
    /// The service credential its calls to the producer carry.
    credential: Outbound,
    pub handler: H,
    batch_size: usize,
    lag: Arc<AtomicI64>,
    dead_lettered: Counter<u64>,
    applied: Counter<u64>,
    /// The consumer and producer, as the metrics' attributes.
    attributes: [KeyValue; 2],
    _gauge: opentelemetry::metrics::ObservableGauge<i64>,
}

/// Most links an apply span keeps to the calls behind its events (the
/// OpenTelemetry SDK keeps no more by default).
const MAX_LINKS: usize = 128;

/// Most events applied in one transaction unless configured otherwise.
pub const DEFAULT_BATCH: usize = 1000;

impl<H: Handler> Consumer<H> {
    pub fn new(
        subscription: Subscription,
        pool: PgPool,
        feed: Channel,
        identity: Arc<Identity>,
        handler: H,
    ) -> Self {
        let grant = Grant {
            tenant_id: None,
            principal: format!("consumer:{}", subscription.consumer),
            scopes: vec![Scope::new(subscription.producer, Access::Read)],
        };
        let credential = Outbound::new(identity, subscription.producer, grant);
        let lag = Arc::new(AtomicI64::new(0));
        let observed = lag.clone();
        let attributes = [
            KeyValue::new("consumer", subscription.consumer),
            KeyValue::new("producer", subscription.producer),
        ];
        let meter = opentelemetry::global::meter("rapport-events");
        let observed_attributes = attributes.clone();
        let gauge = meter
            .i64_observable_gauge("rapport.events.consumer.lag")
            .with_unit("{event}")
            .with_description("Events the consumer has yet to apply")
            .with_callback(move |observer| {
                observer.observe(observed.load(Ordering::Relaxed), &observed_attributes)
            })
            .build();
        let applied = meter
            .u64_counter("rapport.events.consumer.applied")
            .with_unit("{event}")
            .with_description("Events the consumer applied")
            .build();
        let dead_lettered = meter
            .u64_counter("rapport.events.consumer.dead_letters")
            .with_description("Events the consumer set aside because they could not be applied")
            .build();
        Self {
            subscription,
            pool,
            feed,
            credential,
            handler,
            batch_size: DEFAULT_BATCH,
            lag,
            dead_lettered,
            applied,
            attributes,
            _gauge: gauge,
        }
    }

    /// Applies at most `batch_size` events per transaction.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Events seen at the producer and not yet applied here.
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Follows the feed until `shutdown`, reconnecting with backoff after
    /// any failure, and rebuilding from the snapshot when it starts without
    /// a cursor or its cursor fell behind the retained feed.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                result = self.session() => match result {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => tracing::warn!(
                        consumer = self.subscription.consumer,
                        error = format!("{error:#}"),
                        "feed session ended; reconnecting"
                    ),
                },
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
            }
        }
    }

    /// A client of the producer's feed, its calls carrying the service
    /// credential.
    fn producer(&self) -> EventFeedServiceClient<InterceptedService<Channel, Outbound>> {
        EventFeedServiceClient::with_interceptor(self.feed.clone(), self.credential.clone())
    }

    async fn session(&self) -> anyhow::Result<()> {
        let cursor = match self.cursor().await? {
            Some(cursor) => cursor,
            None => self.rebuild(false).await?,
        };
        let request = SubscribeRequest {
            from_position: cursor,
            types: self
                .subscription
                .types
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        let mut stream = match self.producer().subscribe(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::warn!(
                    consumer = self.subscription.consumer,
                    "the cursor fell behind the retained feed; rebuilding from the snapshot"
                );
                self.rebuild(true).await?;
                return Ok(());
            }
            Err(status) => return Err(status.into()),
        };
        while let Some(first) = stream.next().await {
            // Whatever else has already arrived goes into the same
            // transaction: fewer commits when the feed is busy, no wait
            // when it is not.
            let mut batch = vec![first?];
            while batch.len() < self.batch_size {
                match stream.next().now_or_never() {
                    Some(Some(message)) => batch.push(message?),
                    Some(None) | None => break,
                }
            }
            let head = batch
                .iter()
                .map(|m| m.head_position)
                .max()
                .unwrap_or_default();
            // Progress messages carry no event but move the cursor past
            // events the type filter left out.
            let through = batch.iter().map(|m| m.position).max().unwrap_or_default();
            let events: Vec<EventEnvelope> = batch.into_iter().filter_map(|m| m.event).collect();
            let cursor = self.apply(&events, through).await?;
            self.lag.store(head - cursor, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn cursor(&self) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE consumer = $1",
            self.subscription.cursors()
        )))
        .bind(self.subscription.consumer)
        .fetch_optional(&self.pool)
        .await
    }

    /// Builds the projection from the producer's snapshot (forgetting it
    /// first when `reset`) and sets the cursor to the position the snapshot
    /// is consistent with, which it returns.
    async fn rebuild(&self, reset: bool) -> anyhow::Result<i64> {
        if reset {
            let mut tx = rapport_core::db::begin(&self.pool).await?;
            self.handler.reset(&mut tx).await?;
            tx.commit().await?;
        }
        let request = GetSnapshotRequest {
            kinds: self.handler.snapshot_kinds(),
        };
        let mut stream = self.producer().get_snapshot(request).await?.into_inner();
        let position = stream
            .message()
            .await?
            .map(|first| first.position)
            .ok_or_else(|| anyhow::anyhow!("the snapshot ended before its position"))?;
        let mut loaded = 0;
        while let Some(message) = stream.message().await? {
            loaded += message.items.len();
            let mut tx = rapport_core::db::begin(&self.pool).await?;
            for (tenant, items) in by_tenant(message.items, |item| item.tenant_id.clone()) {
                set_local(&mut tx, &[("app.tenant_id", &tenant)]).await?;
                self.handler.load(&mut tx, &items).await?;
            }
            tx.commit().await?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = $2",
            self.subscription.cursors()
        )))
        .bind(self.subscription.consumer)
        .bind(position)
        .execute(&self.pool)
        .await?;
        tracing::info!(
            consumer = self.subscription.consumer,
            position,
            items = loaded,
            "built from the snapshot; following the feed"
        );
        Ok(position)
    }
}

/// `items` grouped by tenant, in the order each tenant first appears, each
/// group in its original order. Different tenants' changes are independent,
/// so a batch is applied tenant by tenant, one `app.tenant_id` each.
fn by_tenant<T>(items: Vec<T>, tenant: impl Fn(&T) -> String) -> Vec<(String, Vec<T>)> {
    let mut order: Vec<(String, Vec<T>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let key = tenant(&item);
        match index.get(&key) {
            Some(&i) => order[i].1.push(item),
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, vec![item]));
            }
        }
    }
    order
}

/// The tables a consumer keeps in its own schema: its cursors, and the
/// events it set aside. A test in each consumer checks its migrations
/// against this one definition.
pub fn schema_sql(schema: &str, role: &str) -> String {
    format!(
        r#"
CREATE TABLE {schema}.feed_cursors (
    consumer text   PRIMARY KEY,
    position bigint NOT NULL
);
CREATE TABLE {schema}.dead_letters (
    consumer  text        NOT NULL,
    position  bigint      NOT NULL,
    envelope  bytea       NOT NULL,
    error     text        NOT NULL,
    attempts  integer     NOT NULL,
    dead_time timestamptz NOT NULL,
    PRIMARY KEY (consumer, position)
);
ALTER TABLE {schema}.feed_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.feed_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON {schema}.feed_cursors
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
ALTER TABLE {schema}.dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON {schema}.dead_letters
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
GRANT SELECT, INSERT, UPDATE ON {schema}.feed_cursors TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.dead_letters TO {role};
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_grouped_by_tenant_keeping_each_tenants_order() {
        let items = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let groups = by_tenant(items, |(tenant, _)| (*tenant).to_owned());
        let flat: Vec<(String, Vec<i32>)> = groups
            .into_iter()
            .map(|(tenant, items)| (tenant, items.into_iter().map(|(_, n)| n).collect()))
            .collect();
        assert_eq!(
            flat,
            [
                ("a".to_owned(), vec![1, 3]),
                ("b".to_owned(), vec![2, 5]),
                ("c".to_owned(), vec![4]),
            ]
        );
    }
}
