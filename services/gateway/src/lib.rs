//! The gateway: the one door into Rapport. It authenticates API keys,
//! isolates tenants, limits rates, and routes gRPC to the services by the
//! `rapport.<service>.v1` package of the called method, and plain HTTP by a
//! route table of path prefixes.

pub mod admission;
pub mod api;
pub mod auth;
pub mod cors;
pub mod domain;
pub mod edge;
pub mod store;
pub mod upstream;
pub mod web;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use rapport_core::limits::Check;
use rapport_core::middleware::CallTrace;
use rapport_core::server::{ServeOptions, reflection_services};
use rapport_core::service::{self, Service, ServiceInfo};
use rapport_core::shutdown::Shutdown;
use rapport_proto::events::v1::dead_letter_service_server::SERVICE_NAME as DEAD_LETTER_SERVICE_NAME;
use rapport_proto::events::v1::event_feed_service_server::SERVICE_NAME as FEED_SERVICE_NAME;
use rapport_proto::gateway::v1::gateway_admin_service_server::{
    GatewayAdminServiceServer, SERVICE_NAME,
};
use rapport_proto::testing::v1::test_control_service_server::SERVICE_NAME as TEST_CONTROL_SERVICE_NAME;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tracing::Instrument as _;

use crate::admission::Admissions;
use crate::auth::{AuthLimits, Authenticator};
use crate::domain::http_route::{HttpRoute, RouteTable};
use crate::domain::rate_limit::Quota;
use crate::edge::{Edge, EdgeInner, LocalService};
use crate::upstream::Upstream;
use crate::web::WebRoutes;
use rapport_core::contract::MethodTable;
use rapport_core::shares::TenantShares;

/// This service's migrations, applied to the `gateway` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub static SERVICE: ServiceInfo = ServiceInfo {
    name: "gateway",
    default_listen_addr: "0.0.0.0:50051",
    migrator: &MIGRATOR,
};

/// Longest allowed lifetime of a cached key lookup: revocations must bite
/// within a second.
const MAX_AUTH_CACHE_MS: u64 = 1000;

