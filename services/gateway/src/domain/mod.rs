//! Pure gateway logic, no I/O: API key format and hashing, token buckets,
//! and which service and access each gRPC method needs.

pub mod api_key;
pub mod methods;
pub mod rate_limit;
