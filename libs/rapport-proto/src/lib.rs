//! Rust types and tonic clients/servers generated from `proto/`.
//!
//! Modules follow the proto packages: `rapport::contacts::v1`, and so on.
//! Besides the generated code, this file defines what the contract declares
//! beyond messages, implemented by the build for every package: the error
//! reasons ([`ErrorReason`]), the event payloads ([`EventPayload`]), and
//! one way to tune a server ([`GrpcServer`]).

use std::sync::OnceLock;

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/rapport.rs"));
}

pub use generated::rapport::*;

include!(concat!(env!("OUT_DIR"), "/contract.rs"));

/// The encoded `FileDescriptorSet` of every Rapport proto and its imports,
/// served by gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rapport_descriptor.bin"));

/// A value of a package's `ErrorReason` enum: why a call failed, sent as
/// the `google.rpc.ErrorInfo` reason. The reason on the wire is the value's
/// proto name, such as `CONTACT_NOT_FOUND`.
pub trait ErrorReason: Copy {
    fn name(self) -> &'static str;
}

/// A message that is the payload of change-feed events of one type, as its
/// `(rapport.api.v1.event_type)` option declares.
pub trait EventPayload: prost::Name + Default {
    const EVENT_TYPE: &'static str;
    /// The payload names resources by id only (`(rapport.api.v1.ids_only)`):
    /// erasing a person never redacts it.
    const IDS_ONLY: bool;
}

/// A generated gRPC server, so that every service gets the same message
/// limits and compression from one place (the service bootstrap).
pub trait GrpcServer: Sized {
    /// Limits request and response messages and speaks gzip both ways.
    fn tuned(self, max_request_bytes: usize, max_response_bytes: usize) -> Self;
}

/// Every Rapport message, service and option, with custom options kept
/// (prost's own types drop them): for code driven by the contract, such as
/// the gateway's method table and field masks.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the build wrote a valid descriptor set")
    })
}
