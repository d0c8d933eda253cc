//! The whole suite on loopback for end-to-end tests: a database, the
//! contacts, feedback and segmentation services, and the gateway in front
//! of them. Tests talk to the gateway only, as a client would.

use std::time::Duration;

use rapport_client::{Auth, RapportClient};
use rapport_proto::contacts::v1::{Contact, CreateContactRequest};
use rapport_proto::gateway::v1::{CreateApiKeyRequest, CreateTenantRequest, Tenant};
use rapport_testkit::{TestDatabase, TestServer};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

pub const OPERATOR_KEY: &str = "rapport-test-operator-key-0123456789abcdef";

/// Fields drop in order: the gateway, then the services, then the database.
pub struct Suite {
    pub gateway: TestServer,
    pub segmentation: TestServer,
    pub feedback: TestServer,
    pub contacts: TestServer,
    pub db: TestDatabase,
}

/// A tenant with an API key.
pub struct TenantKey {
    pub tenant_id: String,
    pub key_id: String,
    pub secret: String,
}

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the suite with `adjust` applied to the gateway's configuration;
    /// its upstreams point at the services unless `adjust` changes them.
    pub async fn start_with(adjust: impl FnOnce(&mut rapport_gateway::Config)) -> Self {
        let db = TestDatabase::create().await;
        let contacts_config = rapport_testkit::config(&rapport_contacts::SERVICE, &db, &[]);
        let contacts = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
            rapport_contacts::serve(contacts_config, listener, shutdown)
        })
        .await;
        let contacts_url = format!("http://{}", contacts.addr);
        let feedback_config = rapport_testkit::config(
            &rapport_feedback::SERVICE,
            &db,
            &["--contacts-url", &contacts_url],
        );
        let feedback = TestServer::start(&rapport_feedback::SERVICE, move |listener, shutdown| {
            rapport_feedback::serve(feedback_config, listener, shutdown)
        })
        .await;
        let feedback_url = format!("http://{}", feedback.addr);
        let segmentation_config = rapport_testkit::config(
            &rapport_segmentation::SERVICE,
            &db,
            &[
                "--contacts-url",
                &contacts_url,
                "--feedback-url",
                &feedback_url,
            ],
        );
        let segmentation =
            TestServer::start(&rapport_segmentation::SERVICE, move |listener, shutdown| {
                rapport_segmentation::serve(segmentation_config, listener, shutdown)
            })
            .await;
        let upstreams = format!(
            "contacts=http://{},feedback=http://{},segmentation=http://{}",
            contacts.addr, feedback.addr, segmentation.addr
        );
        // Limits far above what a test needs, unless the test sets its own.
        let mut gateway_config: rapport_gateway::Config = rapport_testkit::config(
            &rapport_gateway::SERVICE,
            &db,
            &[
                "--upstreams",
                &upstreams,
                "--operator-key",
                OPERATOR_KEY,
                "--tenant-rate-per-second",
                "10000",
                "--tenant-rate-burst",
                "10000",
                "--key-rate-per-second",
                "10000",
                "--key-rate-burst",
                "10000",
                "--public-rate-per-second",
                "10000",
                "--public-rate-burst",
                "10000",
                "--public-token-rate-per-second",
                "10000",
                "--public-token-rate-burst",
                "10000",
                "--unauthenticated-rate-per-second",
                "10000",
                "--unauthenticated-rate-burst",
                "10000",
            ],
        );
        adjust(&mut gateway_config);
        let gateway = TestServer::start(&rapport_gateway::SERVICE, move |listener, shutdown| {
            rapport_gateway::serve(gateway_config, listener, shutdown)
        })
        .await;
        Self {
            gateway,
            segmentation,
            feedback,
            contacts,
            db,
        }
    }

    /// A client of the gateway that presents `key`.
    pub fn client(&self, key: &str) -> RapportClient {
        keyed_client(self.gateway.channel.clone(), key)
    }

    /// A channel to the gateway from loopback address `from` (such as
    /// `127.0.0.2`): another client, as the gateway's limits per client
    /// address count it.
    pub fn channel_from(&self, from: &str) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.gateway.addr))
            .expect("a valid URI")
            .local_address(Some(from.parse().expect("a loopback address")))
            .connect_lazy()
    }

    /// A client with the operator key, for admin calls.
    pub fn operator(&self) -> RapportClient {
        self.client(OPERATOR_KEY)
    }

    /// A new tenant (with `tenant`'s limits) and a key with `scopes`.
    pub async fn tenant(&self, tenant: Tenant, scopes: &[&str]) -> TenantKey {
        create_tenant(&self.operator(), tenant, scopes).await
    }

    /// A new key of tenant `tenant_id` with `scopes`.
    pub async fn key(&self, tenant_id: &str, scopes: &[&str]) -> TenantKey {
        create_key(&self.operator(), tenant_id, scopes).await
    }
}

/// A new tenant (with `tenant`'s limits) and a key with `scopes`, made by
/// `operator` (a client with the operator key).
/// A client that calls over `channel` (a gateway's, in-process or a
/// process) presenting `key`, with the tests' deadline.
pub fn keyed_client(channel: Channel, key: &str) -> RapportClient {
    RapportClient::with_channel(
        channel,
        Auth::ApiKey(key.to_owned()),
        Duration::from_secs(10),
    )
    .expect("a valid key header")
}

/// A contact with `email` only, created through `client`.
pub async fn create_contact(client: &RapportClient, email: &str) -> Contact {
    client
        .contacts()
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                email: email.to_owned(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create a contact")
        .into_inner()
        .contact
        .expect("the created contact")
}

pub async fn create_tenant(operator: &RapportClient, tenant: Tenant, scopes: &[&str]) -> TenantKey {
    let created = operator
        .gateway_admin()
        .create_tenant(CreateTenantRequest {
            tenant: Some(tenant),
        })
        .await
        .expect("create tenant")
        .into_inner()
        .tenant
        .expect("a tenant");
    create_key(operator, &created.id, scopes).await
}

/// A new key of tenant `tenant_id` with `scopes`, made by `operator`.
pub async fn create_key(operator: &RapportClient, tenant_id: &str, scopes: &[&str]) -> TenantKey {
    let response = operator
        .gateway_admin()
        .create_api_key(CreateApiKeyRequest {
            tenant_id: tenant_id.to_owned(),
            display_name: "e2e".to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expire_time: None,
        })
        .await
        .expect("create key")
        .into_inner();
    let key = response.api_key.expect("a key");
    TenantKey {
        tenant_id: tenant_id.to_owned(),
        key_id: key.id,
        secret: response.secret,
    }
}

/// A tenant with default limits and a display name that says which test made it.
pub fn named(name: &str) -> Tenant {
    Tenant {
        display_name: name.to_owned(),
        ..Default::default()
    }
}

/// An id no tenant has.
pub fn unknown_id() -> String {
    Uuid::now_v7().to_string()
}
