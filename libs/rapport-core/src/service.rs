//! One way to build and run a service binary. A service declares what is
//! its own (a [`ServiceInfo`], its settings, its API, its feed and the feeds
//! it follows); everything else (configuration, telemetry, the database
//! pool and its migrations, the identity and the credentials it accepts,
//! the clock, the server and
//! its layers, background tasks that stop with it) is done here, the same
//! way for every service. A service's `main.rs` is one call to [`main`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser};
use rapport_proto::GrpcServer;
use rapport_proto::testing::v1::test_control_service_server::TestControlServiceServer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::clock::Clock;
use crate::config::{DatabaseConfig, IdentityConfig, ServerConfig, TelemetryConfig};
use crate::credential::{Identity, TrustList, Verifier};
use crate::db::Database;
use crate::server::ServeOptions;
use crate::shutdown::Shutdown;
use crate::testing::{TestControl, TestingConfig};

/// What names a service binary.
#[derive(Debug)]
pub struct ServiceInfo {
    /// Short name, such as `contacts`: the binary is `rapport-contacts`, its
    /// listen address `RAPPORT_CONTACTS_LISTEN_ADDR`, its database role
    /// `rapport_contacts`.
    pub name: &'static str,
    /// Where it listens unless configured otherwise.
    pub default_listen_addr: &'static str,
    /// Its schema's migrations.
    pub migrator: &'static Migrator,
}

impl ServiceInfo {
    /// `rapport-<name>`.
    pub fn binary(&self) -> String {
        format!("rapport-{}", self.name)
    }

    /// The database role the service logs in as.
    pub fn role(&self) -> String {
        format!("rapport_{}", self.name)
    }

    /// The command line of this service's binary with settings `S`: every
    /// setting a flag with an environment variable, `--help` listing all.
    pub fn command<S: Args>(&self) -> clap::Command {
        let env = format!("RAPPORT_{}_LISTEN_ADDR", self.name.to_uppercase());
        Config::<S>::command()
            .name(self.binary())
            .about(format!("Rapport {} service", self.name))
            .mut_arg("listen_addr", |arg| {
                arg.env(env)
                    .default_value(self.default_listen_addr)
                    .required(false)
            })
    }

    /// Parses the configuration from `args` (the first is the program name).
    pub fn parse<S: Args>(
        &self,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Result<Config<S>, clap::Error> {
        let matches = self.command::<S>().try_get_matches_from(args)?;
        Config::<S>::from_arg_matches(&matches)
    }
}

/// The settings every service binary shares.
#[derive(Debug, Clone, Args)]
pub struct ServiceConfig {
    /// Address to serve gRPC on.
    #[arg(long)]
    pub listen_addr: SocketAddr,
    /// The address clients reach Rapport at, through the gateway, such as
    /// `https://cx.example.com`: the gateway passes it on to the services
    /// behind its plain-HTTP routes, and services publish links (tracking,
    /// unsubscribe, survey pages) under it.
    #[arg(long, env = "RAPPORT_PUBLIC_BASE_URL")]
    pub public_base_url: Option<url::Url>,
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub identity: IdentityConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(flatten)]
    pub testing: TestingConfig,
}

/// A service binary's configuration: the shared settings and its own `S`.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Config<S: Args> {
    #[command(flatten)]
    pub common: ServiceConfig,
    #[command(flatten)]
    pub service: S,
}

/// The `main` of every service binary: parses its configuration, starts
/// telemetry, applies migrations and exits when asked to
/// (`--migrate-only`), else binds the listen address and runs `serve` until
/// SIGINT or SIGTERM.
pub fn main<S, F, Fut>(info: &'static ServiceInfo, serve: F) -> anyhow::Result<()>
where
    S: Args,
    F: FnOnce(Config<S>, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = info
        .parse::<S>(std::env::args_os())
        .unwrap_or_else(|error| error.exit());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let telemetry = crate::telemetry::init(info.binary(), &config.common.telemetry)?;
            let result = if config.common.database.migrate_only {
                crate::db::migrate_only(&config.common.database, info.migrator).await
            } else {
                match TcpListener::bind(config.common.listen_addr).await {
                    Ok(listener) => {
                        serve(config, listener, Box::pin(crate::shutdown::signal())).await
                    }
                    Err(error) => Err(error.into()),
                }
            };
            if let Err(error) = &result {
                tracing::error!(error = format!("{error:#}"), "{} failed", info.binary());
            }
            telemetry.shutdown().await;
            result
        })
}

