//! What every service's API layer shares: who may call (read and write
//! scopes), etag checks, field masks, and streams of chunks read in short
//! transactions.

pub mod etag;
pub mod export;
pub mod field_mask;

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Status};

use crate::credential::Access;
use crate::error::ApiResult;
use crate::tenant::TenantContext;

/// What a server-streaming handler returns.
pub type ApiStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The scopes of one service's API: `<name>:read` for calls marked
/// `NO_SIDE_EFFECTS` in the proto, `<name>:write` for the others.
#[derive(Debug, Clone, Copy)]
pub struct ApiScope(pub &'static str);

impl ApiScope {
    /// The caller's tenant, if its credential may read this service.
    pub fn read<T>(self, request: &Request<T>) -> ApiResult<TenantContext> {
        TenantContext::authorize(request, self.0, Access::Read)
    }

    /// The caller's tenant, if its credential may write to this service.
    pub fn write<T>(self, request: &Request<T>) -> ApiResult<TenantContext> {
        TenantContext::authorize(request, self.0, Access::Write)
    }
}

/// `None` for an empty string: proto3 strings have no "unset".
pub fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}
