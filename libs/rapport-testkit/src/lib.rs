//! Test support shared by every service's tests: a fresh PostgreSQL
//! database per test, a service started in-process on an ephemeral port,
//! and channels that carry a valid internal credential for a tenant.
//!
//! The admin connection comes from `RAPPORT_TEST_DATABASE_URL`, else
//! `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`. It
//! must be allowed to create databases and roles. Services log in as their
//! own role without a password, as the local trust setup allows.

use std::net::SocketAddr;
use std::time::Duration;

use rapport_core::config::{CredentialConfig, DatabaseConfig, ServerConfig, TelemetryConfig};
use rapport_core::credential::{CredentialKey, Grant, Scope};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

/// The credential secret every test server verifies with.
pub const TEST_CREDENTIAL_SECRET: &str = "rapport-test-credential-secret-0123456789";

pub fn admin_url() -> String {
    std::env::var("RAPPORT_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDatabase {
    name: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_at(&admin_url()).await
    }

    /// A fresh database on the server that `admin_url` administers.
    pub async fn create_at(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("rapport_test_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        Self { name, admin_url }
    }

    /// The URL of this database as `user` (the admin user when `None`).
    pub fn url(&self, user: Option<&str>) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("the admin URL is a URL");
        url.set_path(&self.name);
        if let Some(user) = user {
            url.set_username(user).expect("a PostgreSQL URL has a user");
            url.set_password(None)
                .expect("a PostgreSQL URL has a password slot");
        }
        url.to_string()
    }

    /// Configuration that migrates with the admin role and serves as `role`.
    pub fn config(&self, role: &str) -> DatabaseConfig {
        DatabaseConfig {
            database_url: self.url(Some(role)),
            migrate_database_url: Some(self.url(None)),
            migrate_only: false,
            database_max_connections: 8,
        }
    }

    /// A direct connection as the admin role, for tests that inspect rows.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url(None))
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async code; a small runtime of its own does the work.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

pub fn credential_config() -> CredentialConfig {
    CredentialConfig {
        credential_secret: TEST_CREDENTIAL_SECRET.to_owned(),
    }
}

pub fn telemetry_config() -> TelemetryConfig {
    TelemetryConfig {
        log_format: rapport_core::config::LogFormat::Text,
        log_filter: "warn".to_owned(),
        otlp_endpoint: None,
    }
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        shutdown_grace_ms: 5_000,
        ..ServerConfig::default()
    }
}

/// A server running in this process, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    key: CredentialKey,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts `serve(listener, shutdown)` on an ephemeral loopback port and
    /// waits until it answers.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Shutdown(rx)));
        let mut server = Self::attach(addr, task).await;
        server.shutdown = Some(tx);
        server
    }

    /// Adopts a server already started on `addr` by `task`.
    pub async fn attach(addr: SocketAddr, task: JoinHandle<anyhow::Result<()>>) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let server = Self {
            addr,
            channel,
            key: CredentialKey::new(TEST_CREDENTIAL_SECRET)
                .expect("the test secret is long enough"),
            shutdown: None,
            task: Some(task),
        };
        server.wait_until_serving().await;
        server
    }

    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        for _ in 0..300 {
            let mut health = HealthClient::new(self.channel.clone());
            if health.check(HealthCheckRequest::default()).await.is_ok() {
                return;
            }
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the test server at {} did not start serving", self.addr);
    }

    /// A channel whose calls carry a credential for `tenant` with every scope.
    pub fn tenant_channel(&self, tenant: Uuid) -> InterceptedService<Channel, Credential> {
        self.channel_for(&Grant {
            tenant_id: Some(tenant),
            principal: "test".to_owned(),
            scopes: vec![Scope::all()],
        })
    }

    /// A channel whose calls carry a credential for `grant`.
    pub fn channel_for(&self, grant: &Grant) -> InterceptedService<Channel, Credential> {
        let token = self.key.mint(grant, Duration::from_secs(3600));
        InterceptedService::new(self.channel.clone(), Credential(Some(token)))
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Adds a fixed credential (or none) to every call.
#[derive(Clone)]
pub struct Credential(Option<String>);

impl Credential {
    pub fn raw(token: Option<String>) -> Self {
        Self(token)
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(token.as_str())
                .map_err(|_| tonic::Status::internal("bad token"))?;
            request
                .metadata_mut()
                .insert(rapport_core::credential::CREDENTIAL_HEADER, value);
        }
        Ok(request)
    }
}

/// The shutdown signal handed to a test server: completes when the test
/// asks the server to stop, or drops it.
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// The field names of an INVALID_ARGUMENT status's violations; panics on
/// any other code.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The `google.rpc.ErrorInfo.reason` of a status; empty without one.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}
