//! Issue figures for membership kept current, on the segmentation data set
//! with 20 segments defined: at a steady 2,000 and 5,000 events/s through
//! RecordEvents, the delay from the call to `segment.entered` on
//! segmentation's feed, with one hop of the contacts feed (commit to a
//! no-op consumer's apply) measured alongside; and how late exits run when
//! a window's edge passes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use prost::Message as _;
use rapport_client::Transport;
use rapport_core::credential::{Access, Grant, Outbound, Scope};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Event, RecordEventsRequest};
use rapport_proto::events::v1::SubscribeRequest;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::segmentation::v1::segmentation_service_client::SegmentationServiceClient;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::identity;
use rapport_testkit::process::{self, ProcessStack};
use sqlx::{PgConnection, PgPool};
use tonic::service::interceptor::InterceptedService;
use uuid::Uuid;

use crate::feed;

/// The event type only the bench sends: a contact's first one lets them
/// into the signal segment.
const SIGNAL: &str = "bench.signal";
/// The event type dated to leave its 1-day window during the bench.
const EXPIRING: &str = "bench.expiring";
/// Calls per second of the steady runs (one signal each).
const CALLS_PER_SECOND: u64 = 100;
/// Contacts whose exit is timed.
const EXITS: usize = 200;

/// Who sent a signal when, and the delays seen so far.
struct Delays {
    sent: Mutex<HashMap<String, Instant>>,
    micros: Mutex<Histogram<u64>>,
}

pub async fn run(
    seconds: u64,
    stack: &ProcessStack,
    admin: &mut PgConnection,
    segmentation: &mut SegmentationServiceClient<Transport>,
    contacts: Vec<ContactsServiceClient<Transport>>,
    tenant: Uuid,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (signal, expiring) = define_segments(segmentation).await?;
    wait_for_feed(admin).await?;
    println!(
        "  20 segments defined and built, their entries on the feed, in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM contacts.contacts WHERE tenant_id = $1 ORDER BY id LIMIT 200000",
    )
    .bind(tenant)
    .fetch_all(&mut *admin)
    .await?;
    let sink = PgPool::connect(&stack.db.url(None)).await?;
    let mut fresh = ids.iter().cloned();
    for rate in [2_000, 5_000] {
        let delays = Arc::new(Delays {
            sent: Mutex::new(HashMap::new()),
            micros: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        });
        let entries = feed_from_head(stack).await?;
        let reading = tokio::spawn(read_entries(entries, signal.clone(), delays.clone()));
        let (hop, consumer) = feed::consumer(
            &stack.contacts,
            &sink,
            feed::Apply::Nothing,
            if rate == 2_000 {
                "bench_hop_2k"
            } else {
                "bench_hop_5k"
            },
            feed::head(&sink).await?,
        )
        .await?;
        hop.recording.store(true, Ordering::Relaxed);
        let hopping = tokio::spawn(async move { consumer.run(std::future::pending()).await });
        let calls = seconds * CALLS_PER_SECOND;
        let cpu_before = CpuUse::now(stack)?;
        steady(&contacts, &ids, &mut fresh, rate, calls, &delays).await?;
        let cpu = CpuUse::now(stack)?.since(&cpu_before);
        let waited = Instant::now();
        while delays.micros.lock().expect("not poisoned").len() < calls
            && waited.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        reading.abort();
        hopping.abort();
        let delay = delays.micros.lock().expect("not poisoned").clone();
        let hop = hop.lag_us.lock().expect("not poisoned").clone();
        let ms =
            |histogram: &Histogram<u64>, q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  steady {rate} events/s for {seconds} s: RecordEvents call to segment.entered on \
             segmentation's feed ({} of {calls} entries seen)",
            delay.len()
        );
        println!(
            "    delay      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
            ms(&delay, 0.5),
            ms(&delay, 0.99),
            delay.max() as f64 / 1000.0,
            if rate == 2_000 {
                "   (goal p99 <= 150 ms)"
            } else {
                ""
            }
        );
        println!(
            "    one hop of the contacts feed alongside (commit to no-op apply): p50 {:.1} ms, \
             p99 {:.1} ms; two such hops {:.1} / {:.1} ms{}",
            ms(&hop, 0.5),
            ms(&hop, 0.99),
            2.0 * ms(&hop, 0.5),
            2.0 * ms(&hop, 0.99),
            if rate == 5_000 {
                format!(
                    "   (segment.entered p99 / two hops p99 = {:.2}; goal <= 2)",
                    ms(&delay, 0.99) / (2.0 * ms(&hop, 0.99))
                )
            } else {
                String::new()
            }
        );
        println!("    {cpu}");
    }
    exits(stack, &contacts, &ids[ids.len() - EXITS..], &expiring).await
}

