//! Faults a deployment lives through, with the services as real processes:
//! PostgreSQL restarting under load, and a service and the gateway stopped
//! with SIGTERM mid-load, as a rolling deploy does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use rapport_client::{RapportClient, with_retries};
use rapport_e2e::{TenantKey, create_tenant, keyed_client, named};
use rapport_proto::contacts::v1::*;
use rapport_testkit::TestDatabase;
use rapport_testkit::postgres::PrivatePostgres;
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY};
use sqlx::Connection as _;
use tonic::Code;
use uuid::Uuid;

fn client(stack: &ProcessStack, key: &str) -> RapportClient {
    keyed_client(stack.gateway.channel.clone(), key)
}

async fn tenant(stack: &ProcessStack) -> TenantKey {
    let operator = client(stack, STACK_OPERATOR_KEY);
    with_retries(20, || async {
        Ok(create_tenant(&operator, named("faults"), &["*:write"]).await)
    })
    .await
    .unwrap()
}

fn create_request(email: String) -> CreateContactRequest {
    CreateContactRequest {
        request_id: email.clone(),
        contact: Some(Contact {
            email,
            ..Default::default()
        }),
    }
}

/// Waits until feedback's cursor on the contacts feed has reached the
/// feed's head: the feed resumed and the consumer caught up.
async fn feed_caught_up(db_url: &str) {
    let mut admin = sqlx::PgConnection::connect(db_url).await.unwrap();
    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (head, cursor): (i64, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT last_position FROM contacts.outbox_state), \
                        (SELECT position FROM feedback.feed_cursors WHERE consumer = 'feedback.contacts_v2')",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if cursor == Some(head) && head > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "feedback did not catch up with the contacts feed"
    );
}

