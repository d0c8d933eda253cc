//! A consumer of the contacts feed as a process of its own, for tests that
//! kill it mid-batch: it records every event it applies in
//! `test_consumer.applied`, where applying one twice would violate the
//! primary key, and holds each batch's transaction open a little, so that
//! a kill lands inside one.
//!
//! Environment: `DATABASE_URL` (a role that may write the `test_consumer`
//! schema), `RAPPORT_CONTACTS_URL`, `RAPPORT_IDENTITY_KEY` (the test
//! stack's `consumer` identity).

use futures::future::BoxFuture;
use rapport_core::credential::Identity;
use rapport_events::consumer::{Consumer, Handler, Subscription};
use rapport_proto::events::v1::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

struct Record;

impl Handler for Record {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let ids = events
                .iter()
                .map(|event| Uuid::parse_str(&event.event_id))
                .collect::<Result<Vec<_>, _>>()?;
            let positions: Vec<i64> = events.iter().map(|event| event.position).collect();
            sqlx::query(
                "INSERT INTO test_consumer.applied (event_id, position) \
                 SELECT * FROM unnest($1::uuid[], $2::int8[])",
            )
            .bind(ids)
            .bind(positions)
            .execute(&mut *tx)
            .await?;
            sqlx::query("SELECT pg_sleep(0.02)")
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let pool = sqlx::PgPool::connect(&env("DATABASE_URL")?).await?;
    let feed = tonic::transport::Channel::from_shared(env("RAPPORT_CONTACTS_URL")?)?.connect_lazy();
    let consumer = Consumer::new(
        Subscription {
            consumer: "test",
            producer: "contacts",
            schema: "test_consumer",
            types: &[],
        },
        pool,
        feed,
        std::sync::Arc::new(Identity::from_pem(
            "consumer",
            &env("RAPPORT_IDENTITY_KEY")?,
        )?),
        Record,
    )
    .with_batch_size(200);
    consumer.run(std::future::pending()).await;
    Ok(())
}
