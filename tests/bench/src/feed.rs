//! Issue figures for the change feed: throughput from commit to apply for
//! a no-op, a row-by-row and a set-based consumer in the same run, and the
//! lag (commit to apply) at a steady write rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{Consumer, Handler, Subscription};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{Event, RecordEventsRequest};
use rapport_proto::events::v1::EventEnvelope;
use rapport_testkit::identity;
use rapport_testkit::process::ServiceProcess;
use sqlx::{AssertSqlSafe, Executor as _, PgConnection, PgPool};
use uuid::Uuid;

use crate::Args;
use crate::stack::Stack;

/// The steady write rate of the lag run, and how it is sent.
const STEADY_RATE: u64 = 5_000;
const STEADY_BATCH: u64 = 50;
const BURST_EVENTS: usize = 200_000;

/// How a benchmark consumer applies what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// Nothing: the cost of the feed and the cursor alone.
    Nothing,
    /// One INSERT per event.
    RowByRow,
    /// One INSERT for the whole batch.
    SetBased,
}

impl Apply {
    fn name(self) -> &'static str {
        match self {
            Apply::Nothing => "no-op",
            Apply::RowByRow => "one row per event",
            Apply::SetBased => "set-based",
        }
    }

    /// The schema a burst consumer of this kind keeps its rows in.
    fn schema(self) -> &'static str {
        match self {
            Apply::Nothing => "bench_noop",
            Apply::RowByRow => "bench_rows",
            Apply::SetBased => "bench_set",
        }
    }
}

/// Applies events as `mode` says and records their lag.
pub(crate) struct Recorder {
    mode: Apply,
    schema: &'static str,
    pub(crate) recording: AtomicBool,
    pub(crate) lag_us: Mutex<Histogram<u64>>,
    applied: AtomicU64,
}

impl Handler for Recorder {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let table = format!("{}.applied", self.schema);
            let ids = events
                .iter()
                .map(|event| Uuid::parse_str(&event.event_id))
                .collect::<Result<Vec<_>, _>>()?;
            match self.mode {
                Apply::Nothing => {}
                Apply::RowByRow => {
                    for id in &ids {
                        sqlx::query(AssertSqlSafe(format!(
                            "INSERT INTO {table} (event_id) VALUES ($1)"
                        )))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                Apply::SetBased => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO {table} (event_id) SELECT unnest($1::uuid[])"
                    )))
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if self.recording.load(Ordering::Relaxed) {
                // An envelope's time is when the producer wrote the event.
                let now = chrono::Utc::now();
                let mut lag_us = self.lag_us.lock().expect("not poisoned");
                for written in events
                    .iter()
                    .filter_map(|event| event.occur_time.as_ref().and_then(to_datetime))
                {
                    let lag = (now - written)
                        .num_microseconds()
                        .unwrap_or_default()
                        .max(1);
                    lag_us.saturating_record(lag as u64);
                }
            }
            self.applied
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// A consumer of the `contacts` feed applying as `mode` says into a new
/// `schema`, with its cursor at `from`.
pub(crate) async fn consumer(
    contacts: &ServiceProcess,
    sink: &PgPool,
    mode: Apply,
    schema: &'static str,
    from: i64,
) -> anyhow::Result<(Arc<Recorder>, Consumer<Arc<Recorder>>)> {
    sink.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA {schema}; {} CREATE TABLE {schema}.applied (event_id uuid PRIMARY KEY); \
         INSERT INTO {schema}.feed_cursors VALUES ('bench', {from})",
        rapport_events::consumer::schema_sql(schema, "postgres")
    )))
    .await?;
    let recorder = Arc::new(Recorder {
        mode,
        schema,
        recording: AtomicBool::new(false),
        lag_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        applied: AtomicU64::new(0),
    });
    let feed = tonic::transport::Channel::from_shared(format!("http://{}", contacts.addr))?
        .connect()
        .await?;
    let subscription = Subscription {
        consumer: "bench",
        producer: "contacts",
        schema,
        types: &[],
    };
    let consumer = Consumer::new(
        subscription,
        sink.clone(),
        feed,
        identity("consumer"),
        recorder.clone(),
    );
    Ok((recorder, consumer))
}

pub(crate) async fn head(sink: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT last_position FROM contacts.outbox_state")
            .fetch_one(sink)
            .await?,
    )
}

pub async fn run(args: &Args, stack: &Stack, contact_ids: Arc<Vec<String>>) -> anyhow::Result<()> {
    let sink = PgPool::connect(&stack.db.url(None)).await?;
    let clients = stack.direct(4).await?;

    // Throughput from commit to apply: a burst is committed first, then
    // each kind of consumer applies it from the same position, alone.
    let before = head(&sink).await?;
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
    tokio::time::timeout(Duration::from_secs(60), async {
        while head(&sink).await? < before + BURST_EVENTS as i64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the burst was not positioned"))??;
    println!(
        "feed: {BURST_EVENTS} committed events applied by each kind of consumer alone (commit to apply, batches of up to {})",
        rapport_events::consumer::DEFAULT_BATCH
    );
    let mut rates = Vec::new();
    for mode in [Apply::Nothing, Apply::RowByRow, Apply::SetBased] {
        let (recorder, consumer) =
            consumer(&stack.contacts, &sink, mode, mode.schema(), before).await?;
        let started = Instant::now();
        let consuming = tokio::spawn(async move { consumer.run(std::future::pending()).await });
        wait_until(&recorder, BURST_EVENTS as u64).await?;
        let rate = BURST_EVENTS as f64 / started.elapsed().as_secs_f64();
        consuming.abort();
        println!("  {:<18} {:>10.0} events/s", mode.name(), rate);
        rates.push(rate);
    }
    println!(
        "  set-based / no-op {:>10.2}        (goal >= 0.70; no-op goal >= 30,000 events/s)\n",
        rates[2] / rates[0]
    );

    // Lag at a steady rate: a call of STEADY_BATCH events every 10 ms,
    // applied by the set-based consumer as it arrives.
    let (recorder, consumer) = consumer(
        &stack.contacts,
        &sink,
        Apply::SetBased,
        "bench_lag",
        head(&sink).await?,
    )
    .await?;
    recorder.recording.store(true, Ordering::Relaxed);
    let consuming = tokio::spawn(async move { consumer.run(std::future::pending()).await });
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
    wait_until(&recorder, calls * STEADY_BATCH).await?;
    consuming.abort();
    let lag = recorder.lag_us.lock().expect("not poisoned").clone();
    println!(
        "feed: lag at a steady {STEADY_RATE} events/s for {} s (commit to set-based apply)",
        args.seconds
    );
    println!(
        "  lag          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms   (goal p99 < 100 ms)\n",
        lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag.value_at_quantile(0.99) as f64 / 1000.0,
        lag.max() as f64 / 1000.0
    );
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

async fn wait_until(recorder: &Recorder, applied: u64) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(300), async {
        while recorder.applied.load(Ordering::Relaxed) < applied {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the consumer did not catch up"))
}
