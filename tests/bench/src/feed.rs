//! Issue figures for the change feed: end-to-end lag (outbox write to the
//! consumer's apply) at a steady write rate, and throughput from commit to
//! apply for a burst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use rapport_core::credential::CredentialKey;
use rapport_events::consumer::{Consumer, Handler, Subscription};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{Event, RecordEventsRequest};
use rapport_proto::events::v1::EventEnvelope;
use rapport_testkit::TEST_CREDENTIAL_SECRET;
use sqlx::{Executor as _, PgConnection, PgPool};
use uuid::Uuid;

use crate::Args;
use crate::stack::Stack;

/// The steady write rate of the lag run, and how it is sent.
const STEADY_RATE: u64 = 5_000;
const STEADY_BATCH: u64 = 50;
const BURST_EVENTS: usize = 100_000;

/// Applies each event (a row in a sink table) and records its lag.
struct LagRecorder {
    recording: AtomicBool,
    lag_us: Mutex<Histogram<u64>>,
    applied: AtomicU64,
}

impl Handler for LagRecorder {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO bench_sink.applied (event_id) VALUES ($1)")
                .bind(Uuid::parse_str(&event.event_id)?)
                .execute(tx)
                .await?;
            if self.recording.load(Ordering::Relaxed)
                && let Some(written) = event
                    .occur_time
                    .as_ref()
                    .and_then(rapport_core::convert::to_datetime)
            {
                let lag = (chrono::Utc::now() - written)
                    .num_microseconds()
                    .unwrap_or_default()
                    .max(1);
                self.lag_us
                    .lock()
                    .expect("not poisoned")
                    .saturating_record(lag as u64);
            }
            self.applied.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}

pub async fn run(args: &Args, stack: &Stack, contact_ids: Arc<Vec<String>>) -> anyhow::Result<()> {
    let sink = PgPool::connect(&stack.db.url(None)).await?;
    sink.execute(
        "CREATE SCHEMA bench_sink; \
         CREATE TABLE bench_sink.feed_cursors (consumer text PRIMARY KEY, position bigint NOT NULL); \
         CREATE TABLE bench_sink.applied (event_id uuid PRIMARY KEY)",
    )
    .await?;
    // Start at the feed's head: the earlier runs' events are not part of it.
    let head: i64 = sqlx::query_scalar("SELECT last_position FROM contacts.outbox_state")
        .fetch_one(&sink)
        .await?;
    sqlx::query("INSERT INTO bench_sink.feed_cursors VALUES ('bench', $1)")
        .bind(head)
        .execute(&sink)
        .await?;

    let recorder = Arc::new(LagRecorder {
        recording: AtomicBool::new(false),
        lag_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        applied: AtomicU64::new(0),
    });
    let feed = tonic::transport::Channel::from_shared(format!("http://{}", stack.contacts.addr))?
        .connect()
        .await?;
    let consumer = Consumer::new(
        Subscription {
            consumer: "bench",
            producer: "contacts",
            cursor_table: "bench_sink.feed_cursors",
            types: &[],
        },
        sink.clone(),
        feed,
        CredentialKey::new(TEST_CREDENTIAL_SECRET)?,
        recorder.clone(),
    );
    let consuming = tokio::spawn(async move { consumer.run(std::future::pending()).await });
    let clients = stack.direct(4).await?;

    // Lag at a steady rate: a call of STEADY_BATCH events every 10 ms.
    recorder.recording.store(true, Ordering::Relaxed);
    let calls = args.seconds * STEADY_RATE / STEADY_BATCH;
    let period = Duration::from_secs(1) / u32::try_from(STEADY_RATE / STEADY_BATCH)?;
    let started = tokio::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for call in 0..calls {
        tokio::time::sleep_until(started + period * u32::try_from(call)?).await;
        let mut client = clients[call as usize % clients.len()].clone();
        let request = events(&contact_ids, call as usize, STEADY_BATCH as usize, "steady");
        sends.spawn(async move { client.record_events(request).await.map(drop) });
    }
    while let Some(sent) = sends.join_next().await {
        sent?.map_err(|status| anyhow::anyhow!("a RecordEvents call failed: {status:?}"))?;
    }
    let steady_total = calls * STEADY_BATCH;
    wait_until(&recorder, steady_total).await?;
    recorder.recording.store(false, Ordering::Relaxed);
    let lag = recorder.lag_us.lock().expect("not poisoned").clone();
    println!(
        "feed: end-to-end lag at a steady {STEADY_RATE} events/s for {} s (outbox write to consumer apply)",
        args.seconds
    );
    println!(
        "  lag          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms   (goal p99 < 100 ms)",
        lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag.value_at_quantile(0.99) as f64 / 1000.0,
        lag.max() as f64 / 1000.0
    );

    // Throughput: a burst written as fast as the service takes it.
    let burst_started = Instant::now();
    let batches = BURST_EVENTS / 500;
    let results: Vec<bool> = futures::stream::iter(0..batches)
        .map(|b| {
            let mut client = clients[b % clients.len()].clone();
            let request = events(&contact_ids, b, 500, "burst");
            async move { client.record_events(request).await.is_ok() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    anyhow::ensure!(results.iter().all(|ok| *ok), "a RecordEvents call failed");
    let written = burst_started.elapsed();
    wait_until(&recorder, steady_total + BURST_EVENTS as u64).await?;
    let applied = burst_started.elapsed();
    println!("feed: a burst of {BURST_EVENTS} events");
    println!(
        "  written in   {:>8.2} s    applied by the consumer in {:.2} s",
        written.as_secs_f64(),
        applied.as_secs_f64()
    );
    println!(
        "  throughput   {:>10.0} events/s from commit to consumer apply\n",
        BURST_EVENTS as f64 / applied.as_secs_f64()
    );
    consuming.abort();
    Ok(())
}

fn events(contact_ids: &[String], call: usize, count: usize, tag: &str) -> RecordEventsRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    RecordEventsRequest {
        events: (0..count)
            .map(|i| Event {
                contact_id: contact_ids[(call * count + i) % contact_ids.len()].clone(),
                client_event_id: format!("{tag}-{call}-{i}"),
                r#type: "page.viewed".into(),
                channel: Channel::Web as i32,
                occur_time: Some(prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .collect(),
    }
}

async fn wait_until(recorder: &LagRecorder, applied: u64) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(300), async {
        while recorder.applied.load(Ordering::Relaxed) < applied {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the consumer did not catch up"))
}
