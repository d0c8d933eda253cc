//! Pure gateway logic, no I/O: API key format and hashing, token buckets,
//! per-tenant in-flight limits, and which service and access each gRPC
//! method needs.

pub mod api_key;
pub mod in_flight;
pub mod methods;
pub mod rate_limit;
