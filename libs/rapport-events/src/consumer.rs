//! Applying a producer's feed: each event in one transaction with the
//! cursor's advance, so a redelivered event changes nothing; reconnecting
//! with backoff; and the lag as a metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use rapport_core::credential::{Access, CREDENTIAL_HEADER, CredentialKey, Grant, Scope};
use rapport_core::db::set_local;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{EventEnvelope, SubscribeRequest};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tonic::transport::Channel;

/// What a consumer does with each event, inside the transaction that also
/// advances its cursor (with `app.tenant_id` set to the event's tenant).
pub trait Handler: Send + Sync {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// One consumer of one producer's feed. Its cursor lives in the consumer's
/// own schema, in a table `(consumer text PRIMARY KEY, position bigint NOT NULL)`.
pub struct Consumer<H> {
    pub name: String,
    /// Schema-qualified cursor table, such as `analytics.feed_cursors`.
    pub cursor_table: &'static str,
    pub producer: &'static str,
    pub types: Vec<String>,
    pub pool: PgPool,
    pub feed: Channel,
    pub key: CredentialKey,
    pub handler: H,
    lag: Arc<AtomicI64>,
    _gauge: opentelemetry::metrics::ObservableGauge<i64>,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: impl Into<String>,
        cursor_table: &'static str,
        producer: &'static str,
        types: Vec<String>,
        pool: PgPool,
        feed: Channel,
        key: CredentialKey,
        handler: H,
    ) -> Self {
        let name = name.into();
        let lag = Arc::new(AtomicI64::new(0));
        let observed = lag.clone();
        let attributes = [
            KeyValue::new("consumer", name.clone()),
            KeyValue::new("producer", producer),
        ];
        let gauge = opentelemetry::global::meter("rapport-events")
            .i64_observable_gauge("rapport.events.consumer.lag")
            .with_description("Events the consumer has yet to apply")
            .with_callback(move |observer| {
                observer.observe(observed.load(Ordering::Relaxed), &attributes)
            })
            .build();
        Self {
            name,
            cursor_table,
            producer,
            types,
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
                        tracing::warn!(consumer = %self.name, error = format!("{error:#}"), "feed session ended; reconnecting");
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
            principal: format!("consumer:{}", self.name),
            scopes: vec![Scope::new(self.producer, Access::Read)],
        };
        let token = self.key.mint(&grant, Duration::from_secs(300));
        let mut request = tonic::Request::new(SubscribeRequest {
            from_position: cursor,
            types: self.types.clone(),
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
        while let Some(message) = stream.message().await.map_err(anyhow::Error::from)? {
            let Some(event) = message.event else { continue };
            self.apply(&event).await?;
            self.lag
                .store(message.head_position - event.position, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn cursor(&self) -> anyhow::Result<i64> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (consumer, position) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            self.cursor_table
        )))
        .bind(&self.name)
        .execute(&self.pool)
        .await?;
        let position = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE consumer = $1",
            self.cursor_table
        )))
        .bind(&self.name)
        .fetch_one(&self.pool)
        .await?;
        Ok(position)
    }

    /// Applies `event` once: the cursor moves past it in the same
    /// transaction, and an event at or before the cursor is skipped.
    async fn apply(&self, event: &EventEnvelope) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        set_local(&mut tx, &[("app.tenant_id", &event.tenant_id)]).await?;
        let advanced = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET position = $2 WHERE consumer = $1 AND position < $2",
            self.cursor_table
        )))
        .bind(&self.name)
        .bind(event.position)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if advanced == 0 {
            return Ok(());
        }
        self.handler.apply(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
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
