//! Pure gateway logic, no I/O: API key format and hashing, who a call comes
//! from, plain-HTTP routes, token buckets.

pub mod api_key;
pub mod client;
pub mod http_route;
pub mod rate_limit;
