//! Test support shared by every service's tests: a fresh PostgreSQL
//! database per test, a service started in-process on an ephemeral port,
//! and channels that carry a valid internal credential for a tenant.
//!
//! The admin connection comes from `RAPPORT_TEST_DATABASE_URL`, else
//! `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`. It
//! must be allowed to create databases and roles. Services log in as their
//! own role without a password, as the local trust setup allows.

pub mod identity;
pub mod otlp;
pub mod postgres;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::FromArgMatches as _;
use rapport_core::credential::{Access, Grant, Identity, Outbound, Scope};
use rapport_core::service::{Config, ServiceInfo};
use rapport_proto::testing::v1::AdvanceClockRequest;
use rapport_proto::testing::v1::test_control_service_client::TestControlServiceClient;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

pub use identity::{identity, identity_key, sign_claims, trusted_issuers};

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

    /// A new database at `admin_url`, a copy of database `template` (file
    /// by file: quick for a large prepared data set), dropped with the
    /// value like any other.
    pub async fn copy_of(admin_url: &str, template: &str) -> anyhow::Result<Self> {
        let name = format!("rapport_test_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"
        )))
        .execute(&mut admin)
        .await?;
        Ok(Self {
            name,
            admin_url: admin_url.to_owned(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
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

/// The configuration `info`'s binary parses, for a test: an ephemeral
/// loopback port, the service's own role on `db` (migrating with the admin
/// role), its test identity and the test trust list, quiet logs, test
/// controls on and a
/// short drain; `args` add to or override these (`["--contacts-url", url]`).
/// Environment variables are not read, so a test does not depend on the
/// shell it runs in; defaults are the binary's own.
pub fn config<S: clap::Args>(info: &ServiceInfo, db: &TestDatabase, args: &[&str]) -> Config<S> {
    let database_url = db.url(Some(&info.role()));
    let migrate_url = db.url(None);
    let key = identity_key(info.name);
    let trust = trusted_issuers();
    let defaults = [
        "--listen-addr",
        "127.0.0.1:0",
        "--database-url",
        &database_url,
        "--migrate-database-url",
        &migrate_url,
        "--database-max-connections",
        "8",
        "--identity-key",
        &key,
        "--trusted-issuers",
        &trust,
        "--log-filter",
        "warn",
        "--shutdown-grace-ms",
        "5000",
        "--test-controls",
    ];
    let command = info
        .command::<S>()
        .mut_args(|arg| arg.env(None::<&'static str>));
    let binary = info.binary();
    let matches = command
        .try_get_matches_from(
            std::iter::once(binary.as_str())
                .chain(defaults)
                .chain(args.iter().copied()),
        )
        .unwrap_or_else(|error| panic!("test configuration of {binary}: {error}"));
    Config::<S>::from_arg_matches(&matches)
        .unwrap_or_else(|error| panic!("test configuration of {binary}: {error}"))
}

/// A server running in this process, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    /// The service it is: the audience of the credentials it is sent.
    info: &'static ServiceInfo,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts service `info` with `serve(listener, shutdown)` on an
    /// ephemeral loopback port and waits until it answers.
    pub async fn start<F, Fut>(info: &'static ServiceInfo, serve: F) -> Self
    where
        F: FnOnce(TcpListener, rapport_core::shutdown::Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Box::pin(Stopped(rx))));
        let mut server = Self::attach(info, addr, task).await;
        server.shutdown = Some(tx);
        server
    }

    /// Adopts service `info`, already started on `addr` by `task`.
    pub async fn attach(
        info: &'static ServiceInfo,
        addr: SocketAddr,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let server = Self {
            addr,
            channel,
            info,
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

    /// A channel whose calls carry a credential for `tenant` with every
    /// scope, as the gateway signs them.
    pub fn tenant_channel(&self, tenant: Uuid) -> InterceptedService<Channel, Outbound> {
        self.channel_for(&Grant {
            tenant_id: Some(tenant),
            principal: "test".to_owned(),
            scopes: vec![Scope::all()],
        })
    }

    /// A channel whose calls carry a credential for `grant`, as the
    /// gateway signs them.
    pub fn channel_for(&self, grant: &Grant) -> InterceptedService<Channel, Outbound> {
        self.credentialed(self.channel.clone(), identity("gateway"), grant)
    }

    /// `channel` (to this server), its calls carrying a credential for
    /// `grant` signed by `signer`.
    pub fn credentialed(
        &self,
        channel: Channel,
        signer: Arc<Identity>,
        grant: &Grant,
    ) -> InterceptedService<Channel, Outbound> {
        InterceptedService::new(
            channel,
            Outbound::new(signer, self.info.name, grant.clone()),
        )
    }

    /// Moves the server's clock forward by `by` (its test controls are on).
    pub async fn advance_clock(&self, by: Duration) {
        let grant = Grant {
            tenant_id: None,
            principal: "test-clock".to_owned(),
            scopes: vec![Scope::new("testing", Access::Write)],
        };
        let operator = self.credentialed(self.channel.clone(), identity("operator"), &grant);
        TestControlServiceClient::new(operator)
            .advance_clock(AdvanceClockRequest {
                by: Some(by.try_into().expect("a duration that fits")),
            })
            .await
            .unwrap_or_else(|status| panic!("advancing the clock of {}: {status:?}", self.addr));
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

/// Adds a fixed credential (or none) to every call: for tests of what a
/// service does with a missing, forged or foreign one.
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
struct Stopped(oneshot::Receiver<()>);

impl Future for Stopped {
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

/// Asserts that the outbox `schema`'s migrations left (tables, columns,
/// indexes, constraints, row-level security, grants to `role`) is what
/// `rapport_events::outbox::schema_sql` defines, so that no producer's
/// copy drifts from the one definition.
pub async fn assert_outbox_matches_definition(db: &TestDatabase, schema: &str, role: &str) {
    let definition = |schema: &str| rapport_events::outbox::schema_sql(schema, role);
    assert_tables_match(db, schema, role, &["outbox", "outbox_state"], definition).await;
}

/// [`assert_outbox_matches_definition`] for a consumer's tables (its
/// cursors and dead letters), against `rapport_events::consumer::schema_sql`.
pub async fn assert_consumer_matches_definition(db: &TestDatabase, schema: &str, role: &str) {
    let definition = |schema: &str| rapport_events::consumer::schema_sql(schema, role);
    assert_tables_match(
        db,
        schema,
        role,
        &["feed_cursors", "dead_letters"],
        definition,
    )
    .await;
}

/// Asserts that `tables` of `schema` are what `definition` creates in a
/// schema of its own.
async fn assert_tables_match(
    db: &TestDatabase,
    schema: &str,
    role: &str,
    tables: &[&str],
    definition: impl Fn(&str) -> String,
) {
    let reference = format!("reference_{}", Uuid::now_v7().simple());
    let mut admin = db.admin().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {reference}; {}",
        definition(&reference)
    )))
    .execute(&mut admin)
    .await
    .expect("applying the definition");
    let expected = describe_tables(&mut admin, &reference, role, tables).await;
    let actual = describe_tables(&mut admin, schema, role, tables).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {reference} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("dropping the reference schema");
    assert_eq!(
        actual, expected,
        "{tables:?} of {schema} differ from their one definition"
    );
}

/// The catalog's description of `tables`, with the schema name left out.
async fn describe_tables(
    conn: &mut PgConnection,
    schema: &str,
    role: &str,
    tables: &[&str],
) -> Vec<String> {
    // Each query reads `$1` (the schema) and `$2` (the tables); the grants
    // also `$3` (the role).
    const QUERIES: [&str; 6] = [
        "SELECT format('column %s.%s %s %s null=%s default=%s', table_name, column_name, \
             ordinal_position, data_type, is_nullable, coalesce(column_default, '-')) \
         FROM information_schema.columns WHERE table_schema = $1 \
           AND table_name = ANY($2) ORDER BY table_name, ordinal_position",
        "SELECT format('index %s %s', indexname, replace(indexdef, schemaname || '.', '')) \
         FROM pg_indexes WHERE schemaname = $1 AND tablename = ANY($2) \
         ORDER BY indexname",
        "SELECT format('constraint %s %s', c.conname, pg_get_constraintdef(c.oid)) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = ANY($2) ORDER BY c.conname",
        "SELECT format('rls %s enabled=%s forced=%s', c.relname, c.relrowsecurity, c.relforcerowsecurity) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) ORDER BY c.relname",
        "SELECT format('policy %s.%s %s using=%s check=%s', tablename, policyname, cmd, \
             coalesce(qual, '-'), coalesce(with_check, '-')) \
         FROM pg_policies WHERE schemaname = $1 AND tablename = ANY($2) \
         ORDER BY tablename, policyname",
        "SELECT format('grant %s %s', table_name, privilege_type) \
         FROM information_schema.role_table_grants WHERE table_schema = $1 AND grantee = $3 \
           AND table_name = ANY($2) ORDER BY table_name, privilege_type",
    ];
    let mut lines = Vec::new();
    for query_text in QUERIES {
        let mut query = sqlx::query_scalar(query_text).bind(schema).bind(tables);
        if query_text.contains("$3") {
            query = query.bind(role);
        }
        let rows: Vec<String> = query
            .fetch_all(&mut *conn)
            .await
            .expect("reading the catalog");
        lines.extend(rows);
    }
    lines
}

/// A transaction on `conn` in which row-level security shows `tenant`'s
/// rows, as a service's calls see them.
pub async fn begin_tenant(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.expect("beginning a transaction");
    rapport_core::db::set_local(&mut tx, &[("app.tenant_id", &tenant.to_string())])
        .await
        .expect("setting the tenant");
    tx
}
