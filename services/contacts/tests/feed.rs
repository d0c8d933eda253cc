//! The contacts change feed: gap-free under concurrent writers, consumed
//! exactly once across consumer and producer restarts, and free of an
//! erased contact's personal data.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use prost::Message as _;
use prost_types::Timestamp;
use rapport_core::credential::{Access, Grant, Outbound, Scope};
use rapport_events::OutboxEvent;
use rapport_events::consumer::{Consumer, Handler, Subscription};
use rapport_proto::common::v1::{Channel, LifecycleStage};
use rapport_proto::contacts::v1::*;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_proto::events::v1::{EventEnvelope, SubscribeRequest};
use rapport_testkit::identity;
use sqlx::{AssertSqlSafe, Executor as _, PgConnection, PgPool};
use tonic::Code;
use uuid::Uuid;

type FeedClient = EventFeedServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Outbound>,
>;

fn feed_client(h: &common::Harness) -> FeedClient {
    let grant = Grant {
        tenant_id: None,
        principal: "test-consumer".into(),
        scopes: vec![Scope::new("contacts", Access::Read)],
    };
    EventFeedServiceClient::new(h.server.credentialed(
        h.server.channel.clone(),
        identity("consumer"),
        &grant,
    ))
}

/// Reads the feed from `from` until `count` events arrived (or fails after 30 s).
async fn read_feed(h: &common::Harness, from: i64, count: usize) -> Vec<EventEnvelope> {
    let mut stream = feed_client(h)
        .subscribe(SubscribeRequest {
            from_position: from,
            types: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::with_capacity(count);
    tokio::time::timeout(Duration::from_secs(30), async {
        while events.len() < count {
            let message = stream
                .message()
                .await
                .unwrap()
                .expect("the feed follows, it does not end");
            events.push(message.event.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} events arrived", events.len()));
    events
}

async fn service_pool(h: &common::Harness) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(40)
        .connect(&h.db.url(Some("rapport_contacts")))
        .await
        .unwrap()
}

/// A transaction of `tenant` on `pool`.
async fn begin_tenant(pool: &PgPool, tenant: Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
    rapport_core::db::begin_with_settings(pool, &[("app.tenant_id", &tenant.to_string())])
        .await
        .unwrap()
}

/// Writes a `contact.deleted` event for a new aggregate in `tx`; returns the aggregate.
async fn write_event(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, tenant: Uuid) -> String {
    let aggregate = Uuid::now_v7();
    let event = OutboxEvent::new(
        aggregate,
        &ContactDeleted {
            contact_id: aggregate.to_string(),
        },
    );
    rapport_contacts::events::OUTBOX
        .write(tx, tenant, vec![event], chrono::Utc::now())
        .await
        .unwrap();
    aggregate.to_string()
}

#[tokio::test]
async fn an_event_committed_after_later_ones_were_positioned_still_gets_one() {
    let h = common::start().await;
    let pool = service_pool(&h).await;
    let tenant = Uuid::now_v7();

    // The early transaction writes first and stays open while a later one
    // commits and is positioned: the sequencer's next passes must still
    // look at the early transaction's event once it commits.
    let mut early = begin_tenant(&pool, tenant).await;
    let early_event = write_event(&mut early, tenant).await;
    let mut later = begin_tenant(&pool, tenant).await;
    let later_event = write_event(&mut later, tenant).await;
    later.commit().await.unwrap();
    let feed = read_feed(&h, 0, 1).await;
    assert_eq!(feed[0].aggregate_id, later_event);

    // Another commit and its pass, with the early transaction still open.
    let mut another = begin_tenant(&pool, tenant).await;
    let another_event = write_event(&mut another, tenant).await;
    another.commit().await.unwrap();
    read_feed(&h, 0, 2).await;

    early.commit().await.unwrap();
    let feed = read_feed(&h, 0, 3).await;
    let ids: Vec<&str> = feed.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            later_event.as_str(),
            another_event.as_str(),
            early_event.as_str()
        ]
    );
}

#[tokio::test]
async fn concurrent_writers_committing_out_of_order_leave_no_gap() {
    const WRITERS: usize = 40;
    const EACH: usize = 25;
    let h = common::start().await;
    let pool = service_pool(&h).await;
    let tenant = Uuid::now_v7();

    // Each writer takes its event id early and commits after a varying
    // delay, so commits land out of id order, as in production.
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EACH {
                    let mut tx = begin_tenant(&pool, tenant).await;
                    let aggregate = write_event(&mut tx, tenant).await;
                    let delay = (writer * 7 + i * 13) % 23;
                    tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                    tx.commit().await.unwrap();
                    ids.push(aggregate);
                }
                ids
            })
        })
        .collect();
    let reader = tokio::spawn({
        let h_channel = feed_client(&h);
        async move {
            let mut client = h_channel;
            let mut stream = client
                .subscribe(SubscribeRequest {
                    from_position: 0,
                    types: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            let mut seen = Vec::new();
            while seen.len() < WRITERS * EACH {
                let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
                    .await
                    .expect("the feed stalled")
                    .unwrap()
                    .unwrap();
                seen.push(message.event.unwrap());
            }
            seen
        }
    });
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let seen = reader.await.unwrap();

    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    let expected: Vec<i64> = (1..=(WRITERS * EACH) as i64).collect();
    assert_eq!(positions, expected, "positions are contiguous and in order");
    let aggregates: HashSet<String> = seen.into_iter().map(|e| e.aggregate_id).collect();
    assert_eq!(
        aggregates, written,
        "every committed event was delivered exactly once"
    );
}

#[tokio::test]
async fn every_change_emits_its_event_with_the_new_state() {
    let h = common::start().await;
    let tenant = Uuid::now_v7();
    let mut client = h.client(tenant);
    let contact = common::create(
        &mut client,
        Contact {
            lifecycle_stage: LifecycleStage::Discovery as i32,
            ..common::person("feed@example.com")
        },
    )
    .await;
    let other = common::create(&mut client, common::person("dup@example.com")).await;
    client
        .change_lifecycle_stage(ChangeLifecycleStageRequest {
            contact_id: contact.id.clone(),
            lifecycle_stage: LifecycleStage::Purchase as i32,
            source: "order".into(),
        })
        .await
        .unwrap();
    client
        .change_consent(ChangeConsentRequest {
            contact_id: contact.id.clone(),
            consent: Some(Consent {
                channel: Channel::Sms as i32,
                status: ConsentStatus::Subscribed as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    client
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: contact.id.clone(),
                r#type: "order.placed".into(),
                channel: Channel::Web as i32,
                occur_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    client
        .merge_contacts(MergeContactsRequest {
            survivor_id: contact.id.clone(),
            duplicate_id: other.id.clone(),
        })
        .await
        .unwrap();
    let third = common::create(&mut client, common::person("gone@example.com")).await;
    client
        .delete_contact(DeleteContactRequest {
            id: third.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let events = read_feed(&h, 0, 11).await;
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "contact.created",
            "contact.lifecycle_changed",
            "contact.created",
            "contact.updated",
            "contact.lifecycle_changed",
            "contact.updated",
            "contact.consent_changed",
            "contact.event_recorded",
            "contact.merged",
            "contact.updated",
            "contact.created",
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.tenant_id == tenant.to_string() && e.producer == "contacts")
    );
    let updated =
        ContactUpdated::decode(events[3].payload.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(
        updated.contact.unwrap().lifecycle_stage,
        LifecycleStage::Purchase as i32,
        "the full new state"
    );
    let merged =
        ContactMerged::decode(events[8].payload.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(
        (merged.survivor_id, merged.duplicate_id),
        (contact.id.clone(), other.id.clone())
    );
    let deleted = read_feed(&h, events[10].position, 1).await;
    assert_eq!(deleted[0].r#type, "contact.deleted");
}

#[tokio::test]
async fn an_erased_contact_leaves_no_personal_data_in_the_feed() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(
        &mut client,
        Contact {
            phone: "+351912345678".into(),
            ..common::person("secret.person@example.com")
        },
    )
    .await;
    client
        .record_events(RecordEventsRequest {
            events: vec![Event {
                contact_id: contact.id.clone(),
                r#type: "page.viewed".into(),
                channel: Channel::Web as i32,
                occur_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                properties: Some(rapport_core::convert::json_to_struct(
                    serde_json::json!({"search": "secret.person"})
                        .as_object()
                        .unwrap(),
                )),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    client
        .erase_contact(EraseContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap();

    let events = read_feed(&h, 0, 3).await;
    assert_eq!(events.last().unwrap().r#type, "contact.erased");
    for event in &events {
        let bytes = event.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("secret.person") && !text.contains("+351912345678"),
            "{} still carries personal data",
            event.r#type
        );
    }
    let erased =
        ContactErased::decode(events[2].payload.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(erased.contact_id, contact.id);
}

/// Records each applied event, a batch in one statement; a second
/// application of one would violate the primary key. Refuses the event at
/// `poison` (a position; 0 for none), as a handler with a bug would.
#[derive(Default)]
struct Sink {
    poison: std::sync::atomic::AtomicI64,
}

impl Handler for Sink {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let poison = self.poison.load(std::sync::atomic::Ordering::SeqCst);
            anyhow::ensure!(
                events.iter().all(|event| event.position != poison),
                "event {poison} is poison"
            );
            let ids = events
                .iter()
                .map(|event| Uuid::parse_str(&event.event_id))
                .collect::<Result<Vec<_>, _>>()?;
            let positions: Vec<i64> = events.iter().map(|event| event.position).collect();
            sqlx::query(
                "INSERT INTO sink.applied (event_id, position) SELECT * FROM unnest($1::uuid[], $2::int8[])",
            )
            .bind(ids)
            .bind(positions)
            .execute(tx)
            .await?;
            Ok(())
        })
    }
}

/// A consumer schema `sink` (cursor at the start of the feed) with a table
/// of what it applied.
async fn sink(h: &common::Harness) -> PgPool {
    let pool = PgPool::connect(&h.db.url(None)).await.unwrap();
    pool.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA sink; {} \
         CREATE TABLE sink.applied (event_id uuid PRIMARY KEY, position bigint NOT NULL); \
         INSERT INTO sink.feed_cursors VALUES ('sink', 0)",
        rapport_events::consumer::schema_sql("sink", "postgres")
    )))
    .await
    .unwrap();
    pool
}

fn consumer(
    h: &common::Harness,
    pool: PgPool,
    channel: tonic::transport::Channel,
) -> Consumer<Sink> {
    filtered_consumer(h, pool, channel, &[])
}

fn filtered_consumer(
    h: &common::Harness,
    pool: PgPool,
    channel: tonic::transport::Channel,
    types: &'static [&'static str],
) -> Consumer<Sink> {
    let _ = h;
    Consumer::new(
        Subscription {
            consumer: "sink",
            producer: "contacts",
            schema: "sink",
            types,
        },
        pool,
        channel,
        identity("consumer"),
        Sink::default(),
    )
}

async fn write_events(client: &mut common::Client, contact_id: &str, count: usize, tag: &str) {
    let events: Vec<Event> = (0..count)
        .map(|i| Event {
            contact_id: contact_id.to_owned(),
            client_event_id: format!("{tag}-{i}"),
            r#type: "page.viewed".into(),
            channel: Channel::Web as i32,
            occur_time: Some(Timestamp {
                seconds: 1_700_000_000 + i as i64,
                nanos: 0,
            }),
            ..Default::default()
        })
        .collect();
    for chunk in events.chunks(200) {
        client
            .record_events(RecordEventsRequest {
                events: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
}

async fn applied(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), coalesce(max(position), 0) FROM sink.applied")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_for_applied(pool: &PgPool, count: i64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while applied(pool).await.0 < count {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the consumer did not reach {count} events"));
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_resumes_without_loss_or_repeats() {
    let h = common::start().await;
    let pool = sink(&h).await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("stream@example.com")).await;
    write_events(&mut client, &contact.id, 1000, "a").await;

    let first = tokio::spawn({
        let consumer = consumer(&h, pool.clone(), h.server.channel.clone());
        async move { consumer.run(std::future::pending()).await }
    });
    wait_for_applied(&pool, 300).await;
    first.abort(); // A crash: whatever it was applying rolls back.
    let _ = first.await;
    write_events(&mut client, &contact.id, 500, "b").await;

    let second = consumer(&h, pool.clone(), h.server.channel.clone());
    let run = tokio::spawn(async move { second.run(std::future::pending()).await });
    wait_for_applied(&pool, 1501).await;
    let (count, newest) = applied(&pool).await;
    assert_eq!(
        (count, newest),
        (1501, 1501),
        "every event applied once, none twice"
    );
    run.abort();
}

#[tokio::test]
async fn a_filtered_subscription_moves_past_what_it_leaves_out() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    // contact.created at 1 and 2, 1,800 page views (windows of the feed
    // with nothing to send), another contact at 1803, then 20 more views.
    common::create(&mut client, common::person("first@example.com")).await;
    let contact = common::create(&mut client, common::person("views@example.com")).await;
    write_events(&mut client, &contact.id, 1800, "v").await;
    common::create(&mut client, common::person("last@example.com")).await;
    write_events(&mut client, &contact.id, 20, "u").await;
    let mut stream = feed_client(&h)
        .subscribe(SubscribeRequest {
            from_position: 0,
            types: vec!["contact.created".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut created = Vec::new();
    let progress = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = stream.message().await.unwrap().unwrap();
            match message.event {
                Some(event) => {
                    assert_eq!(message.position, event.position);
                    created.push(event.position);
                }
                None => return message,
            }
        }
    })
    .await
    .expect("a progress message arrives");
    // Found without a pause at the empty windows: the first progress
    // message comes after the last match.
    assert_eq!(created, vec![1, 2, 1803]);
    // Progress past the 20 left-out views, to the head.
    assert_eq!(progress.position, 1823);
    assert_eq!(progress.head_position, 1823);

    // A consumer's cursor follows progress, so a restart does not rescan.
    let pool = sink(&h).await;
    let consumer = filtered_consumer(
        &h,
        pool.clone(),
        h.server.channel.clone(),
        &["contact.created"],
    );
    let run = tokio::spawn(async move { consumer.run(std::future::pending()).await });
    wait_for_applied(&pool, 3).await;
    write_events(&mut client, &contact.id, 50, "w").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let cursor: i64 = sqlx::query_scalar(
                "SELECT position FROM sink.feed_cursors WHERE consumer = 'sink'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if cursor == 1873 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the cursor moves past the left-out events");
    assert_eq!(applied(&pool).await, (3, 1803));
    run.abort();
}

#[tokio::test]
async fn a_consumer_rides_out_a_producer_restart() {
    let h = common::start().await;
    let pool = sink(&h).await;
    let addr = h.server.addr;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("restart@example.com")).await;
    write_events(&mut client, &contact.id, 200, "a").await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let consumer = consumer(&h, pool.clone(), channel);
    let run = tokio::spawn(async move { consumer.run(std::future::pending()).await });
    wait_for_applied(&pool, 201).await;

    // Stop the producer and start it again on the same address.
    let common::Harness { server, db } = h;
    server.shutdown().await.unwrap();
    let config = common::config(&db);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let restarted = tokio::spawn(async move {
        rapport_contacts::serve(config, listener, Box::pin(std::future::pending())).await
    });
    let h = common::Harness {
        server: rapport_testkit::TestServer::attach(&rapport_contacts::SERVICE, addr, restarted)
            .await,
        db,
    };
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("after@example.com")).await;
    write_events(&mut client, &contact.id, 100, "b").await;
    wait_for_applied(&pool, 302).await;
    assert_eq!(applied(&pool).await, (302, 302));
    run.abort();
}

#[tokio::test]
async fn a_cursor_behind_the_retained_feed_is_refused_and_a_consumer_rebuilds() {
    let h = common::start().await;
    let pool = sink(&h).await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("old@example.com")).await;
    write_events(&mut client, &contact.id, 10, "a").await;
    read_feed(&h, 0, 11).await;

    let service = service_pool(&h).await;
    let pruned = rapport_events::sequencer::prune(
        &service,
        &rapport_contacts::events::OUTBOX,
        Duration::ZERO,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(pruned, 11);
    let err = feed_client(&h)
        .subscribe(SubscribeRequest {
            from_position: 3,
            types: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("pruned"), "{}", err.message());

    // A consumer whose cursor is behind rebuilds from the snapshot (this
    // one needs none of it) and follows from the position it names.
    let consumer = consumer(&h, pool.clone(), h.server.channel.clone());
    let run = tokio::spawn(async move { consumer.run(std::future::pending()).await });
    let rebuilt = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let cursor: i64 = sqlx::query_scalar("SELECT position FROM sink.feed_cursors")
                .fetch_one(&pool)
                .await
                .unwrap();
            if cursor == 11 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        rebuilt.is_ok(),
        "the cursor moved to the snapshot's position"
    );
    write_events(&mut client, &contact.id, 5, "b").await;
    wait_for_applied(&pool, 5).await;
    let (applied, last) = applied(&pool).await;
    assert_eq!(
        (applied, last),
        (5, 16),
        "only what came after the snapshot"
    );
    run.abort();
}

#[tokio::test]
async fn a_deleted_contact_leaves_no_personal_data_in_the_feed() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("deleted.person@example.com")).await;
    client
        .delete_contact(DeleteContactRequest {
            id: contact.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let events = read_feed(&h, 0, 2).await;
    assert_eq!(events[1].r#type, "contact.deleted");
    assert!(
        events
            .iter()
            .all(|e| !String::from_utf8_lossy(&e.encode_to_vec()).contains("deleted.person"))
    );
}

#[tokio::test]
async fn a_start_beyond_the_head_is_refused() {
    let h = common::start().await;
    let err = feed_client(&h)
        .subscribe(SubscribeRequest {
            from_position: 5,
            types: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_feed_needs_a_service_credential() {
    let h = common::start().await;
    let tenant_channel = h.server.tenant_channel(Uuid::now_v7());
    let err = EventFeedServiceClient::new(tenant_channel)
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// Rebuilds what it was given into `snapshot_sink`: contacts (from the
/// snapshot and from `contact.created`) and events (from the snapshot and
/// from `contact.event_recorded`), each once.
struct Projection;

impl Handler for Projection {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for event in events {
                if let Some(created) = rapport_events::consumer::payload::<ContactCreated>(event)? {
                    let contact = created.contact.unwrap_or_default();
                    project(tx, "contacts", &contact.id).await?;
                } else if let Some(recorded) =
                    rapport_events::consumer::payload::<ContactEventRecorded>(event)?
                {
                    project(tx, "events", &recorded.event.unwrap_or_default().id).await?;
                }
            }
            Ok(())
        })
    }

    fn snapshot_kinds(&self) -> Vec<String> {
        vec![
            rapport_events::snapshot::kind::<ContactSnapshot>(),
            rapport_events::snapshot::kind::<Event>(),
        ]
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        items: &'a [rapport_proto::events::v1::SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        use rapport_events::consumer::snapshot_payload;
        Box::pin(async move {
            for item in items {
                if let Some(snapshot) = snapshot_payload::<ContactSnapshot>(item)? {
                    let contact = snapshot.contact.unwrap_or_default();
                    assert_eq!(snapshot.lifecycle_history.len(), 1, "histories come along");
                    project(tx, "contacts", &contact.id).await?;
                } else if let Some(event) = snapshot_payload::<Event>(item)? {
                    project(tx, "events", &event.id).await?;
                }
            }
            Ok(())
        })
    }
}

async fn project(tx: &mut PgConnection, table: &str, id: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO snapshot_sink.{table} (id) VALUES ($1::uuid) ON CONFLICT DO NOTHING"
    )))
    .bind(id)
    .execute(tx)
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_consumer_on_an_empty_schema_over_a_pruned_feed_builds_from_the_snapshot_then_follows() {
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let mut other_tenant = h.client(Uuid::now_v7());
    for (client, name) in [(&mut client, "a"), (&mut other_tenant, "b")] {
        for i in 0..3 {
            let mut contact = common::person(&format!("{name}{i}@example.com"));
            contact.lifecycle_stage = LifecycleStage::Discovery as i32;
            let created = common::create(client, contact).await;
            write_events(client, &created.id, 10, &format!("{name}{i}")).await;
        }
    }
    // Nothing of it is left on the feed.
    read_feed(&h, 0, 6 * 12).await;
    let service = service_pool(&h).await;
    let pruned = rapport_events::sequencer::prune(
        &service,
        &rapport_contacts::events::OUTBOX,
        Duration::ZERO,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(pruned, 6 * 12);

    let pool = PgPool::connect(&h.db.url(None)).await.unwrap();
    pool.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA snapshot_sink; {} \
         CREATE TABLE snapshot_sink.contacts (id uuid PRIMARY KEY); \
         CREATE TABLE snapshot_sink.events (id uuid PRIMARY KEY)",
        rapport_events::consumer::schema_sql("snapshot_sink", "postgres")
    )))
    .await
    .unwrap();
    let consumer = Consumer::new(
        Subscription {
            consumer: "projection",
            producer: "contacts",
            schema: "snapshot_sink",
            types: &[],
        },
        pool.clone(),
        h.server.channel.clone(),
        identity("consumer"),
        Projection,
    );
    let run = tokio::spawn(async move { consumer.run(std::future::pending()).await });
    let counts = |pool: PgPool| async move {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM snapshot_sink.contacts), (SELECT count(*) FROM snapshot_sink.events)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let built = tokio::time::timeout(Duration::from_secs(20), async {
        while counts(pool.clone()).await != (6, 60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(built.is_ok(), "built {:?}", counts(pool.clone()).await);

    // Then it follows the feed.
    let created = common::create(&mut client, common::person("later@example.com")).await;
    write_events(&mut client, &created.id, 5, "later").await;
    let followed = tokio::time::timeout(Duration::from_secs(20), async {
        while counts(pool.clone()).await != (7, 65) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "followed {:?}",
        counts(pool.clone()).await
    );
    run.abort();
}

#[tokio::test]
async fn an_event_that_cannot_be_applied_is_set_aside_and_replayed_after_a_fix() {
    let h = common::start().await;
    let pool = sink(&h).await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("poison@example.com")).await;
    write_events(&mut client, &contact.id, 20, "a").await;

    let sink = Arc::new(Sink::default());
    // The event at position 5 hits a bug in the handler.
    sink.poison.store(5, std::sync::atomic::Ordering::SeqCst);
    let consumer = Arc::new(Consumer::new(
        Subscription {
            consumer: "sink",
            producer: "contacts",
            schema: "sink",
            types: &[],
        },
        pool.clone(),
        h.server.channel.clone(),
        identity("consumer"),
        sink.clone(),
    ));
    let running = consumer.clone();
    let run = tokio::spawn(async move { running.run(std::future::pending()).await });
    // Every other event applies, later ones included.
    wait_for_applied(&pool, 20).await;
    write_events(&mut client, &contact.id, 5, "b").await;
    wait_for_applied(&pool, 25).await;
    let dead: Vec<(i64, String)> =
        sqlx::query_as("SELECT position, error FROM sink.dead_letters ORDER BY position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 5);
    assert!(dead[0].1.contains("poison"), "{}", dead[0].1);
    let applied_positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM sink.applied ORDER BY position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!applied_positions.contains(&5));

    // After the fix, the replay applies it and empties the list.
    sink.poison.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(consumer.replay_dead_letters().await.unwrap(), (1, 0));
    assert_eq!(applied(&pool).await, (26, 26));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sink.dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    run.abort();
}
