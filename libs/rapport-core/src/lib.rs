//! What every Rapport service shares: configuration, telemetry, the server
//! bootstrap, the internal credential and tenant context, the error type,
//! and database helpers (pool, migrations, tenant transactions,
//! idempotency, pagination).

pub mod config;
pub mod convert;
pub mod credential;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod io;
pub mod middleware;
pub mod pagination;
pub mod request_id;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tenant;

pub use credential::{Access, CredentialKey, Grant, Scope};
pub use error::{ApiError, ApiResult, Violations};
pub use tenant::TenantContext;
