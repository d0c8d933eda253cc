//! What every Rapport service shares: the service bootstrap (configuration,
//! telemetry, server, background tasks), the clock, the internal credential
//! and tenant context, the error type, the API helpers, and database
//! helpers (pool, migrations, tenant transactions, idempotency, pagination).

pub mod api;
pub mod channel;
pub mod clock;
pub mod config;
pub mod connection;
pub mod contract;
pub mod convert;
pub mod credential;
pub mod db;
pub mod deadline;
pub mod error;
pub mod idempotency;
pub mod io;
pub mod limits;
pub mod middleware;
pub mod pagination;
pub mod request_id;
pub mod server;
pub mod service;
pub mod shares;
pub mod shed;
pub mod shutdown;
pub mod telemetry;
pub mod tenant;
pub mod testing;
pub mod wire;

pub use clock::Clock;
pub use credential::{Access, Grant, Identity, Scope};
pub use error::{ApiError, ApiResult, Violations};
pub use tenant::TenantContext;
