//! The verified identity of a tenant-scoped call, as handlers see it.

use std::sync::Arc;

use uuid::Uuid;

use rapport_proto::common::v1::ErrorReason as Common;

use crate::credential::{Access, Grant};
use crate::error::{ApiError, ApiResult};

/// Who is calling, for which tenant. Built only from a verified credential
/// (see [`crate::middleware::AuthenticationLayer`]).
#[derive(Debug, Clone)]
pub struct TenantContext {
    pub tenant_id: Uuid,
    pub principal: String,
}

impl TenantContext {
    /// The caller's tenant, if its credential allows `access` to `service`.
    pub fn authorize<T>(
        request: &tonic::Request<T>,
        service: &str,
        access: Access,
    ) -> ApiResult<Self> {
        let grant = request.extensions().get::<Arc<Grant>>().ok_or_else(|| {
            ApiError::unauthenticated(Common::MissingCredential, "the call carries no credential")
        })?;
        if !grant.allows(service, access) {
            let needed = match access {
                Access::Read => "read",
                Access::Write => "write",
            };
            return Err(ApiError::permission_denied(
                Common::MissingScope,
                format!("this call needs the scope {service}:{needed}"),
            ));
        }
        let tenant_id = grant.tenant_id.ok_or_else(|| {
            ApiError::permission_denied(
                Common::TenantRequired,
                "this call must be made for a tenant",
            )
        })?;
        Ok(Self {
            tenant_id,
            principal: grant.principal.clone(),
        })
    }
}

/// The grant of a call made across all tenants (a service principal, such
/// as a change-feed consumer), if it allows `access` to `service`.
pub fn authorize_service<T>(
    request: &tonic::Request<T>,
    service: &str,
    access: Access,
) -> ApiResult<Arc<Grant>> {
    let grant = request
        .extensions()
        .get::<Arc<Grant>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::unauthenticated(Common::MissingCredential, "the call carries no credential")
        })?;
    if grant.tenant_id.is_some() || !grant.allows(service, access) {
        return Err(ApiError::permission_denied(
            Common::ServiceCredentialRequired,
            format!("this call needs a service credential with the {service} scope"),
        ));
    }
    Ok(grant)
}
