//! The feeds a service follows: each consumer runs as one of the service's
//! background tasks, and together they serve
//! `rapport.events.v1.DeadLetterService`, through which an operator lists a
//! consumer's dead letters and replays them after a fix.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Args;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use rapport_core::convert::to_timestamp;
use rapport_core::credential::Access;
use rapport_core::pagination::Page;
use rapport_core::service::Service;
use rapport_core::tenant::authorize_service;
use rapport_core::{ApiError, Violations};
use rapport_proto::events::v1::dead_letter_service_server::{
    DeadLetterService, DeadLetterServiceServer,
};
use rapport_proto::events::v1::{
    DeadLetter, EventEnvelope, ListDeadLettersRequest, ListDeadLettersResponse,
    ReplayDeadLettersRequest, ReplayDeadLettersResponse,
};
use sqlx::AssertSqlSafe;
use tonic::{Request, Response, Status};

use crate::consumer::{Consumer, DEFAULT_BATCH, Handler, Subscription};

/// Settings of a service that follows feeds.
#[derive(Debug, Clone, Args)]
pub struct ConsumerConfig {
    /// Most events a consumer applies in one transaction.
    #[arg(long, env = "RAPPORT_CONSUMER_BATCH_SIZE", default_value_t = DEFAULT_BATCH)]
    pub consumer_batch_size: usize,
}

/// A consumer as the dead-letter service sees it.
trait Follower: Send + Sync {
    fn subscription(&self) -> Subscription;
    fn pool(&self) -> &sqlx::PgPool;
    fn replay(&self) -> BoxFuture<'_, anyhow::Result<(u32, u32)>>;
}

impl<H: Handler + 'static> Follower for Consumer<H> {
    fn subscription(&self) -> Subscription {
        self.subscription
    }

    fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    fn replay(&self) -> BoxFuture<'_, anyhow::Result<(u32, u32)>> {
        self.replay_dead_letters().boxed()
    }
}

/// The feeds a service follows, gathered before the service starts.
pub struct Following {
    config: ConsumerConfig,
    consumers: Vec<(Arc<dyn Follower>, BoxFuture<'static, ()>)>,
}

impl Following {
    pub fn new(config: &ConsumerConfig) -> Self {
        Self {
            config: config.clone(),
            consumers: Vec::new(),
        }
    }

    /// Follows `subscription` from the producer at `producer_url`, applying
    /// its events with `handler`.
    pub fn follow<H: Handler + 'static>(
        &mut self,
        service: &Service,
        subscription: Subscription,
        producer_url: &str,
        handler: H,
    ) -> anyhow::Result<()> {
        let feed = rapport_core::channel::to_service(subscription.producer, producer_url)?;
        let consumer = Arc::new(
            Consumer::new(
                subscription,
                service.db().pool().clone(),
                feed,
                service.identity().clone(),
                handler,
            )
            .with_batch_size(self.config.consumer_batch_size),
        );
        let stop = service.draining();
        let running = consumer.clone();
        let run = async move { running.run(stop.cancelled_owned()).await }.boxed();
        self.consumers.push((consumer, run));
        Ok(())
    }

    /// Starts every consumer as a background task of `service`, and serves
    /// their dead letters.
    pub fn start(self, service: &mut Service) {
        let mut by_name = HashMap::new();
        for (consumer, run) in self.consumers {
            by_name.insert(consumer.subscription().consumer, consumer);
            service.spawn(|_| run);
        }
        service.add(DeadLetterServiceServer::new(DeadLetters {
            service: service.info().name,
            consumers: by_name,
        }));
    }
}

struct DeadLetters {
    /// The scope a caller's service credential needs: `<service>:write`.
    service: &'static str,
    consumers: HashMap<&'static str, Arc<dyn Follower>>,
}

impl DeadLetters {
    fn consumer<T>(&self, request: &Request<T>, name: &str) -> Result<Arc<dyn Follower>, Status> {
        authorize_service(request, self.service, Access::Write)?;
        self.consumers.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.consumers.keys().copied().collect();
            ApiError::invalid_field(
                "consumer",
                format!("is not a consumer of this service: {}", known.join(", ")),
            )
            .into()
        })
    }
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetters {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let consumer = self.consumer(&request, &request.get_ref().consumer)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let page: Page<i64> = Page::read(
            req.page_size,
            &req.page_token,
            &req.consumer,
            &mut violations,
        );
        violations.check()?;
        let subscription = consumer.subscription();
        let rows: Vec<(i64, Vec<u8>, String, i32, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT position, envelope, error, attempts, dead_time FROM {} \
                 WHERE consumer = $1 AND ($2::int8 IS NULL OR position > $2) \
                 ORDER BY position LIMIT $3",
                subscription.dead_letters()
            )))
            .bind(subscription.consumer)
            .bind(page.after)
            .bind(page.fetch())
            .fetch_all(consumer.pool())
            .await
            .map_err(ApiError::from)?;
        let mut letters = Vec::with_capacity(rows.len());
        for (position, envelope, error, attempts, dead_time) in rows {
            let event = EventEnvelope::decode(envelope.as_slice()).map_err(ApiError::internal)?;
            letters.push((
                position,
                DeadLetter {
                    event: Some(event),
                    error,
                    attempts,
                    dead_time: Some(to_timestamp(dead_time)),
                },
            ));
        }
        let (dead_letters, next_page_token) = page.finish(letters);
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters,
            next_page_token,
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        let consumer = self.consumer(&request, &request.get_ref().consumer)?;
        let (replayed, failed) = consumer.replay().await.map_err(ApiError::internal)?;
        tracing::info!(
            consumer = consumer.subscription().consumer,
            replayed,
            failed,
            "dead letters replayed"
        );
        Ok(Response::new(ReplayDeadLettersResponse {
            replayed: i32::try_from(replayed).unwrap_or(i32::MAX),
            failed: i32::try_from(failed).unwrap_or(i32::MAX),
        }))
    }
}
