//! What every service gets from rapport-core, checked on contacts: the
//! credential gate, scopes, health, reflection, graceful shutdown, and the
//! refusal to run as a role that bypasses row-level security.

mod common;

use std::time::Duration;

use rapport_core::credential::{Access, Grant, Scope};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::*;
use rapport_testkit::Credential;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

#[tokio::test]
async fn calls_without_a_valid_credential_are_refused() {
    let h = common::start().await;
    let raw = |token: Option<String>| {
        ContactsServiceClient::new(InterceptedService::new(
            h.server.channel.clone(),
            Credential::raw(token),
        ))
    };

    let err = raw(None)
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Signed with a key of the attacker's own, under the gateway's name.
    let forged = rapport_testkit::sign_claims("mallory", &claims("gateway", "contacts", 60));
    let err = raw(Some(forged))
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = raw(Some("not.a.token".into()))
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A bare tenant header is not a credential.
    let mut request = tonic::Request::new(ListContactsRequest::default());
    request
        .metadata_mut()
        .insert("x-tenant-id", Uuid::now_v7().to_string().parse().unwrap());
    let err = ContactsServiceClient::new(h.server.channel.clone())
        .list_contacts(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Claims of a credential from `issuer` for `audience`, for every tenant's
/// contacts, issued now and valid for `lifetime` seconds.
fn claims(issuer: &str, audience: &str, lifetime: u64) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": "mallory",
        "tid": Uuid::now_v7(),
        "scp": ["contacts:write"],
        "iat": now,
        "exp": now + lifetime,
    })
}

#[tokio::test]
async fn credentials_are_checked_for_signer_issuer_audience_lifetime_and_scopes() {
    let h = common::start().await;
    let call = |token: String| {
        let mut client = ContactsServiceClient::new(InterceptedService::new(
            h.server.channel.clone(),
            Credential::raw(Some(token)),
        ));
        async move {
            client
                .list_contacts(ListContactsRequest::default())
                .await
                .map(drop)
        }
    };
    let refused = |result: Result<(), tonic::Status>, why: &str| {
        let err = result.expect_err(why);
        assert_eq!(err.code(), Code::Unauthenticated, "{why}: {err:?}");
        assert_eq!(rapport_testkit::reason(&err), "INVALID_CREDENTIAL", "{why}");
        err.message().to_owned()
    };

    // The gateway's own key, as it signs: accepted.
    let honest = rapport_testkit::sign_claims("gateway", &claims("gateway", "contacts", 60));
    call(honest)
        .await
        .expect("the gateway's credential for contacts");

    // Minted for feedback: refused by contacts.
    let message = refused(
        call(rapport_testkit::sign_claims(
            "gateway",
            &claims("gateway", "feedback", 60),
        ))
        .await,
        "wrong audience",
    );
    assert!(message.contains("another service"), "{message}");

    // Expired a minute ago.
    let mut expired = claims("gateway", "contacts", 60);
    expired["iat"] = (expired["iat"].as_u64().unwrap() - 120).into();
    expired["exp"] = (expired["exp"].as_u64().unwrap() - 120).into();
    let message = refused(
        call(rapport_testkit::sign_claims("gateway", &expired)).await,
        "expired",
    );
    assert!(message.contains("expired"), "{message}");

    // Valid for an hour: longer than any credential may live.
    refused(
        call(rapport_testkit::sign_claims(
            "gateway",
            &claims("gateway", "contacts", 3600),
        ))
        .await,
        "too long a life",
    );

    // A service cannot mint a gateway credential: feedback's key, the
    // gateway's name.
    let message = refused(
        call(rapport_testkit::sign_claims(
            "feedback",
            &claims("gateway", "contacts", 60),
        ))
        .await,
        "wrong issuer",
    );
    assert!(message.contains("issuer"), "{message}");

    // A key no one trusts.
    refused(
        call(rapport_testkit::sign_claims(
            "mallory",
            &claims("mallory", "contacts", 60),
        ))
        .await,
        "unknown key id",
    );

    // Feedback may read contacts, not write them.
    let message = refused(
        call(rapport_testkit::sign_claims(
            "feedback",
            &claims("feedback", "contacts", 60),
        ))
        .await,
        "a scope outside the issuer's grants",
    );
    assert!(message.contains("feedback may not grant"), "{message}");
    let mut reading = claims("feedback", "contacts", 60);
    reading["scp"] = serde_json::json!(["contacts:read"]);
    call(rapport_testkit::sign_claims("feedback", &reading))
        .await
        .expect("feedback reading contacts for a tenant");
}

