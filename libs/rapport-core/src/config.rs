//! Configuration shared by every service binary.
//!
//! Every setting is a command-line flag with an environment variable and a
//! default, so `--help` on any binary documents all of them in one place.
//! Each service flattens these groups into its own `clap::Parser`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::connection::ConnectionLimits;

/// How the gRPC server limits and times out work.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Longest time one call may take before it fails with DEADLINE_EXCEEDED
    /// (a shorter `grpc-timeout` from the client wins).
    #[arg(long, env = "RAPPORT_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Calls served at once across all connections; one more is refused at
    /// once with RESOURCE_EXHAUSTED (reason OVERLOADED) and a retry delay.
    #[arg(long, env = "RAPPORT_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "RAPPORT_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Largest request or response message, in bytes (requests counted
    /// after decompression).
    #[arg(long, env = "RAPPORT_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Largest request of a public method (one that takes no API key, such
    /// as a survey answer), in bytes after decompression.
    #[arg(long, env = "RAPPORT_MAX_PUBLIC_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_public_message_bytes: usize,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted.
    #[arg(long, env = "RAPPORT_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// A connection that has carried no call for this long is closed.
    #[arg(long, env = "RAPPORT_CONNECTION_IDLE_MS", default_value_t = 300_000)]
    pub connection_idle_ms: u64,
    /// How long in-flight calls may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "RAPPORT_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            idle_timeout: Duration::from_millis(self.connection_idle_ms),
        }
    }
}

/// Where the service's data lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL the service works with. Its role must be subject to
    /// row-level security (no superuser, no BYPASSRLS); the service refuses
    /// to start otherwise.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// PostgreSQL URL of a role allowed to create the service's schema and
    /// roles. When set, the service applies its migrations at start-up with
    /// it; when not, the schema must already be migrated.
    #[arg(long, env = "RAPPORT_MIGRATE_DATABASE_URL")]
    pub migrate_database_url: Option<String>,
    /// Apply the migrations with the migration URL, then exit: for a one-off
    /// migration Job or init container, so serving pods need no owner URL.
    #[arg(long, env = "RAPPORT_MIGRATE_ONLY")]
    pub migrate_only: bool,
    /// Largest number of pooled connections.
    #[arg(long, env = "RAPPORT_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Most of those connections one tenant's calls may hold at once;
    /// three quarters of the pool when unset, so that other tenants always
    /// find one.
    #[arg(long, env = "RAPPORT_DATABASE_MAX_CONNECTIONS_PER_TENANT")]
    pub database_max_connections_per_tenant: Option<u32>,
}

/// Who this process is, and whose credentials it accepts.
#[derive(Clone, Args)]
pub struct IdentityConfig {
    /// This process's Ed25519 private key (PKCS#8 PEM, as `rapportctl
    /// identity new` writes it): it signs the credentials of the calls it
    /// makes, under the service's name.
    #[arg(
        long,
        env = "RAPPORT_IDENTITY_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub identity_key: String,
    /// Who may sign the credentials this process accepts: a JSON list of
    /// `{"issuer": name, "keys": [public key, ...], "grants": [scope, ...]}`
    /// (`rapportctl identity public-key` prints a key's public half).
    #[arg(long, env = "RAPPORT_TRUSTED_ISSUERS")]
    pub trusted_issuers: String,
}

impl std::fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("trusted_issuers", &self.trusted_issuers)
            .finish_non_exhaustive()
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// Log format.
    #[arg(long, env = "RAPPORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, such as `info` or `rapport_contacts=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// OTLP/gRPC endpoint for traces, such as `http://127.0.0.1:4317`;
    /// traces are not exported when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl DatabaseConfig {
    /// The connections one tenant may hold at once.
    pub fn connections_per_tenant(&self) -> usize {
        let configured = self
            .database_max_connections_per_tenant
            .unwrap_or(self.database_max_connections * 3 / 4);
        configured.clamp(1, self.database_max_connections.max(1)) as usize
    }
}
