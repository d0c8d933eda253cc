//! Pure gateway logic, no I/O: API key format and hashing, token buckets.

pub mod api_key;
pub mod rate_limit;
