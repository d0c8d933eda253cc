//! The suite the benchmarks drive: a fresh database, the contacts and
//! feedback services and the gateway in front of them, each its own release
//! process, and one tenant reachable both directly and through the gateway.

use std::time::Duration;

use rapport_client::{Auth, RapportClient, Transport};
use rapport_core::credential::{Grant, Outbound, Scope};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::gateway::v1::{CreateApiKeyRequest, CreateTenantRequest, Tenant};
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY, ServiceProcess};
use rapport_testkit::{TestDatabase, identity};
use tonic::transport::Endpoint;
use uuid::Uuid;

/// The processes, and the benchmark's tenant on them.
pub struct Stack {
    pub processes: ProcessStack,
    /// The benchmark tenant's API key, for calls through the gateway.
    pub api_key: String,
    /// Internal credentials for the same tenant, for direct calls to
    /// contacts, as the gateway signs them.
    pub direct_credential: Outbound,
    pub tenant: Uuid,
}

/// The processes by name: `stack.contacts`, `stack.gateway`, `stack.db`.
impl std::ops::Deref for Stack {
    type Target = ProcessStack;

    fn deref(&self) -> &ProcessStack {
        &self.processes
    }
}

impl Stack {
    pub async fn start(admin_url: &str) -> anyhow::Result<Self> {
        Self::start_with(admin_url, &[]).await
    }

    /// [`Stack::start`] with `extra` settings for every process.
    pub async fn start_with(
        admin_url: &str,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let db = TestDatabase::create_at(admin_url).await;
        let mut settings = vec![("RAPPORT_DATABASE_MAX_CONNECTIONS", "32".to_owned())];
        settings.extend_from_slice(extra);
        let processes = ProcessStack::start(db, &settings).await?;
        let gateway = &processes.gateway;

        let operator = RapportClient::with_channel(
            gateway.channel.clone(),
            Auth::ApiKey(STACK_OPERATOR_KEY.to_owned()),
            Duration::from_secs(10),
        )?;
        let tenant = Tenant {
            display_name: "bench".into(),
            rate_limit_per_second: 1_000_000,
            rate_limit_burst: 1_000_000,
            ..Default::default()
        };
        let tenant = operator
            .gateway_admin()
            .create_tenant(CreateTenantRequest {
                tenant: Some(tenant),
            })
            .await?
            .into_inner()
            .tenant
            .unwrap_or_default();
        let key = operator
            .gateway_admin()
            .create_api_key(CreateApiKeyRequest {
                tenant_id: tenant.id.clone(),
                display_name: "bench".into(),
                scopes: vec!["contacts:write".into(), "feedback:write".into()],
                expire_time: None,
            })
            .await?
            .into_inner();
        let tenant: Uuid = tenant.id.parse()?;
        let direct_credential = Outbound::new(
            identity("gateway"),
            "contacts",
            Grant {
                tenant_id: Some(tenant),
                principal: "bench".into(),
                scopes: vec![Scope::all()],
            },
        );
        Ok(Self {
            processes,
            api_key: key.secret,
            direct_credential,
            tenant,
        })
    }

    /// `connections` clients of the contacts service, straight to it.
    pub async fn direct(
        &self,
        connections: usize,
    ) -> anyhow::Result<Vec<ContactsServiceClient<Transport>>> {
        clients(
            &self.contacts,
            Auth::Internal(self.direct_credential.clone()),
            connections,
        )
        .await
    }

    /// `connections` clients of the contacts service, through the gateway.
    pub async fn through_gateway(
        &self,
        connections: usize,
    ) -> anyhow::Result<Vec<ContactsServiceClient<Transport>>> {
        clients(
            &self.gateway,
            Auth::ApiKey(self.api_key.clone()),
            connections,
        )
        .await
    }
}

async fn clients(
    process: &ServiceProcess,
    auth: Auth,
    connections: usize,
) -> anyhow::Result<Vec<ContactsServiceClient<Transport>>> {
    Ok(connect(process, auth, connections)
        .await?
        .iter()
        .map(RapportClient::contacts)
        .collect())
}

/// `connections` clients of `process`, each on its own HTTP/2 connection.
pub async fn connect(
    process: &ServiceProcess,
    auth: Auth,
    connections: usize,
) -> anyhow::Result<Vec<RapportClient>> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(format!("http://{}", process.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(RapportClient::with_channel(
            channel,
            auth.clone(),
            Duration::from_secs(30),
        )?);
    }
    Ok(clients)
}
