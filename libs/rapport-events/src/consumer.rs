//! Applying a producer's feed: each event in one transaction with the
//! cursor's advance, so a redelivered event changes nothing; reconnecting
//! with backoff; and the lag as a metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use opentelemetry::KeyValue;
use rapport_core::credential::{Access, CREDENTIAL_HEADER, CredentialKey, Grant, Scope};
use rapport_core::db::set_local;
use rapport_core::service::Service;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{EventEnvelope, SubscribeRequest};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tonic::transport::{Channel, Endpoint};

/// Most events applied in one transaction.
const MAX_BATCH: usize = 500;

/// What a consumer does with each event, inside the transaction that also
/// advances its cursor (with `app.tenant_id` set to the event's tenant).
pub trait Handler: Send + Sync {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// A shared handler, so its owner can look at its state while it runs.
impl<H: Handler> Handler for Arc<H> {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        (**self).apply(tx, event)
    }
}

/// What a consumer follows and where it keeps its place.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    /// The consumer's name, which keys its cursor, such as `feedback.contacts`.
    pub consumer: &'static str,
    /// The producing service, such as `contacts` (the scope its feed needs).
    pub producer: &'static str,
    /// Schema-qualified cursor table in the consumer's schema, such as
    /// `feedback.feed_cursors`: `(consumer text PRIMARY KEY, position bigint NOT NULL)`.
    pub cursor_table: &'static str,
    /// The event types to apply; all when empty.
    pub types: &'static [&'static str],
}

/// One consumer of one producer's feed.
pub struct Consumer<H> {
    pub subscription: Subscription,
    pub pool: PgPool,
    pub feed: Channel,
    pub key: CredentialKey,
    pub handler: H,
    lag: Arc<AtomicI64>,
    _gauge: opentelemetry::metrics::ObservableGauge<i64>,
}

/// Follows `subscription` from the producer at `producer_url` while
/// `service` serves, applying each event with `handler`.
pub fn follow<H: Handler + 'static>(
    service: &mut Service,
    subscription: Subscription,
    producer_url: &str,
    handler: H,
) -> anyhow::Result<()> {
    let feed = Endpoint::from_shared(producer_url.to_owned())
        .with_context(|| format!("the {} feed URL", subscription.producer))?
        .connect_lazy();
    let consumer = Consumer::new(
        subscription,
        service.db().pool().clone(),
        feed,
        service.key().clone(),
        handler,
    );
    service.spawn(move |stop| async move {
        if let Err(stopped) = consumer.run(stop.cancelled_owned()).await {
            tracing::error!(
                consumer = subscription.consumer,
                error = %stopped,
                "stopped following the {} feed",
                subscription.producer
            );
        }
    });
    Ok(())
}

/// Why a consumer stopped for good.
#[derive(Debug)]
pub enum Stopped {
    /// The producer pruned events the cursor had not reached: rebuild from
    /// the producer's APIs, then set the cursor to its feed head.
    CursorExpired(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::CursorExpired(message) => write!(f, "the feed cursor expired: {message}"),
        }
    }
}

impl std::error::Error for Stopped {}

impl<H: Handler> Consumer<H> {
    pub fn new(
        subscription: Subscription,
        pool: PgPool,
        feed: Channel,
        key: CredentialKey,
        handler: H,
    ) -> Self {
        let lag = Arc::new(AtomicI64::new(0));
        let observed = lag.clone();
        let attributes = [
            KeyValue::new("consumer", subscription.consumer),
            KeyValue::new("producer", subscription.producer),
        ];
        let gauge = opentelemetry::global::meter("rapport-events")
            .i64_observable_gauge("rapport.events.consumer.lag")
            .with_description("Events the consumer has yet to apply")
            .with_callback(move |observer| {
                observer.observe(observed.load(Ordering::Relaxed), &attributes)
            })
            .build();
        Self {
            subscription,
            pool,
            feed,
            key,
            handler,
            lag,
            _gauge: gauge,
        }
    }

