//! Rust types and tonic clients/servers generated from `proto/`.
//!
//! Modules follow the proto packages: `rapport::contacts::v1`, and so on.
//! Nothing here is written by hand except this file.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/rapport.rs"));
}

pub use generated::rapport::*;

/// The encoded `FileDescriptorSet` of every Rapport proto and its imports,
/// served by gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rapport_descriptor.bin"));
