//! Issue figures for the contacts service: GetContact throughput and
//! latency, RecordEvents ingest next to a raw COPY of the same rows, the
//! service's idle memory, and what telemetry costs a call through the
//! gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::{
    BatchUpsertContactsRequest, Contact, Event, GetContactRequest, RecordEventsRequest,
};
use rapport_testkit::TestDatabase;
use rapport_testkit::otlp::OtlpReceiver;
use uuid::Uuid;

use crate::Args;
use crate::load::closed_loop;
use crate::stack::Stack;

const SEED_CONTACTS: usize = 10_000;
/// HTTP/2 connections the load is spread over.
const CONNECTIONS: usize = 4;

/// Prints the contacts figures over the seeded `ids`; the idle memory was
/// read by [`seed`] before any load.
pub async fn run(args: &Args, stack: &Stack, seeded: Seeded) -> anyhow::Result<()> {
    let Seeded { ids, idle_rss } = seeded;
    let service = &stack.contacts;
    let clients = stack.direct(CONNECTIONS).await?;

    // GetContact at a fixed number of calls in flight.
    let get_clients = Arc::new(clients.clone());
    let get_ids = ids.clone();
    let report = closed_loop(
        args.concurrency,
        Duration::from_secs(1),
        Duration::from_secs(args.seconds),
        move |i| {
            let mut client = get_clients[i % CONNECTIONS].clone();
            let id = get_ids[i % get_ids.len()].clone();
            async move { client.get_contact(GetContactRequest { id }).await.is_ok() }
        },
    )
    .await;
    println!(
        "contacts: GetContact, {} calls in flight, {} s",
        args.concurrency, args.seconds
    );
    println!(
        "  throughput   {:>10.0} req/s   (goal >= 5,000)",
        report.per_second()
    );
    println!(
        "  latency      p50 {:.2} ms, p99 {:.2} ms   (goal p99 < 10 ms)",
        report.p(0.50),
        report.p(0.99)
    );
    println!("  errors       {}\n", report.errors);

    // RecordEvents ingest, then a raw COPY of as many rows of the same shape.
    let total = args.batches * args.batch_size;
    let batches: Vec<RecordEventsRequest> = (0..args.batches)
        .map(|b| RecordEventsRequest {
            events: (0..args.batch_size)
                .map(|e| event(&ids[(b * args.batch_size + e) % ids.len()], b, e))
                .collect(),
        })
        .collect();
    let started = Instant::now();
    let results: Vec<bool> = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(b, batch)| {
            let mut client = clients[b % CONNECTIONS].clone();
            async move {
                client
                    .record_events(batch)
                    .await
                    .is_ok_and(|r| r.into_inner().recorded_count > 0)
            }
        })
        .buffer_unordered(args.ingest_in_flight)
        .collect()
        .await;
    let ingest_elapsed = started.elapsed();
    anyhow::ensure!(
        results.iter().all(|ok| *ok),
        "some RecordEvents calls failed"
    );
    let ingest_rate = total as f64 / ingest_elapsed.as_secs_f64();

    let copy_rate = copy_rate(&stack.db, stack.tenant, &ids, total).await?;
    println!(
        "contacts: RecordEvents ingest, batches of {}, {} calls in flight, {total} events",
        args.batch_size, args.ingest_in_flight
    );
    println!("  service      {ingest_rate:>10.0} events/s   (goal >= 20,000)");
    println!("  raw COPY     {copy_rate:>10.0} events/s   (same rows, same table)");
    println!(
        "  ratio        {:>10.2}            (goal >= 0.5)\n",
        ingest_rate / copy_rate
    );

    let loaded_rss = service.rss_kib()?;
    println!("contacts: memory (resident set)");
    println!(
        "  idle         {:>10.1} MiB   (goal < 20 MiB)",
        idle_rss as f64 / 1024.0
    );
    println!("  after load   {:>10.1} MiB\n", loaded_rss as f64 / 1024.0);
    Ok(())
}

/// Rounds of the telemetry comparison, each way.
const TELEMETRY_ROUNDS: usize = 3;

/// What telemetry costs: GetContact through the gateway on three stacks
/// alike but for telemetry: one exporting nothing, two exporting to an OTLP
/// receiver, every span or a sample of 1% of the traces (metrics in full
/// both ways), in alternating rounds.
pub async fn telemetry_overhead(args: &Args, admin_url: &str) -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    // Three stacks at once: small pools, so PostgreSQL has room for them.
    let pool = ("RAPPORT_DATABASE_MAX_CONNECTIONS", "10".to_owned());
    let exporting = |sampled: &str| {
        vec![
            pool.clone(),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG", sampled.to_owned()),
        ]
    };
    let mut stacks = Vec::new();
    for (label, settings) in [
        ("off", vec![pool.clone()]),
        ("all spans", exporting("1.0")),
        ("1% traces", exporting("0.01")),
    ] {
        let stack = Stack::start_with(admin_url, &settings).await?;
        let ids = seed(&stack).await?.ids;
        stacks.push((label, stack, ids));
    }
    let round_length = Duration::from_secs(args.seconds.div_ceil(2).max(2));
    let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); stacks.len()];
    for _ in 0..TELEMETRY_ROUNDS {
        for (figures, (_, stack, ids)) in figures.iter_mut().zip(&stacks) {
            figures.push(gateway_round(args, stack, ids.clone(), round_length).await?);
        }
    }
    anyhow::ensure!(
        !receiver.spans().is_empty(),
        "the receiver got no spans: telemetry was not on"
    );
    println!(
        "contacts: telemetry to an OTLP receiver, GetContact through the gateway, {} calls in flight, {TELEMETRY_ROUNDS} alternating rounds of {} s",
        args.concurrency,
        round_length.as_secs()
    );
    for ((label, _, _), figures) in stacks.iter().zip(&figures) {
        let (rates, cpu): (Vec<f64>, Vec<f64>) = figures.iter().copied().unzip();
        println!(
            "  {label:<10} {} req/s, CPU per call {} us (gateway + contacts)",
            range(&rates, 0),
            range(&cpu, 1)
        );
    }
    println!();
    Ok(())
}