    /// Events seen at the producer and not yet applied here.
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Applies the feed until `shutdown`, reconnecting with backoff after
    /// any failure; stops with an error only when the cursor expired.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Stopped> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                result = self.session() => match result {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(SessionError::Expired(message)) => return Err(Stopped::CursorExpired(message)),
                    Err(SessionError::Retry(error)) => {
                        tracing::warn!(consumer = self.subscription.consumer, error = format!("{error:#}"), "feed session ended; reconnecting");
                    }
                },
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
            }
        }
    }

    async fn session(&self) -> Result<(), SessionError> {
        let cursor = self.cursor().await?;
        let grant = Grant {
            tenant_id: None,
            principal: format!("consumer:{}", self.subscription.consumer),
            scopes: vec![Scope::new(self.subscription.producer, Access::Read)],
        };
        let token = self.key.mint(&grant, Duration::from_secs(300));
        let mut request = tonic::Request::new(SubscribeRequest {
            from_position: cursor,
            types: self
                .subscription
                .types
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        });
        request.metadata_mut().insert(
            CREDENTIAL_HEADER,
            token.parse().map_err(anyhow::Error::from)?,
        );
        let mut stream = match EventFeedServiceClient::new(self.feed.clone())
            .subscribe(request)
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                return Err(SessionError::Expired(status.message().to_owned()));
            }
            Err(status) => return Err(SessionError::Retry(status.into())),
        };
        while let Some(first) = stream.next().await {
            // Whatever else has already arrived goes into the same
            // transaction: fewer commits when the feed is busy, no wait
            // when it is not.
            let mut batch = vec![first.map_err(anyhow::Error::from)?];
            while batch.len() < MAX_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(message)) => batch.push(message.map_err(anyhow::Error::from)?),
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

    async fn cursor(&self) -> anyhow::Result<i64> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (consumer, position) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            self.subscription.cursor_table
        )))
        .bind(self.subscription.consumer)
        .execute(&self.pool)
        .await?;
        let position = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE consumer = $1",
            self.subscription.cursor_table
        )))
        .bind(self.subscription.consumer)
        .fetch_one(&self.pool)
        .await?;
        Ok(position)
    }

    /// Applies `events` (in feed order) once, in one transaction that also
    /// moves the cursor to `through` (at or past the last event), skipping
    /// any at or before the cursor (a redelivery). Returns the new cursor.
    async fn apply(&self, events: &[EventEnvelope], through: i64) -> anyhow::Result<i64> {
        let mut tx = self.pool.begin().await?;
        let cursor: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE consumer = $1 FOR UPDATE",
            self.subscription.cursor_table
        )))
        .bind(self.subscription.consumer)
        .fetch_one(&mut *tx)
        .await?;
        let through = events.iter().map(|e| e.position).fold(through, i64::max);
        if through <= cursor {
            return Ok(cursor);
        }
        for event in events.iter().filter(|event| event.position > cursor) {
            set_local(&mut tx, &[("app.tenant_id", &event.tenant_id)]).await?;
            self.handler.apply(&mut tx, event).await?;
        }
        // The cursor row is not tenant data: no event's tenant applies to it.
        set_local(&mut tx, &[("app.tenant_id", "")]).await?;
        let moved = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET position = $2 WHERE consumer = $1",
            self.subscription.cursor_table
        )))
        .bind(self.subscription.consumer)
        .bind(through)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        anyhow::ensure!(
            moved == 1,
            "the cursor of {} did not move; nothing applied",
            self.subscription.consumer
        );
        tx.commit().await?;
        Ok(through)
    }
}

enum SessionError {
    Expired(String),
    Retry(anyhow::Error),
}

impl From<anyhow::Error> for SessionError {
    fn from(error: anyhow::Error) -> Self {
        Self::Retry(error)
    }
}