/// A service being assembled, then served: its pool, identity and clock, the
/// gRPC services it answers, and the background tasks (sequencers, feed
/// consumers) that run while it serves and stop when it stops.
pub struct Service {
    info: &'static ServiceInfo,
    config: ServiceConfig,
    db: Database,
    identity: Arc<Identity>,
    clock: Clock,
    routes: Routes,
    names: Vec<&'static str>,
    options: ServeOptions,
    background: JoinSet<()>,
    stopping: CancellationToken,
    draining: CancellationToken,
}

/// How long background tasks get to finish after the server stopped.
const BACKGROUND_GRACE: Duration = Duration::from_secs(5);

impl Service {
    /// Connects to the database (migrating it when configured to) and
    /// prepares the service to answer calls with a verified credential.
    pub async fn start(info: &'static ServiceInfo, config: &ServiceConfig) -> anyhow::Result<Self> {
        let identity = Identity::from_pem(info.name, &config.identity.identity_key)
            .context("RAPPORT_IDENTITY_KEY")?;
        let trust: TrustList = config
            .identity
            .trusted_issuers
            .parse()
            .context("RAPPORT_TRUSTED_ISSUERS")?;
        let verifier = Verifier::new(info.name, &trust);
        let pool = crate::db::connect(&config.database, info.migrator)
            .await
            .with_context(|| format!("starting {}", info.binary()))?;
        let db = Database::new(
            pool,
            config.database.connections_per_tenant(),
            config.server.request_timeout(),
        );
        Ok(Self {
            info,
            config: config.clone(),
            db,
            options: ServeOptions::service(verifier),
            identity: Arc::new(identity),
            clock: Clock::system(),
            routes: Routes::default(),
            names: Vec::new(),
            background: JoinSet::new(),
            stopping: CancellationToken::new(),
            draining: CancellationToken::new(),
        })
    }

    pub fn info(&self) -> &'static ServiceInfo {
        self.info
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The service's database: its pool, shared between tenants.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Who this service is when it calls others: it signs the
    /// credentials of those calls (see `rapport_core::credential::Outbound`).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Serves a generated gRPC service, with the configured message limits
    /// and gzip, and reports it SERVING to health checks.
    pub fn add<S>(&mut self, service: S)
    where
        S: GrpcServer
            + tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let limit = self.config.server.max_message_bytes;
        self.add_untuned(service.tuned(limit, limit));
    }

    /// Serves a service as it is (one wrapped in an interceptor, say).
    pub fn add_untuned<S>(&mut self, service: S)
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = std::mem::take(&mut self.routes).add_service(service);
    }

    /// Changes how calls are admitted (the gateway authenticates API keys
    /// itself and speaks gRPC-Web).
    pub fn set_options(&mut self, options: ServeOptions) {
        self.options = options;
    }

    /// Replaces the routes, for a server that routes more than gRPC
    /// services (the gateway's fallback to its edge).
    pub fn map_routes(&mut self, map: impl FnOnce(Routes) -> Routes) {
        self.routes = map(std::mem::take(&mut self.routes));
    }

    /// The test controls of this process (refused unless its test settings
    /// are on), for a server that guards them itself. [`Service::serve`]
    /// adds them behind the credential check when it verifies credentials.
    pub fn test_control(&self) -> TestControlServiceServer<TestControl> {
        TestControlServiceServer::new(TestControl::new(
            self.clock.clone(),
            self.config.testing.test_controls,
        ))
    }

    /// Cancelled as soon as the service is asked to stop, before in-flight
    /// calls drain: streams that would never end (a change feed) end then,
    /// so the drain does not wait on them.
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Runs `task` while the service serves. Its token is cancelled when the
    /// server stops; the task then has a few seconds to finish before it is
    /// aborted, and it never outlives [`Service::serve`].
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(task(self.stopping.child_token()));
    }

    /// Serves on `listener` until `shutdown` completes and in-flight calls
    /// drained, then stops the background tasks and closes the pool.
    pub async fn serve(mut self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        if self.options.credential.is_some() {
            let control = self.test_control();
            self.add(control);
        }
        let draining = self.draining.clone();
        let shutdown = async move {
            shutdown.await;
            draining.cancel();
        };
        let result = crate::server::serve(
            listener,
            &self.config.server,
            self.options,
            self.routes,
            &self.names,
            shutdown,
        )
        .await;
        self.stopping.cancel();
        let finished = tokio::time::timeout(BACKGROUND_GRACE, async {
            while self.background.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("background tasks did not stop in time; aborting them");
            self.background.shutdown().await;
        }
        self.db.pool().close().await;
        result
    }
}
