//! Over its limits a service sheds instead of queueing, deadlines reach
//! PostgreSQL, and one tenant cannot starve another of connections.

mod common;

use std::time::{Duration, Instant};

use common::{create, person};
use rapport_proto::contacts::v1::*;
use rapport_testkit::{TestDatabase, TestServer, reason};
use sqlx::Executor as _;
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

/// Locks contact `id` until the returned connection's transaction ends.
async fn lock_contact(db: &TestDatabase, id: &str) -> sqlx::PgConnection {
    let mut admin = db.admin().await;
    admin.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT 1 FROM contacts.contacts WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut admin)
        .await
        .unwrap();
    admin
}

fn rename(id: &str, name: &str, timeout: Duration) -> tonic::Request<UpdateContactRequest> {
    let mut request = tonic::Request::new(UpdateContactRequest {
        contact: Some(Contact {
            id: id.to_owned(),
            first_name: name.to_owned(),
            ..Default::default()
        }),
        update_mask: None,
        etag: String::new(),
    });
    request.set_timeout(timeout);
    request
}

async fn get_time(client: &mut common::Client, id: &str) -> Duration {
    let started = Instant::now();
    client
        .get_contact(GetContactRequest { id: id.to_owned() })
        .await
        .unwrap();
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Backends of the service's role doing anything: waiting on a lock, or
/// holding a transaction open.
async fn busy_connections(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = 'rapport_contacts' AND datname = current_database() AND state <> 'idle'",
    )
    .fetch_one(&mut db.admin().await)
    .await
    .unwrap()
}

#[tokio::test]
async fn over_the_limit_of_calls_in_flight_a_call_is_refused_at_once() {
    let db = TestDatabase::create().await;
    let mut config = common::config(&db);
    config.common.server.max_concurrent_requests = 2;
    let server = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
        rapport_contacts::serve(config, listener, shutdown)
    })
    .await;
    let mut client = common::Client::new(server.tenant_channel(Uuid::now_v7()));
    let contact = create(&mut client, person("held@example.com")).await;
    let lock = lock_contact(&db, &contact.id).await;
    let held: Vec<_> = (0..2)
        .map(|i| {
            let mut client = client.clone();
            let request = rename(&contact.id, &format!("Held {i}"), Duration::from_secs(20));
            tokio::spawn(async move { client.update_contact(request).await })
        })
        .collect();
    // Both calls hold their slots, waiting on the lock.
    tokio::time::timeout(Duration::from_secs(10), async {
        while busy_connections(&db).await < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("two calls waiting on the lock");

    let started = Instant::now();
    let refused = client
        .get_contact(GetContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "OVERLOADED");
    assert!(refused.get_error_details().retry_info().is_some());
    assert!(took < Duration::from_millis(500), "refused after {took:?}");

    drop(lock);
    for call in held {
        call.await
            .unwrap()
            .expect("the held calls finish once the lock is gone");
    }
}

#[tokio::test]
async fn calls_past_their_deadline_free_their_connections_and_other_tenants_go_on() {
    const DEADLINE: Duration = Duration::from_millis(300);
    let h = common::start().await;
    let mut a = h.client(Uuid::now_v7());
    let mut b = h.client(Uuid::now_v7());
    let held = create(&mut a, person("held@example.com")).await;
    let other = create(&mut b, person("other@example.com")).await;

    let mut baseline = Vec::new();
    for _ in 0..20 {
        baseline.push(get_time(&mut b, &other.id).await);
    }
    let baseline = median(baseline);

    // More updates than the pool has connections, all on one locked row.
    let pool_size = 8;
    let lock = lock_contact(&h.db, &held.id).await;
    let fired = Instant::now();
    let updates: Vec<_> = (0..=pool_size)
        .map(|i| {
            let mut a = a.clone();
            let request = rename(&held.id, &format!("Late {i}"), DEADLINE);
            tokio::spawn(async move {
                let result = a.update_contact(request).await;
                (result, fired.elapsed())
            })
        })
        .collect();
    let mut loaded = Vec::new();
    while loaded.len() < 10 {
        loaded.push(get_time(&mut b, &other.id).await);
    }
    for update in updates {
        let (result, ended) = update.await.unwrap();
        let status = result.expect_err("the row stays locked past the deadline");
        // The server's answer, or the client's own timer on the same deadline.
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        assert!(
            ended < DEADLINE + Duration::from_millis(400),
            "ended {ended:?} after it was sent"
        );
    }
    // Their connections are free again within a second, the lock held or not.
    let freed = tokio::time::timeout(Duration::from_secs(1), async {
        while busy_connections(&h.db).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "connections still busy a second later");
    let loaded = median(loaded);
    assert!(
        loaded <= baseline * 2 + Duration::from_millis(20),
        "the other tenant's reads took {loaded:?} under load, {baseline:?} without"
    );
    drop(lock);
    a.update_contact(rename(&held.id, "Free", Duration::from_secs(5)))
        .await
        .expect("the row can be updated once the lock is gone");
}
