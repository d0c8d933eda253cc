//! Starts the contacts service on its own database for one test.

#![allow(dead_code)] // Each test binary uses a different part of this.

use rapport_contacts::Config;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Contact, CreateContactRequest};
use rapport_testkit::{Credential, TestDatabase, TestServer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

pub type Client = ContactsServiceClient<InterceptedService<Channel, Credential>>;

/// Fields drop in order: the server stops before its database goes.
pub struct Harness {
    pub server: TestServer,
    pub db: TestDatabase,
}

pub fn config(db: &TestDatabase) -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        server: rapport_testkit::server_config(),
        database: db.config("rapport_contacts"),
        credential: rapport_testkit::credential_config(),
        telemetry: rapport_testkit::telemetry_config(),
        feed_retention_hours: 168,
    }
}

pub async fn start() -> Harness {
    let db = TestDatabase::create().await;
    let config = config(&db);
    let server = TestServer::start(move |listener, shutdown| async move {
        rapport_contacts::serve(&config, listener, shutdown).await
    })
    .await;
    Harness { server, db }
}

impl Harness {
    pub fn client(&self, tenant: Uuid) -> Client {
        ContactsServiceClient::new(self.server.tenant_channel(tenant))
    }
}

pub async fn create(client: &mut Client, contact: Contact) -> Contact {
    client
        .create_contact(CreateContactRequest {
            contact: Some(contact),
            request_id: String::new(),
        })
        .await
        .expect("create contact")
        .into_inner()
        .contact
        .unwrap()
}

pub fn person(email: &str) -> Contact {
    Contact {
        email: email.to_owned(),
        first_name: "Ana".to_owned(),
        ..Default::default()
    }
}