/// What the gateway adds to the shared settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Services behind the gateway, as `name=url` pairs separated by commas,
    /// such as `contacts=http://contacts:50061`.
    #[arg(long, env = "RAPPORT_UPSTREAMS", value_delimiter = ',', value_parser = parse_upstream)]
    pub upstreams: Vec<(String, String)>,
    /// The key admin calls need (at least 32 characters).
    #[arg(long, env = "RAPPORT_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: String,
    /// Default calls per second per tenant (per gateway replica).
    #[arg(long, env = "RAPPORT_TENANT_RATE_PER_SECOND", default_value_t = 1000)]
    pub tenant_rate_per_second: u32,
    /// Default burst per tenant.
    #[arg(long, env = "RAPPORT_TENANT_RATE_BURST", default_value_t = 2000)]
    pub tenant_rate_burst: u32,
    /// Calls per second per API key (per gateway replica).
    #[arg(long, env = "RAPPORT_KEY_RATE_PER_SECOND", default_value_t = 1000)]
    pub key_rate_per_second: u32,
    /// Burst per API key.
    #[arg(long, env = "RAPPORT_KEY_RATE_BURST", default_value_t = 2000)]
    pub key_rate_burst: u32,
    /// Public calls (survey answers) per second from one client address
    /// (per gateway replica).
    #[arg(long, env = "RAPPORT_PUBLIC_RATE_PER_SECOND", default_value_t = 20)]
    pub public_rate_per_second: u32,
    /// Burst of public calls from one client address.
    #[arg(long, env = "RAPPORT_PUBLIC_RATE_BURST", default_value_t = 50)]
    pub public_rate_burst: u32,
    /// Public calls per second with one token: an invitation, or a survey's
    /// anonymous link, which all its respondents share (per gateway replica).
    #[arg(
        long,
        env = "RAPPORT_PUBLIC_TOKEN_RATE_PER_SECOND",
        default_value_t = 50
    )]
    pub public_token_rate_per_second: u32,
    /// Burst of public calls with one token.
    #[arg(long, env = "RAPPORT_PUBLIC_TOKEN_RATE_BURST", default_value_t = 100)]
    pub public_token_rate_burst: u32,
    /// Calls per second from one client address that need an API key looked
    /// up (a key not cached) or fail authentication; beyond, refused before
    /// the database is asked (per gateway replica).
    #[arg(
        long,
        env = "RAPPORT_UNAUTHENTICATED_RATE_PER_SECOND",
        default_value_t = 20
    )]
    pub unauthenticated_rate_per_second: u32,
    /// Burst of such calls from one client address.
    #[arg(
        long,
        env = "RAPPORT_UNAUTHENTICATED_RATE_BURST",
        default_value_t = 100
    )]
    pub unauthenticated_rate_burst: u32,
    /// API key lookups running at once; one more waits a few milliseconds
    /// for a slot, then fails (UNAVAILABLE, `AUTH_BUSY`).
    #[arg(long, env = "RAPPORT_AUTH_MAX_LOOKUPS", default_value_t = 8)]
    pub auth_max_lookups: usize,
    /// Plain-HTTP routes: `<path prefix>=<service>:<public|keyed>` separated
    /// by commas, such as `/s/=feedback:public`; each service is one of
    /// RAPPORT_UPSTREAMS. The longest matching prefix answers.
    #[arg(long, env = "RAPPORT_HTTP_ROUTES", value_delimiter = ',')]
    pub http_routes: Vec<HttpRoute>,
    /// Proxies in front of the gateway whose `x-forwarded-for` is believed,
    /// as addresses or CIDR blocks separated by commas; the client is then
    /// the nearest address they recorded that is not one of them. None by
    /// default: the client is the peer.
    #[arg(long, env = "RAPPORT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = domain::client::parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Calls one tenant may have in flight through one gateway replica (and
    /// public calls, all together).
    #[arg(long, env = "RAPPORT_TENANT_MAX_IN_FLIGHT", default_value_t = 256)]
    pub tenant_max_in_flight: u32,
    /// How long a key lookup is trusted, in milliseconds (at most 1000): the
    /// bound on how late a revocation or suspension can bite.
    #[arg(long, env = "RAPPORT_AUTH_CACHE_MS", default_value_t = 500)]
    pub auth_cache_ms: u64,
    /// Origins whose pages may call the gateway from the browser
    /// (gRPC-Web), as `scheme://host[:port]` separated by commas. None by
    /// default: cross-origin calls are refused by the browser.
    #[arg(long, env = "RAPPORT_CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = cors::parse_origin)]
    pub cors_allowed_origins: Vec<http::HeaderValue>,
    /// Serve gRPC server reflection of every service (to callers with a key).
    #[arg(long, env = "RAPPORT_GATEWAY_REFLECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub reflection: bool,
}

/// Configuration of the gateway (`rapport-gateway --help`).
pub type Config = service::Config<Settings>;

fn parse_upstream(text: &str) -> Result<(String, String), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not name=url"))?;
    url.parse::<http::Uri>()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    Ok((name.trim().to_owned(), url.trim().to_owned()))
}