/// The 20 segments: windows of a day or a week over the bench's event
/// types and the seeded ones, some with profile conditions. Returns the
/// signal and expiring segments' ids.
async fn define_segments(
    segmentation: &mut SegmentationServiceClient<Transport>,
) -> anyhow::Result<(String, String)> {
    let node = |node| Rule { node: Some(node) };
    let counted = |kind: &str, days: i32, at_least: f64| {
        node(rule::Node::Event(EventCondition {
            r#type: kind.into(),
            measure: Measure::Count.into(),
            operator: Operator::GreaterOrEqual.into(),
            threshold: at_least,
            window: Some(TimeWindow {
                window: Some(time_window::Window::WithinDays(days)),
            }),
            ..Default::default()
        }))
    };
    let pro = node(rule::Node::Attribute(AttributeCondition {
        path: "plan".into(),
        operator: Operator::Equals.into(),
        value: Some(Value {
            kind: Some(value::Kind::Text("pro".into())),
        }),
        values: Vec::new(),
    }));
    let subscribed = node(rule::Node::Consent(ConsentCondition {
        channel: Channel::Email.into(),
        state: ConsentState::Subscribed.into(),
    }));
    let all_of = |rules: Vec<Rule>| node(rule::Node::AllOf(RuleList { rules }));
    let any_of = |rules: Vec<Rule>| node(rule::Node::AnyOf(RuleList { rules }));
    let mut rules = vec![counted(SIGNAL, 1, 1.0), counted(EXPIRING, 1, 1.0)];
    for kind in ["order.placed", "page.viewed", "email.opened", SIGNAL] {
        rules.push(counted(kind, 1, 2.0));
        rules.push(counted(kind, 7, 3.0));
    }
    rules.extend([
        all_of(vec![pro.clone(), counted("order.placed", 1, 1.0)]),
        all_of(vec![subscribed.clone(), counted("email.opened", 1, 1.0)]),
        all_of(vec![
            pro.clone(),
            subscribed.clone(),
            counted("page.viewed", 1, 1.0),
        ]),
        any_of(vec![
            counted("order.placed", 1, 1.0),
            counted(SIGNAL, 7, 2.0),
        ]),
        all_of(vec![
            counted("page.viewed", 7, 1.0),
            node(rule::Node::Not(Box::new(counted("order.placed", 7, 1.0)))),
        ]),
        all_of(vec![pro, counted(SIGNAL, 1, 1.0)]),
        all_of(vec![subscribed, counted(SIGNAL, 1, 1.0)]),
        counted("order.placed", 1, 1.0),
        counted("email.opened", 1, 1.0),
        counted("page.viewed", 1, 3.0),
    ]);
    let mut ids = Vec::new();
    for (i, rule) in rules.into_iter().take(20).enumerate() {
        let created = segmentation
            .create_segment(CreateSegmentRequest {
                segment: Some(Segment {
                    name: format!("live {i}"),
                    kind: SegmentKind::Dynamic.into(),
                    rule: Some(rule),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await?
            .into_inner()
            .segment
            .ok_or_else(|| anyhow::anyhow!("no segment"))?;
        ids.push(created.id);
    }
    for id in &ids {
        loop {
            let segment = segmentation
                .get_segment(GetSegmentRequest { id: id.clone() })
                .await?
                .into_inner()
                .segment
                .ok_or_else(|| anyhow::anyhow!("no segment"))?;
            match segment.build.unwrap_or_default().state() {
                BuildState::Ready => break,
                BuildState::Failed => anyhow::bail!("segment {id} failed to build"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok((ids[0].clone(), ids[1].clone()))
}

/// Waits until every segmentation event written so far is on its feed.
async fn wait_for_feed(admin: &mut PgConnection) -> anyhow::Result<()> {
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM segmentation.outbox WHERE position IS NULL)",
        )
        .fetch_one(&mut *admin)
        .await?;
        if !waiting {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads segmentation's feed, recording each signal entry's
/// delay from its call.
async fn read_entries(
    mut feed: tonic::Streaming<rapport_proto::events::v1::SubscribeResponse>,
    signal: String,
    delays: Arc<Delays>,
) -> anyhow::Result<()> {
    while let Some(message) = feed.next().await {
        let Some(event) = message?.event else {
            continue;
        };
        if event.r#type != "segment.entered" {
            continue;
        }
        let payload = event.payload.unwrap_or_default();
        let entered = SegmentEntered::decode(payload.value.as_slice())?;
        if entered.segment_id != signal {
            continue;
        }
        let sent = delays
            .sent
            .lock()
            .expect("not poisoned")
            .remove(&entered.contact_id);
        if let Some(sent) = sent {
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            delays
                .micros
                .lock()
                .expect("not poisoned")
                .saturating_record(micros.max(1));
        }
    }
    Ok(())
}

/// Segmentation's feed from its head, read as a feed consumer reads it.
async fn feed_from_head(
    stack: &ProcessStack,
) -> anyhow::Result<tonic::Streaming<rapport_proto::events::v1::SubscribeResponse>> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.segmentation.addr))?
            .connect()
            .await?;
    let credential = Outbound::new(
        identity("consumer"),
        "segmentation",
        Grant {
            tenant_id: None,
            principal: "bench".into(),
            scopes: vec![Scope::new("segmentation", Access::Read)],
        },
    );
    let channel = InterceptedService::new(channel, credential);
    let head = EventFeedServiceClient::new(channel.clone())
        .get_feed_head(rapport_proto::events::v1::GetFeedHeadRequest {})
        .await?
        .into_inner()
        .head_position;
    Ok(EventFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest {
            from_position: head,
            types: vec!["segment.entered".into(), "segment.exited".into()],
        })
        .await?
        .into_inner())
}

/// CPU time spent so far: the machine's, busy and in all (from
/// /proc/stat), that of the two services the events go through, of
/// PostgreSQL's processes (by login role, or by task for its own
/// processes) and of the bench itself.
struct CpuUse {
    busy: Duration,
    total: Duration,
    contacts: Duration,
    segmentation: Duration,
    postgres: BTreeMap<String, Duration>,
    bench: Duration,
}

/// CPU time of the PostgreSQL processes now running, by what their command
/// line names first: the login role of a backend (`postgres: 15/main:
/// rapport_contacts db [local] idle`), else the task (`walwriter`). A
/// backend that ended meanwhile takes its time with it, so this is a floor.
fn postgres_cpu() -> anyhow::Result<BTreeMap<String, Duration>> {
    let mut by_role = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "postgres");
        let Ok(command) = std::fs::read_to_string(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !is_postgres {
            continue;
        }
        let role = command
            .split(": ")
            .nth(2)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("postmaster")
            .to_owned();
        if let Ok(time) = process::cpu_time_of(pid) {
            *by_role.entry(role).or_default() += time;
        }
    }
    Ok(by_role)
}

impl CpuUse {
    fn now(stack: &ProcessStack) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .ok_or_else(|| anyhow::anyhow!("/proc/stat has no cpu line"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        // user nice system idle iowait irq softirq steal: idle and iowait
        // are the time nothing ran. USER_HZ is 100.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks[3] + ticks[4];
        Ok(Self {
            busy: Duration::from_millis((total - idle) * 10),
            total: Duration::from_millis(total * 10),
            contacts: stack.contacts.cpu_time()?,
            segmentation: stack.segmentation.cpu_time()?,
            postgres: postgres_cpu()?,
            bench: process::cpu_time_of(std::process::id())?,
        })
    }

    fn since(&self, before: &Self) -> Self {
        let postgres = self
            .postgres
            .iter()
            .map(|(role, time)| {
                let earlier = before.postgres.get(role).copied().unwrap_or_default();
                (role.clone(), time.saturating_sub(earlier))
            })
            .collect();
        Self {
            busy: self.busy.saturating_sub(before.busy),
            total: self.total.saturating_sub(before.total),
            contacts: self.contacts.saturating_sub(before.contacts),
            segmentation: self.segmentation.saturating_sub(before.segmentation),
            postgres,
            bench: self.bench.saturating_sub(before.bench),
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let busy = self.busy.as_secs_f64();
        let total = self.total.as_secs_f64().max(f64::EPSILON);
        let postgres: f64 = self.postgres.values().map(Duration::as_secs_f64).sum();
        let parts = [self.contacts, self.segmentation, self.bench].map(|part| part.as_secs_f64());
        let [contacts, segmentation, bench] = parts;
        let mut roles: Vec<(&String, f64)> = self
            .postgres
            .iter()
            .map(|(role, time)| (role, time.as_secs_f64()))
            .filter(|(_, time)| *time >= 0.1)
            .collect();
        roles.sort_by(|a, b| b.1.total_cmp(&a.1));
        let roles: Vec<String> = roles
            .iter()
            .map(|(role, time)| format!("{role} {time:.1}"))
            .collect();
        write!(
            f,
            "CPU while sending: machine {:.0}% busy ({busy:.1} of {total:.1} core-seconds): \
             PostgreSQL {postgres:.1} ({}), contacts {contacts:.1}, segmentation \
             {segmentation:.1}, the bench {bench:.1}, anything else {:.1}",
            100.0 * busy / total,
            roles.join(", "),
            (busy - postgres - parts.iter().sum::<f64>()).max(0.0),
        )
    }
}

/// `calls` RecordEvents calls of `rate / CALLS_PER_SECOND` events, one
/// call every 10 ms: a signal from a contact that never sent one, the
/// rest page views, orders and opens of contacts from `ids`.
async fn steady(
    contacts: &[ContactsServiceClient<Transport>],
    ids: &[String],
    fresh: &mut impl Iterator<Item = String>,
    rate: u64,
    calls: u64,
    delays: &Arc<Delays>,
) -> anyhow::Result<()> {
    let per_call = usize::try_from(rate / CALLS_PER_SECOND)?;
    let period = Duration::from_secs(1) / u32::try_from(CALLS_PER_SECOND)?;
    let started = tokio::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for call in 0..calls {
        tokio::time::sleep_until(started + period * u32::try_from(call)?).await;
        let signaller = fresh
            .next()
            .ok_or_else(|| anyhow::anyhow!("out of fresh contacts"))?;
        let now = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
        let mut events = vec![Event {
            contact_id: signaller.clone(),
            r#type: SIGNAL.into(),
            channel: Channel::Web.into(),
            occur_time: now,
            ..Default::default()
        }];
        let kinds = ["page.viewed", "page.viewed", "order.placed", "email.opened"];
        events.extend((1..per_call).map(|i| {
            let n = (call as usize * per_call + i).wrapping_mul(2_654_435_761);
            Event {
                contact_id: ids[n % ids.len()].clone(),
                r#type: kinds[n % kinds.len()].into(),
                channel: Channel::Web.into(),
                occur_time: now,
                ..Default::default()
            }
        }));
        let mut client = contacts[call as usize % contacts.len()].clone();
        let delays = delays.clone();
        sends.spawn(async move {
            delays
                .sent
                .lock()
                .expect("not poisoned")
                .insert(signaller, Instant::now());
            client
                .record_events(RecordEventsRequest { events })
                .await
                .map(drop)
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent?.map_err(|status| anyhow::anyhow!("a RecordEvents call failed: {status:?}"))?;
    }
    Ok(())
}

/// Dates one event of each of `exiting` so that it leaves the expiring
/// segment's 1-day window 5 to 45 s from now, and reports how long after
/// that moment each exit reached the feed.
async fn exits(
    stack: &ProcessStack,
    contacts: &[ContactsServiceClient<Transport>],
    exiting: &[String],
    expiring: &str,
) -> anyhow::Result<()> {
    let day = chrono::Duration::days(1);
    let mut edges: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let now = chrono::Utc::now();
    let events: Vec<Event> = exiting
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let edge =
                now + chrono::Duration::milliseconds(5_000 + (i as i64 * 40_000) / EXITS as i64);
            edges.insert(id.clone(), edge);
            Event {
                contact_id: id.clone(),
                r#type: EXPIRING.into(),
                channel: Channel::Web.into(),
                occur_time: Some(rapport_core::convert::to_timestamp(edge - day)),
                ..Default::default()
            }
        })
        .collect();
    let mut feed = feed_from_head(stack).await?;
    contacts[0]
        .clone()
        .record_events(RecordEventsRequest { events })
        .await?;
    let mut late_ms = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let waiting = tokio::time::timeout(Duration::from_secs(150), async {
        while late_ms.len() < EXITS as u64 {
            let Some(message) = feed.next().await else {
                break;
            };
            let Some(event) = message?.event else {
                continue;
            };
            if event.r#type != "segment.exited" {
                continue;
            }
            let exited = SegmentExited::decode(event.payload.unwrap_or_default().value.as_slice())?;
            if exited.segment_id != expiring {
                continue;
            }
            if let Some(edge) = edges.remove(&exited.contact_id) {
                let late = (chrono::Utc::now() - edge).num_milliseconds().max(1);
                late_ms.saturating_record(late as u64);
            }
        }
        anyhow::Ok(())
    })
    .await;
    println!(
        "  time-window exits: {} of {EXITS} contacts left the 1-day window within 150 s; \
         late by p50 {:.1} s, max {:.1} s after their edge (goal < 60 s){}",
        late_ms.len(),
        late_ms.value_at_quantile(0.5) as f64 / 1000.0,
        late_ms.max() as f64 / 1000.0,
        if waiting.is_err() { " (timed out)" } else { "" }
    );
    println!();
    Ok(())
}
