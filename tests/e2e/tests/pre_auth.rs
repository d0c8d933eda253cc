//! What the gateway spends on callers it has not authenticated: a flood of
//! made-up keys from one address is refused before the database is asked,
//! so a tenant's calls go on at their usual speed; and nothing about the
//! methods behind the gateway is told to a caller without a valid key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rapport_client::{Auth, RapportClient};
use rapport_e2e::{Suite, create_contact, create_tenant, keyed_client, named};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::*;
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY};
use rapport_testkit::{TestDatabase, reason};
use tonic::Code;
use tonic::transport::Endpoint;
use uuid::Uuid;

/// The flood: calls per second, for how long at most, and how many at most.
const FLOOD_RATE: u64 = 2_000;
const FLOOD_FOR: Duration = Duration::from_secs(10);
const FLOOD_CALLS: u64 = 20_000;
const FLOODERS: u64 = 16;
/// Calls a tenant makes with and without the flood.
const SAMPLES: usize = 200;

/// `samples` GetContact latencies of `client`, sorted; every call succeeds.
async fn latencies(client: &RapportClient, id: &str, samples: usize) -> Vec<Duration> {
    let mut contacts = client.contacts();
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        contacts
            .get_contact(GetContactRequest { id: id.to_owned() })
            .await
            .expect("the tenant's call succeeds");
        taken.push(started.elapsed());
    }
    taken.sort();
    taken
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A well-formed key no one was given.
fn made_up_key() -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!("rk_{}.{}", &random[..12], "A".repeat(43))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_keys_does_not_slow_a_tenant_down() {
    // The suite as processes, with the limits a deployment has for
    // unauthenticated calls (the stack raises them for other tests).
    let defaults = [
        ("RAPPORT_UNAUTHENTICATED_RATE_PER_SECOND", "20".to_owned()),
        ("RAPPORT_UNAUTHENTICATED_RATE_BURST", "100".to_owned()),
    ];
    let stack = ProcessStack::start(TestDatabase::create().await, &defaults)
        .await
        .unwrap();
    let gateway = |from: &str| {
        Endpoint::from_shared(format!("http://{}", stack.gateway.addr))
            .unwrap()
            .local_address(Some(from.parse().unwrap()))
            .connect_lazy()
    };
    let operator = keyed_client(gateway("127.0.0.1"), STACK_OPERATOR_KEY);
    let key = create_tenant(&operator, named("steady"), &["contacts:write"]).await;
    let tenant = keyed_client(gateway("127.0.0.1"), &key.secret);
    let contact = create_contact(&tenant, "steady@example.com").await;
    // Warm up, then the baseline.
    latencies(&tenant, &contact.id, 20).await;
    let baseline = latencies(&tenant, &contact.id, SAMPLES).await;

    // From another address, made-up keys at a steady high rate.
    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let channel = gateway("127.0.0.2");
    let mut flooders = tokio::task::JoinSet::new();
    for _ in 0..FLOODERS {
        let (flooding, sent, limited) = (flooding.clone(), sent.clone(), limited.clone());
        let channel = channel.clone();
        flooders.spawn(async move {
            let started = Instant::now();
            let mut pace =
                tokio::time::interval(Duration::from_secs(1) * FLOODERS as u32 / FLOOD_RATE as u32);
            while flooding.load(Ordering::Relaxed)
                && started.elapsed() < FLOOD_FOR
                && sent.fetch_add(1, Ordering::Relaxed) < FLOOD_CALLS
            {
                pace.tick().await;
                let client = RapportClient::with_channel(
                    channel.clone(),
                    Auth::ApiKey(made_up_key()),
                    Duration::from_secs(5),
                )
                .unwrap();
                let status = client
                    .contacts()
                    .list_contacts(ListContactsRequest::default())
                    .await
                    .unwrap_err();
                // Refused before a lookup (over the address's rate, or no
                // lookup slot free), or looked up and not found.
                match reason(&status).as_str() {
                    "CLIENT_RATE_LIMITED" | "AUTH_BUSY" => {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = latencies(&tenant, &contact.id, SAMPLES).await;
    flooding.store(false, Ordering::Relaxed);
    while let Some(joined) = flooders.join_next().await {
        joined.unwrap();
    }

    let sent = sent.load(Ordering::Relaxed).min(FLOOD_CALLS);
    let limited = limited.load(Ordering::Relaxed);
    eprintln!(
        "flood: {sent} calls, {limited} refused before a lookup; tenant p50 {:?} -> {:?}, p90 {:?} -> {:?}",
        quantile(&baseline, 0.5),
        quantile(&flooded, 0.5),
        quantile(&baseline, 0.9),
        quantile(&flooded, 0.9),
    );
    assert!(sent > 1000, "the flood was a flood: {sent} calls");
    assert!(
        limited * 10 >= sent * 9,
        "most of the flood was refused before any lookup: {limited} of {sent}"
    );
    for q in [0.5, 0.9] {
        let (before, during) = (quantile(&baseline, q), quantile(&flooded, q));
        assert!(
            during <= before * 2 + Duration::from_millis(20),
            "the tenant's p{} went from {before:?} to {during:?}",
            q * 100.0
        );
    }
}

#[tokio::test]
async fn an_unknown_method_and_a_keyless_call_look_the_same() {
    let suite = Suite::start().await;
    let unknown = |key: Option<String>| {
        let suite = &suite;
        async move {
            let mut request = tonic::Request::new(ListContactsRequest::default());
            if let Some(key) = key {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {key}").parse().unwrap());
            }
            let mut grpc = tonic::client::Grpc::new(suite.gateway.channel.clone());
            grpc.ready().await.unwrap();
            grpc.unary::<_, ListContactsResponse, _>(
                request,
                "/rapport.contacts.v1.ContactsService/NoSuchMethod"
                    .parse()
                    .unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err()
        }
    };
    let keyless = unknown(None).await;
    assert_eq!(keyless.code(), Code::Unauthenticated, "{keyless:?}");
    assert_eq!(reason(&keyless), "API_KEY_MISSING");
    let known = ContactsServiceClient::new(suite.gateway.channel.clone())
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (known.code(), known.message(), reason(&known)),
        (keyless.code(), keyless.message(), reason(&keyless)),
        "a known method without a key is refused the same way"
    );
    let made_up = unknown(Some(made_up_key())).await;
    assert_eq!(made_up.code(), Code::Unauthenticated, "{made_up:?}");
    assert_eq!(reason(&made_up), "API_KEY_INVALID");

    let key = suite.tenant(named("curious"), &["contacts:read"]).await;
    let with_key = unknown(Some(key.secret)).await;
    assert_eq!(with_key.code(), Code::Unimplemented, "{with_key:?}");
}