/// Serves the gateway on `listener` until `shutdown`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = &config.service;
    anyhow::ensure!(
        settings.auth_cache_ms <= MAX_AUTH_CACHE_MS,
        "RAPPORT_AUTH_CACHE_MS must be at most {MAX_AUTH_CACHE_MS}"
    );
    let operator = api::OperatorCheck::new(&settings.operator_key)?;
    let mut service = Service::start(&SERVICE, &config.common).await?;
    let db = service.db().clone();
    let clock = service.clock().clone();

    let reflection = if settings.reflection {
        let (v1, v1alpha) = reflection_services()?;
        Some(LocalService::new(Routes::new(v1).add_service(v1alpha)))
    } else {
        None
    };
    let authenticator = Authenticator::new(
        db.clone(),
        service.identity().clone(),
        settings
            .upstreams
            .iter()
            .map(|(name, _)| name.clone())
            .collect(),
        clock.clone(),
        Quota {
            per_second: settings.tenant_rate_per_second,
            burst: settings.tenant_rate_burst,
        },
        AuthLimits {
            cache_ttl: Duration::from_millis(settings.auth_cache_ms),
            unauthenticated: Quota {
                per_second: settings.unauthenticated_rate_per_second,
                burst: settings.unauthenticated_rate_burst,
            },
            max_lookups: settings.auth_max_lookups,
        },
    );
    let admissions = Admissions::new(
        authenticator,
        Quota {
            per_second: settings.key_rate_per_second,
            burst: settings.key_rate_burst,
        },
        Quota {
            per_second: settings.public_rate_per_second,
            burst: settings.public_rate_burst,
        },
        Quota {
            per_second: settings.public_token_rate_per_second,
            burst: settings.public_token_rate_burst,
        },
        TenantShares::new(settings.tenant_max_in_flight as usize),
    );
    let edge = Edge::new(EdgeInner {
        admissions,
        // The admin service is the gateway's own; change feeds and dead
        // letters are internal; test controls are each process's own.
        methods: MethodTable::new(&[
            SERVICE_NAME,
            FEED_SERVICE_NAME,
            DEAD_LETTER_SERVICE_NAME,
            TEST_CONTROL_SERVICE_NAME,
        ]),
        upstreams: upstream_channels(&settings.upstreams)?,
        reflection,
        trusted_proxies: settings.trusted_proxies.clone(),
        web: web_routes(&config)?,
    });

    let admin = GatewayAdminServiceServer::new(api::AdminApi::new(db, clock));
    service.add_untuned(InterceptedService::new(
        rapport_proto::GrpcServer::tuned(
            admin,
            config.common.server.max_message_bytes,
            config.common.server.max_message_bytes,
        ),
        operator.clone(),
    ));
    service.add_untuned(InterceptedService::new(service.test_control(), operator));
    service.map_routes(|routes| {
        Routes::from(
            routes
                .into_axum_router()
                .route_layer(axum::middleware::from_fn(in_own_trace))
                .fallback_service(edge),
        )
    });
    // Keys are checked by the edge; the services check what they own.
    service.set_options(ServeOptions {
        credential: None,
        reflection: false,
        grpc_web: true,
        cors: cors::layer(&settings.cors_allowed_origins),
        check: Check::Bytes,
    });
    service.serve(listener, shutdown).await
}

/// Runs the gateway's own calls (admin, test controls) in a trace of their
/// own, linked to the caller's: the operator key is checked inside them.
async fn in_own_trace(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = request
        .extensions()
        .get::<CallTrace>()
        .map_or_else(tracing::Span::current, CallTrace::distrust_caller);
    next.run(request).instrument(span).await
}

/// The plain-HTTP routes, each to a configured service.
fn web_routes(config: &Config) -> anyhow::Result<WebRoutes> {
    let settings = &config.service;
    for route in &settings.http_routes {
        anyhow::ensure!(
            settings
                .upstreams
                .iter()
                .any(|(name, _)| *name == route.service),
            "RAPPORT_HTTP_ROUTES: {} goes to {}, which is not in RAPPORT_UPSTREAMS",
            route.prefix,
            route.service
        );
    }
    let table = RouteTable::new(settings.http_routes.clone())
        .map_err(|e| anyhow::anyhow!("RAPPORT_HTTP_ROUTES: {e}"))?;
    let public_base = match &config.common.public_base_url {
        Some(url) => {
            let host = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                (None, _) => anyhow::bail!("RAPPORT_PUBLIC_BASE_URL {url} names no host"),
            };
            Some((host.parse()?, url.scheme().parse()?))
        }
        None => None,
    };
    Ok(WebRoutes {
        table,
        max_public_bytes: config.common.server.max_public_message_bytes,
        max_keyed_bytes: config.common.server.max_message_bytes,
        public_base,
    })
}

/// The upstream of each configured service; connections open on first use.
fn upstream_channels(upstreams: &[(String, String)]) -> anyhow::Result<HashMap<String, Upstream>> {
    upstreams
        .iter()
        .map(|(name, url)| {
            let upstream = Upstream::new(url).with_context(|| format!("upstream {name}"))?;
            Ok((name.clone(), upstream))
        })
        .collect()
}