#[tokio::test]
async fn a_postgres_restart_under_load_loses_nothing_and_fails_nothing_but_unavailable() {
    let postgres = PrivatePostgres::start().unwrap();
    let db = TestDatabase::create_at(&postgres.admin_url()).await;
    let db_url = db.url(None);
    let stack = ProcessStack::start(db, &[]).await.unwrap();
    let key = tenant(&stack).await;
    let running = Arc::new(AtomicBool::new(true));

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let contacts = client(&stack, &key.secret).contacts();
            let running = running.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut codes = Vec::new();
                let mut i = 0;
                while running.load(Ordering::Relaxed) {
                    i += 1;
                    let email = format!("w{worker}-{i}@example.com");
                    match contacts.clone().create_contact(create_request(email)).await {
                        Ok(response) => created.push(response.into_inner().contact.unwrap().id),
                        Err(status) => codes.push(status),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (created, codes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);

    let mut created = Vec::new();
    for worker in workers {
        let (ids, errors) = worker.await.unwrap();
        for status in errors {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
        created.extend(ids);
    }
    assert!(!created.is_empty());

    // Afterwards every call succeeds, and every write that was answered OK
    // is there.
    let mut contacts = client(&stack, &key.secret).contacts();
    with_retries(50, || {
        let mut contacts = contacts.clone();
        async move { contacts.list_contacts(ListContactsRequest::default()).await }
    })
    .await
    .expect("the services recover");
    for id in &created {
        contacts
            .get_contact(GetContactRequest { id: id.clone() })
            .await
            .unwrap_or_else(|status| panic!("contact {id} was answered OK and lost: {status:?}"));
    }
    // The feeds resume: a change made now reaches feedback.
    contacts
        .create_contact(create_request(format!(
            "after-{}@example.com",
            Uuid::now_v7()
        )))
        .await
        .unwrap();
    feed_caught_up(&db_url).await;
}

#[tokio::test]
async fn sigterm_under_load_fails_no_call() {
    let db = TestDatabase::create().await;
    let db_url = db.url(None);
    let mut stack = ProcessStack::start(db, &[]).await.unwrap();
    let key = tenant(&stack).await;
    let contacts = client(&stack, &key.secret).contacts();
    let mut ids = Vec::new();
    for i in 0..20 {
        let created = contacts
            .clone()
            .create_contact(create_request(format!("term-{i}@example.com")))
            .await
            .unwrap();
        ids.push(created.into_inner().contact.unwrap().id);
    }
    let ids = Arc::new(ids);
    let running = Arc::new(AtomicBool::new(true));

    // Reads, renames and whole exports (finite streams), each retried on
    // UNAVAILABLE as a client does; anything else is a failure.
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let contacts = contacts.clone();
            let ids = ids.clone();
            let running = running.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut calls = 0;
                while running.load(Ordering::Relaxed) {
                    calls += 1;
                    let id = ids[(worker + calls) % ids.len()].clone();
                    let result = with_retries(30, || {
                        let mut contacts = contacts.clone();
                        let id = id.clone();
                        async move {
                            contacts
                                .update_contact(UpdateContactRequest {
                                    contact: Some(Contact {
                                        id: id.clone(),
                                        first_name: format!("Name {calls}"),
                                        ..Default::default()
                                    }),
                                    update_mask: None,
                                    etag: String::new(),
                                })
                                .await?;
                            contacts
                                .get_contact(GetContactRequest { id: id.clone() })
                                .await?;
                            let mut export = contacts
                                .export_contact(ExportContactRequest { id })
                                .await?
                                .into_inner();
                            while export.message().await?.is_some() {}
                            Ok(())
                        }
                    })
                    .await;
                    if let Err(status) = result {
                        failures.push(status);
                    }
                }
                (calls, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let clean = stack.restart_contacts(Signal::SIGTERM).await.unwrap();
    assert!(clean, "contacts exits cleanly on SIGTERM");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let clean = stack.restart_gateway(Signal::SIGTERM).await.unwrap();
    assert!(clean, "the gateway exits cleanly on SIGTERM");
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.store(false, Ordering::Relaxed);

    let mut total = 0;
    for worker in workers {
        let (calls, failures) = worker.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
        total += calls;
    }
    assert!(total > 10, "{total} calls");
    // The feed subscription ended with the old contacts process; feedback
    // resumed it from its cursor.
    contacts
        .clone()
        .create_contact(create_request(format!(
            "after-{}@example.com",
            Uuid::now_v7()
        )))
        .await
        .unwrap();
    feed_caught_up(&db_url).await;
}

/// A call cancelled (its client gone, its deadline passed) while its
/// transaction begins must not hand its connection back to the pool inside
/// an open transaction: the next call's BEGIN would be ignored and its
/// tenant setting rolled back under it.
#[tokio::test]
async fn a_transaction_abandoned_while_it_begins_leaves_no_transaction_open() {
    let db = TestDatabase::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url(None))
        .await
        .unwrap();
    // Outside any transaction, a setting made for the transaction is gone
    // by the next statement; inside one, it stays.
    let inside_a_transaction = || async {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SELECT set_config('app.probe', 'set', true)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let probe: Option<String> = sqlx::query_scalar("SELECT current_setting('app.probe', true)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        probe.as_deref() == Some("set")
    };
    assert!(!inside_a_transaction().await, "the probe itself");
    for attempt in 0..300_u64 {
        // Cancelled at every point of the BEGIN round trip, over the
        // attempts, with settings (a call's) and without (a consumer's).
        let after = Duration::from_micros(attempt / 2 * 5);
        if attempt % 2 == 0 {
            let begin = rapport_core::db::begin_with_settings(&pool, &[("app.tenant_id", "x")]);
            let _ = tokio::time::timeout(after, begin).await;
        } else {
            let _ = tokio::time::timeout(after, rapport_core::db::begin(&pool)).await;
        }
        assert!(
            !inside_a_transaction().await,
            "attempt {attempt} left its connection inside a transaction"
        );
    }
}
