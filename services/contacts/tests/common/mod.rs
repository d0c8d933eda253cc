//! Starts the contacts service on its own database for one test.

#![allow(dead_code)] // Each test binary uses a different part of this.

use rapport_contacts::Config;
use rapport_core::credential::Outbound;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Contact, CreateContactRequest, GetContactRequest};
use rapport_testkit::{TestDatabase, TestServer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

pub type Client = ContactsServiceClient<InterceptedService<Channel, Outbound>>;

/// Fields drop in order: the server stops before its database goes.
pub struct Harness {
    pub server: TestServer,
    pub db: TestDatabase,
}

pub fn config(db: &TestDatabase) -> Config {
    rapport_testkit::config(&rapport_contacts::SERVICE, db, &[])
}

pub async fn start() -> Harness {
    let db = TestDatabase::create().await;
    let config = config(&db);
    let server = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
        rapport_contacts::serve(config, listener, shutdown)
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

pub fn attrs(json: serde_json::Value) -> Option<prost_types::Struct> {
    Some(rapport_core::convert::json_to_struct(
        json.as_object().unwrap(),
    ))
}

pub async fn get(client: &mut Client, id: &str) -> Result<Contact, tonic::Status> {
    client
        .get_contact(GetContactRequest { id: id.to_owned() })
        .await
        .map(|r| r.into_inner().contact.unwrap())
}
