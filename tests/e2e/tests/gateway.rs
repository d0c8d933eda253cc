//! Through the gateway like a client: admin, keys, scopes, limits, routing
//! and pass-through of streams, metadata, status details and deadlines.

use std::time::Duration;

use prost::Message as _;
use prost_types::{FieldMask, Timestamp};
use rapport_core::credential::{Grant, Scope};
use rapport_e2e::{Suite, named, unknown_id};
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::*;
use rapport_proto::gateway::v1::*;
use rapport_testkit::reason;
use tonic::Code;
use tonic_types::StatusExt as _;

fn person(email: &str) -> Contact {
    Contact {
        email: email.to_owned(),
        first_name: "Ana".to_owned(),
        ..Default::default()
    }
}

async fn create(
    contacts: &mut rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient<
        rapport_client::Transport,
    >,
    email: &str,
) -> Contact {
    contacts
        .create_contact(CreateContactRequest {
            contact: Some(person(email)),
            request_id: String::new(),
        })
        .await
        .expect("create through the gateway")
        .into_inner()
        .contact
        .unwrap()
}

#[tokio::test]
async fn a_tenant_key_drives_the_contacts_api_end_to_end() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let mut contacts = suite.client(&key.secret).contacts();

    let contact = create(&mut contacts, "ana@example.com").await;
    let updated = contacts
        .update_contact(UpdateContactRequest {
            contact: Some(Contact {
                id: contact.id.clone(),
                last_name: "Lima".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["last_name".into()],
            }),
            etag: contact.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(updated.last_name, "Lima");
    let listed = contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts.len(), 1);

    let events: Vec<Event> = (0..700)
        .map(|i| Event {
            contact_id: contact.id.clone(),
            client_event_id: format!("e{i}"),
            r#type: "page.viewed".into(),
            channel: Channel::Web as i32,
            occur_time: Some(Timestamp {
                seconds: 1_700_000_000 + i,
                nanos: 0,
            }),
            ..Default::default()
        })
        .collect();
    let recorded = contacts
        .record_events(RecordEventsRequest { events })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.recorded_count, 700);
    let timeline = contacts
        .list_events(ListEventsRequest {
            contact_id: contact.id.clone(),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.events.len(), 5);

    // A server-streaming call passes through, every message of it.
    let mut stream = contacts
        .export_contact(ExportContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = 0;
    let mut exported_events = 0;
    while let Some(part) = stream.message().await.unwrap() {
        messages += 1;
        if let Some(export_contact_response::Part::Events(chunk)) = part.part {
            exported_events += chunk.events.len();
        }
    }
    assert_eq!((messages, exported_events), (3, 700));

    contacts
        .delete_contact(DeleteContactRequest {
            id: contact.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let err = contacts
        .get_contact(GetContactRequest { id: contact.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn status_details_metadata_and_request_ids_pass_through() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let mut contacts = suite.client(&key.secret).contacts();

    // Rich error details made by the service reach the client intact.
    let err = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("not-an-email")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["contact.email"]);

    // The caller's request id is kept end to end and echoed back.
    let mut request = tonic::Request::new(ListContactsRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "e2e-request-42".parse().unwrap());
    let response = contacts.list_contacts(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "e2e-request-42"
    );
}

#[tokio::test]
async fn bad_or_missing_keys_are_unauthenticated() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;

    let wrong_secret = format!(
        "{}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &key.secret[..key.secret.find('.').unwrap() + 1]
    );
    for presented in [
        wrong_secret.as_str(),
        "rk_000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-key",
    ] {
        let err = suite
            .client(presented)
            .contacts()
            .list_contacts(ListContactsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{presented}");
        assert_eq!(reason(&err), "API_KEY_INVALID");
    }
    let no_key = rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient::new(
        suite.gateway.channel.clone(),
    );
    let err = no_key
        .clone()
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err), "API_KEY_MISSING");

    // Admin calls need the operator key, not a tenant key.
    let err = suite
        .client(&key.secret)
        .gateway_admin()
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_missing_scope_is_permission_denied() {
    let suite = Suite::start().await;
    let reader = suite.tenant(named("acme"), &["contacts:read"]).await;
    let mut contacts = suite.client(&reader.secret).contacts();
    contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("reads are allowed");
    let err = contacts
        .get_contact(GetContactRequest { id: unknown_id() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "reads reach the service");
    let err = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("w@example.com")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("contacts:write"),
        "{}",
        err.message()
    );

    let other_service = suite.key(&reader.tenant_id, &["feedback:write"]).await;
    let err = suite
        .client(&other_service.secret)
        .contacts()
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn revoked_keys_and_suspended_tenants_are_refused_within_a_second() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let other = suite.key(&key.tenant_id, &["contacts:write"]).await;
    let mut contacts = suite.client(&key.secret).contacts();
    contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("the key works");

    let mut admin = suite.operator().gateway_admin();
    let revoked = admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: key.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(revoked.revoke_time.is_some());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let err = contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err), "API_KEY_REVOKED");

    let mut other_contacts = suite.client(&other.secret).contacts();
    other_contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("another key of the tenant still works");
    admin
        .suspend_tenant(SuspendTenantRequest {
            id: key.tenant_id.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let err = other_contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "TENANT_SUSPENDED");

    admin
        .resume_tenant(ResumeTenantRequest {
            id: key.tenant_id.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    other_contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("works again once resumed");

    let keys = admin
        .list_api_keys(ListApiKeysRequest {
            tenant_id: key.tenant_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.api_keys.len(), 2);
    assert!(
        keys.api_keys.iter().all(|k| k.prefix.starts_with("rk_")),
        "keys are listed by prefix, never with their secret"
    );
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let suite = Suite::start().await;
    let tenant = suite.tenant(named("acme"), &["contacts:read"]).await;
    let mut admin = suite.operator().gateway_admin();
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(1);
    let response = admin
        .create_api_key(CreateApiKeyRequest {
            tenant_id: tenant.tenant_id.clone(),
            display_name: "short-lived".into(),
            scopes: vec!["contacts:read".into()],
            expire_time: Some(Timestamp {
                seconds: soon.as_secs() as i64,
                nanos: soon.subsec_nanos() as i32,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut contacts = suite.client(&response.secret).contacts();
    contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("works before it expires");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "API_KEY_EXPIRED");

    let err = admin
        .create_api_key(CreateApiKeyRequest {
            tenant_id: tenant.tenant_id,
            display_name: String::new(),
            scopes: vec!["contacts:admin".into()],
            expire_time: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn over_the_rate_limit_is_resource_exhausted_with_a_retry_delay() {
    let suite = Suite::start().await;
    let limited = Tenant {
        display_name: "small".into(),
        rate_limit_per_second: 2,
        rate_limit_burst: 3,
        ..Default::default()
    };
    let key = suite.tenant(limited, &["contacts:read"]).await;
    let mut contacts = suite.client(&key.secret).contacts();
    for _ in 0..3 {
        contacts
            .list_contacts(ListContactsRequest::default())
            .await
            .expect("within the burst");
    }
    let err = contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(reason(&err), "TENANT_RATE_LIMITED");
    let delay = err
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_millis(500),
        "{delay:?}"
    );
    tokio::time::sleep(delay).await;
    contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("allowed again after the delay");

    // Another tenant is not affected.
    let other = suite.tenant(named("big"), &["contacts:read"]).await;
    suite
        .client(&other.secret)
        .contacts()
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("own bucket");
}

#[tokio::test]
async fn one_tenants_key_never_reaches_anothers_contacts() {
    let suite = Suite::start().await;
    let a = suite.tenant(named("a"), &["contacts:write"]).await;
    let b = suite.tenant(named("b"), &["contacts:write"]).await;
    let mut as_a = suite.client(&a.secret).contacts();
    let mut as_b = suite.client(&b.secret).contacts();
    let secret = create(&mut as_a, "a-only@example.com").await;

    let err = as_b
        .get_contact(GetContactRequest {
            id: secret.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        as_b.list_contacts(ListContactsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .contacts
            .is_empty()
    );
    let err = as_b
        .erase_contact(EraseContactRequest {
            id: secret.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    as_a.get_contact(GetContactRequest { id: secret.id })
        .await
        .expect("still there for A");
}

#[tokio::test]
async fn a_forged_internal_credential_from_a_client_is_ignored() {
    let suite = Suite::start().await;
    let a = suite.tenant(named("a"), &["contacts:read"]).await;
    let b = suite.tenant(named("b"), &["contacts:write"]).await;
    let b_contact = create(&mut suite.client(&b.secret).contacts(), "b@example.com").await;

    // A credential for tenant B with every scope, even signed with the
    // gateway's real key, sent by a client holding only A's read key.
    let forged = rapport_testkit::identity("gateway").mint(
        "contacts",
        &Grant {
            tenant_id: Some(b.tenant_id.parse().unwrap()),
            principal: "mallory".into(),
            scopes: vec![Scope::all()],
        },
        Duration::from_secs(60),
    );
    let mut as_a = suite.client(&a.secret).contacts();
    let err = as_a
        .get_contact(with_credential(
            GetContactRequest {
                id: b_contact.id.clone(),
            },
            &forged,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the call runs as tenant A");
    let err = as_a
        .create_contact(with_credential(
            CreateContactRequest {
                contact: Some(person("x@example.com")),
                request_id: String::new(),
            },
            &forged,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "with A's read-only scope"
    );

    // Without an API key the forged credential alone gets nowhere.
    let mut bare = rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient::new(
        suite.gateway.channel.clone(),
    );
    let err = bare
        .list_contacts(with_credential(ListContactsRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// `message` with an internal credential header, as only a service should send.
fn with_credential<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-rapport-credential", token.parse().unwrap());
    request
}

/// Holds the row of `email` until the returned transaction ends, so that
/// a write to it is provably in flight.
async fn hold_row(suite: &Suite, email: &str) -> sqlx::PgConnection {
    let mut admin = suite.db.admin().await;
    sqlx::query("BEGIN").execute(&mut admin).await.unwrap();
    sqlx::query("SELECT 1 FROM contacts.contacts WHERE email = $1 FOR UPDATE")
        .bind(email)
        .execute(&mut admin)
        .await
        .unwrap();
    admin
}

fn rename(id: &str) -> UpdateContactRequest {
    UpdateContactRequest {
        contact: Some(Contact {
            id: id.to_owned(),
            first_name: "Late".into(),
            ..Default::default()
        }),
        update_mask: None,
        etag: String::new(),
    }
}

#[tokio::test]
async fn the_gateway_deadline_ends_a_call_with_deadline_exceeded() {
    let suite = Suite::start_with(|config| config.common.server.request_timeout_ms = 300).await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let mut contacts = suite.client(&key.secret).contacts();
    let contact = create(&mut contacts, "slow@example.com").await;

    let mut lock = hold_row(&suite, "slow@example.com").await;
    let started = std::time::Instant::now();
    let err = contacts
        .update_contact(rename(&contact.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Cancellation travels client -> gateway -> service as stream resets;
    // give it a moment before the lock is released.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    // The upstream call was cancelled with it: the update never happened.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = contacts
        .get_contact(GetContactRequest { id: contact.id })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(now.first_name, "Ana");
}

#[tokio::test]
async fn a_client_deadline_reaches_the_service_and_cancels_its_work() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let mut contacts = suite.client(&key.secret).contacts();
    let contact = create(&mut contacts, "slow@example.com").await;

    let mut lock = hold_row(&suite, "slow@example.com").await;
    let mut request = tonic::Request::new(rename(&contact.id));
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    // tonic's client reports its own expiry as CANCELLED; other clients as
    // DEADLINE_EXCEEDED. Either way the call ends on time.
    let err = contacts.update_contact(request).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Cancellation travels client -> gateway -> service as stream resets;
    // give it a moment before the lock is released.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = contacts
        .get_contact(GetContactRequest { id: contact.id })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(
        now.first_name, "Ana",
        "the service stopped the update when the deadline passed"
    );
}

#[tokio::test]
async fn a_tenant_cannot_hold_more_calls_in_flight_than_its_share() {
    let suite = Suite::start_with(|config| config.service.tenant_max_in_flight = 2).await;
    let busy = suite.tenant(named("busy"), &["contacts:write"]).await;
    let mut contacts = suite.client(&busy.secret).contacts();
    let first = create(&mut contacts, "one@example.com").await;
    let second = create(&mut contacts, "two@example.com").await;

    // Two updates held in flight by row locks take both slots.
    let mut locks = vec![
        hold_row(&suite, "one@example.com").await,
        hold_row(&suite, "two@example.com").await,
    ];
    let held: Vec<_> = [first.id.clone(), second.id.clone()]
        .into_iter()
        .map(|id| {
            let mut contacts = contacts.clone();
            tokio::spawn(async move { contacts.update_contact(rename(&id)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let err = contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(reason(&err), "TENANT_CONCURRENCY_LIMITED");
    let other = suite.tenant(named("calm"), &["contacts:read"]).await;
    suite
        .client(&other.secret)
        .contacts()
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("another tenant has its own slots");

    for lock in &mut locks {
        sqlx::query("COMMIT").execute(lock).await.unwrap();
    }
    for call in held {
        call.await.unwrap().expect("the held calls finish");
    }
    contacts
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("finished calls free their slots");
}

#[tokio::test]
async fn unconfigured_or_unreachable_services_are_unavailable() {
    let unconfigured = Suite::start_with(|config| config.service.upstreams.clear()).await;
    let key = unconfigured.tenant(named("acme"), &["contacts:read"]).await;
    let err = unconfigured
        .client(&key.secret)
        .contacts()
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "SERVICE_NOT_CONFIGURED");

    let unreachable = Suite::start_with(|config| {
        config.service.upstreams = vec![("contacts".into(), "http://127.0.0.1:1".into())]
    })
    .await;
    let key = unreachable.tenant(named("acme"), &["contacts:read"]).await;
    let err = unreachable
        .client(&key.secret)
        .contacts()
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn health_is_public_and_reflection_needs_a_key() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let suite = Suite::start().await;
    let mut health = tonic_health_client(&suite);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("no key needed");

    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let key = suite.tenant(named("acme"), &["contacts:read"]).await;
    let mut reflection = ServerReflectionClient::new(suite.client(&key.secret).transport());
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(list()))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("a service list")
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"rapport.contacts.v1.ContactsService"),
        "{names:?}"
    );

    let mut anonymous = ServerReflectionClient::new(suite.gateway.channel.clone());
    let err = anonymous
        .server_reflection_info(tokio_stream::once(list()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let off = Suite::start_with(|config| config.service.reflection = false).await;
    let key = off.tenant(named("acme"), &["contacts:read"]).await;
    let mut reflection = ServerReflectionClient::new(off.client(&key.secret).transport());
    let err = reflection
        .server_reflection_info(tokio_stream::once(list()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

fn tonic_health_client(
    suite: &Suite,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    tonic_health::pb::health_client::HealthClient::new(suite.gateway.channel.clone())
}

/// One HTTP/1.1 exchange with the gateway, as a browser makes it: the
/// answer's text.
async fn http1(suite: &Suite, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(suite.gateway.addr)
        .await
        .unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A gRPC-Web GetContact, framed as a browser client frames it, from a
/// page on `origin` if given.
async fn grpc_web_get_contact(suite: &Suite, key: &str, id: &str, origin: Option<&str>) -> String {
    let message = GetContactRequest { id: id.into() }.encode_to_vec();
    let mut body = vec![0_u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /rapport.contacts.v1.ContactsService/GetContact HTTP/1.1\r\nHost: {}\r\n{origin}Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        suite.gateway.addr,
        body.len()
    );
    http1(suite, &head, &body).await
}

#[tokio::test]
async fn a_browser_can_call_through_grpc_web() {
    let suite = Suite::start().await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let contact = create(&mut suite.client(&key.secret).contacts(), "web@example.com").await;

    let text = grpc_web_get_contact(&suite, &key.secret, &contact.id, None).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/grpc-web"), "{text}");
    assert!(
        text.contains("web@example.com"),
        "the contact is in the body: {text}"
    );
    assert!(
        text.contains("grpc-status:0"),
        "the trailer frame says OK: {text}"
    );
    // No origin is allowed by default: nothing tells a browser otherwise.
    let text = grpc_web_get_contact(
        &suite,
        &key.secret,
        &contact.id,
        Some("https://app.example.com"),
    )
    .await;
    assert!(
        !text.to_lowercase().contains("access-control-allow-origin"),
        "{text}"
    );
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_calls_through_grpc_web() {
    let suite = Suite::start_with(|config| {
        config.service.cors_allowed_origins =
            vec![http::HeaderValue::from_static("https://app.example.com")];
    })
    .await;
    let key = suite.tenant(named("acme"), &["contacts:write"]).await;
    let contact = create(
        &mut suite.client(&key.secret).contacts(),
        "page@example.com",
    )
    .await;

    // The browser asks first.
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /rapport.contacts.v1.ContactsService/GetContact HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type, x-grpc-web\r\nConnection: close\r\n\r\n",
            suite.gateway.addr
        )
    };
    let answer = http1(&suite, &preflight("https://app.example.com"), &[])
        .await
        .to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains("access-control-allow-origin: https://app.example.com"),
        "{answer}"
    );
    assert!(
        answer.contains("access-control-allow-methods: post"),
        "{answer}"
    );
    let allowed = answer
        .lines()
        .find(|line| line.starts_with("access-control-allow-headers:"))
        .unwrap_or_default();
    for header in ["authorization", "content-type", "x-grpc-web"] {
        assert!(allowed.contains(header), "{answer}");
    }

    // Then calls, and may read the call's status.
    let text = grpc_web_get_contact(
        &suite,
        &key.secret,
        &contact.id,
        Some("https://app.example.com"),
    )
    .await;
    assert!(text.contains("page@example.com"), "{text}");
    let lower = text.to_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    let exposed = lower
        .lines()
        .find(|line| line.starts_with("access-control-expose-headers:"))
        .unwrap_or_default();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{text}");
    }

    // A page elsewhere is not let in.
    let answer = http1(&suite, &preflight("https://elsewhere.example.org"), &[])
        .await
        .to_lowercase();
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
}