/// One closed-loop round of GetContact through `stack`'s gateway: calls
/// per second, and CPU per call of the gateway and the contacts service.
async fn gateway_round(
    args: &Args,
    stack: &Stack,
    ids: Arc<Vec<String>>,
    length: Duration,
) -> anyhow::Result<(f64, f64)> {
    let clients = Arc::new(stack.through_gateway(CONNECTIONS).await?);
    let cpu = || -> anyhow::Result<Duration> {
        Ok(stack.gateway.cpu_time()? + stack.contacts.cpu_time()?)
    };
    let before = cpu()?;
    let report = closed_loop(
        args.concurrency,
        Duration::from_millis(500),
        length,
        move |i| {
            let mut client = clients[i % CONNECTIONS].clone();
            let id = ids[i % ids.len()].clone();
            async move { client.get_contact(GetContactRequest { id }).await.is_ok() }
        },
    )
    .await;
    anyhow::ensure!(report.errors == 0, "{} calls failed", report.errors);
    // The warm-up's calls are in the CPU time too: a small overstatement,
    // the same both ways.
    let cpu_per_call = (cpu()? - before).as_secs_f64() * 1e6 / report.calls.max(1) as f64;
    Ok((report.per_second(), cpu_per_call))
}

/// `low–high` of `values`, with `decimals`.
fn range(values: &[f64], decimals: usize) -> String {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{low:.decimals$}–{high:.decimals$}")
}

/// The benchmark tenant's contacts, and the service's memory before them.
pub struct Seeded {
    pub ids: Arc<Vec<String>>,
    /// Resident set of the idle service, in KiB.
    pub idle_rss: u64,
}

/// Reads the idle service's memory, then seeds the benchmark tenant's
/// contacts for every later run.
pub async fn seed(stack: &Stack) -> anyhow::Result<Seeded> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = stack.contacts.rss_kib()?;
    let mut client = stack.direct(1).await?.remove(0);
    let mut ids = Vec::with_capacity(SEED_CONTACTS);
    for chunk in 0..SEED_CONTACTS / 1000 {
        let contacts = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                Contact {
                    external_id: format!("bench-{n}"),
                    email: format!("person{n}@example.com"),
                    first_name: "Bench".into(),
                    last_name: format!("Person {n}"),
                    tags: vec!["bench".into()],
                    ..Default::default()
                }
            })
            .collect();
        let response = client
            .batch_upsert_contacts(BatchUpsertContactsRequest {
                contacts,
                request_id: String::new(),
            })
            .await?;
        ids.extend(response.into_inner().contacts.into_iter().map(|c| c.id));
    }
    Ok(Seeded {
        ids: Arc::new(ids),
        idle_rss,
    })
}

fn event(contact_id: &str, batch: usize, index: usize) -> Event {
    let properties = rapport_core::convert::json_to_struct(
        serde_json_object(&[("path", "/pricing"), ("referrer", "newsletter")])
            .as_object()
            .expect("an object"),
    );
    Event {
        contact_id: contact_id.to_owned(),
        client_event_id: format!("bench-{batch}-{index}"),
        r#type: "page.viewed".into(),
        channel: Channel::Web as i32,
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + (batch * 1000 + index) as i64,
            nanos: 0,
        }),
        properties: Some(properties),
        ..Default::default()
    }
}

fn serde_json_object(pairs: &[(&str, &str)]) -> sqlx::types::JsonValue {
    sqlx::types::JsonValue::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect(),
    )
}

/// Rows per second of a raw `COPY` into the same table (as the schema
/// owner: COPY FROM cannot run under row-level security).
async fn copy_rate(
    db: &TestDatabase,
    tenant: Uuid,
    ids: &[String],
    rows: usize,
) -> anyhow::Result<f64> {
    let mut data = String::with_capacity(rows * 200);
    for n in 0..rows {
        let contact = &ids[n % ids.len()];
        let occur = chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0)
            .expect("in range")
            .to_rfc3339();
        data.push_str(&format!(
            "{tenant}\t{}\t{contact}\tcopy-{n}\tpage.viewed\t6\t{occur}\t{{\"path\": \"/pricing\", \"referrer\": \"newsletter\"}}\t{occur}\n",
            Uuid::now_v7()
        ));
    }
    let mut conn = db.admin().await;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY contacts.events (tenant_id, id, contact_id, client_event_id, type, channel, occur_time, properties, record_time) FROM STDIN",
        )
        .await?;
    copy.send(data.as_bytes()).await?;
    let copied = copy.finish().await?;
    anyhow::ensure!(copied == rows as u64, "COPY wrote {copied} of {rows} rows");
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