#[tokio::test]
async fn scopes_and_tenant_are_enforced() {
    let h = common::start().await;
    let read_only = Grant {
        tenant_id: Some(Uuid::now_v7()),
        principal: "reader".into(),
        scopes: vec![Scope::new("contacts", Access::Read)],
    };
    let mut client = ContactsServiceClient::new(h.server.channel_for(&read_only));
    client
        .list_contacts(ListContactsRequest::default())
        .await
        .expect("read is allowed");
    let err = client
        .create_contact(CreateContactRequest {
            contact: Some(common::person("w@example.com")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("contacts:write"));

    let other_service = Grant {
        scopes: vec![Scope::new("feedback", Access::Write)],
        ..read_only.clone()
    };
    let err = ContactsServiceClient::new(h.server.channel_for(&other_service))
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let no_tenant = Grant {
        tenant_id: None,
        ..read_only
    };
    let err = ContactsServiceClient::new(h.server.channel_for(&no_tenant))
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn health_needs_no_credential_and_reflection_lists_the_service() {
    let h = common::start().await;
    let mut health = HealthClient::new(h.server.channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "rapport.contacts.v1.ContactsService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(h.server.tenant_channel(Uuid::now_v7()));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"rapport.contacts.v1.ContactsService"),
        "{names:?}"
    );
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_calls_to_finish() {
    use sqlx::Connection as _;
    let h = common::start().await;
    let mut client = h.client(Uuid::now_v7());
    let contact = common::create(&mut client, common::person("drain@example.com")).await;

    // Hold the contact's row so that an update is provably in flight.
    let mut admin = h.db.admin().await;
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM contacts.contacts WHERE id = $1 FOR UPDATE")
        .bind(Uuid::parse_str(&contact.id).unwrap())
        .execute(&mut *lock)
        .await
        .unwrap();
    let update = tokio::spawn(async move {
        client
            .update_contact(UpdateContactRequest {
                contact: Some(Contact {
                    id: contact.id,
                    first_name: "Drained".into(),
                    ..Default::default()
                }),
                update_mask: None,
                etag: String::new(),
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let common::Harness { server, db } = h;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the in-flight update"
    );

    lock.commit().await.unwrap();
    let updated = update.await.unwrap().expect("the in-flight call completes");
    assert_eq!(updated.into_inner().contact.unwrap().first_name, "Drained");
    shutdown.await.unwrap().expect("clean shutdown");
    drop(db);
}

#[tokio::test]
async fn refuses_to_run_as_a_role_that_bypasses_row_level_security() {
    let db = rapport_testkit::TestDatabase::create().await;
    let mut config = common::config(&db);
    config.common.database.database_url = db.url(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = rapport_contacts::serve(config, listener, Box::pin(std::future::pending()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("bypasses row-level security"),
        "{err:#}"
    );
}

#[tokio::test]
async fn refuses_to_run_as_a_role_that_owns_tables() {
    use sqlx::Connection as _;
    let db = rapport_testkit::TestDatabase::create().await;
    let owner = format!("rapport_test_owner_{}", Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&db.url(None)).await.unwrap();
    for statement in [
        format!("CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS"),
        "CREATE TABLE public.owned (x int)".to_owned(),
        format!("ALTER TABLE public.owned OWNER TO {owner}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let mut config = common::config(&db);
    config.common.database.database_url = db.url(Some(&owner));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = rapport_contacts::serve(config, listener, Box::pin(std::future::pending()))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("owns tables"), "{err:#}");
    drop(db);
    let mut cluster = sqlx::PgConnection::connect(&rapport_testkit::admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {owner}")))
        .execute(&mut cluster)
        .await
        .unwrap();
}

#[tokio::test]
async fn test_controls_are_refused_unless_switched_on_and_need_a_service_credential() {
    use rapport_proto::testing::v1::AdvanceClockRequest;
    use rapport_proto::testing::v1::test_control_service_client::TestControlServiceClient;
    let advance = AdvanceClockRequest {
        by: Some(Duration::from_secs(60).try_into().unwrap()),
    };
    let service_grant = Grant {
        tenant_id: None,
        principal: "test".into(),
        scopes: vec![Scope::new("testing", Access::Write)],
    };

    let on = common::start().await;
    let err = TestControlServiceClient::new(on.server.tenant_channel(Uuid::now_v7()))
        .advance_clock(advance)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    TestControlServiceClient::new(on.server.channel_for(&service_grant))
        .advance_clock(advance)
        .await
        .unwrap();

    let db = rapport_testkit::TestDatabase::create().await;
    let mut config = common::config(&db);
    config.common.testing.test_controls = false;
    let off = rapport_testkit::TestServer::start(
        &rapport_contacts::SERVICE,
        move |listener, shutdown| rapport_contacts::serve(config, listener, shutdown),
    )
    .await;
    let err = TestControlServiceClient::new(off.channel_for(&service_grant))
        .advance_clock(advance)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(rapport_testkit::reason(&err), "TEST_CONTROL_DISABLED");
}

#[tokio::test]
async fn the_outbox_matches_its_one_definition() {
    let h = common::start().await;
    rapport_testkit::assert_outbox_matches_definition(&h.db, "contacts", "rapport_contacts").await;
}
