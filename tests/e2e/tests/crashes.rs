//! Crashes lose nothing and repeat nothing: a consumer process killed with
//! SIGKILL mid-batch and the producing process killed with SIGKILL
//! mid-write, under a steady stream of events; afterwards every event the
//! producer committed was applied exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use rapport_client::with_retries;
use rapport_e2e::{create_contact, create_tenant, keyed_client, named};
use rapport_proto::common::v1::Channel as EventChannel;
use rapport_proto::contacts::v1::*;
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY, sibling_binary};
use rapport_testkit::{TestDatabase, identity_key};
use sqlx::{AssertSqlSafe, Executor as _, PgPool};
use tokio::process::{Child, Command};

fn start_consumer(stack: &ProcessStack) -> Child {
    Command::new(sibling_binary("rapport-test-consumer").unwrap())
        .env("DATABASE_URL", stack.db.url(None))
        .env(
            "RAPPORT_CONTACTS_URL",
            format!("http://{}", stack.contacts.addr),
        )
        .env("RAPPORT_IDENTITY_KEY", identity_key("consumer"))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn counts(db: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM contacts.outbox WHERE position IS NOT NULL), \
                (SELECT count(*) FROM test_consumer.applied), \
                (SELECT count(*) FROM test_consumer.dead_letters)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn killed_consumers_and_producers_apply_every_event_exactly_once() {
    let mut stack = ProcessStack::start(TestDatabase::create().await, &[])
        .await
        .unwrap();
    let db = PgPool::connect(&stack.db.url(None)).await.unwrap();
    db.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA test_consumer; {} \
         CREATE TABLE test_consumer.applied (event_id uuid PRIMARY KEY, position bigint NOT NULL); \
         INSERT INTO test_consumer.feed_cursors VALUES ('test', 0)",
        rapport_events::consumer::schema_sql("test_consumer", "postgres")
    )))
    .await
    .unwrap();
    let operator = keyed_client(stack.gateway.channel.clone(), STACK_OPERATOR_KEY);
    let key = create_tenant(&operator, named("crashes"), &["contacts:write"]).await;
    let client = keyed_client(stack.gateway.channel.clone(), &key.secret);
    let contact = create_contact(&client, "crash@example.com").await;

    // Events keep coming: batches of 50, each retried with its client
    // event ids until it is recorded, so a retry cannot add any twice.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let contacts = client.contacts();
        tokio::spawn(async move {
            let mut batch = 0;
            while writing.load(Ordering::Relaxed) {
                batch += 1;
                let request = RecordEventsRequest {
                    events: (0..50)
                        .map(|i| Event {
                            contact_id: contact.id.clone(),
                            client_event_id: format!("{batch}-{i}"),
                            r#type: "page.viewed".into(),
                            channel: EventChannel::Web as i32,
                            occur_time: Some(std::time::SystemTime::now().into()),
                            ..Default::default()
                        })
                        .collect(),
                };
                with_retries(60, || {
                    let mut contacts = contacts.clone();
                    let request = request.clone();
                    async move { contacts.record_events(request).await }
                })
                .await
                .expect("every batch is recorded in the end");
            }
        })
    };

    let mut consumer = start_consumer(&stack);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The consumer dies inside a batch's transaction.
    consumer.kill().await.unwrap();
    consumer = start_consumer(&stack);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The producer dies while events are being written.
    stack.restart_contacts(Signal::SIGKILL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    consumer.kill().await.unwrap();
    consumer = start_consumer(&stack);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writing.store(false, Ordering::Relaxed);
    writer.await.unwrap();

    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (positioned, applied, _) = counts(&db).await;
            let unpositioned: i64 =
                sqlx::query_scalar("SELECT count(*) FROM contacts.outbox WHERE position IS NULL")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            if unpositioned == 0 && applied == positioned {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (positioned, applied, dead) = counts(&db).await;
    assert!(settled.is_ok(), "{applied} of {positioned} events applied");
    assert!(positioned > 500, "{positioned} events");
    assert_eq!(dead, 0, "nothing was applied twice or set aside");
    // Exactly the committed events, each once.
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM contacts.outbox o \
         WHERE NOT EXISTS (SELECT 1 FROM test_consumer.applied a WHERE a.event_id = o.event_id)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(missing, 0);
    consumer.kill().await.unwrap();
}
