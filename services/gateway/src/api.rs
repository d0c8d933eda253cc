//! `rapport.gateway.v1.GatewayAdminService`: tenants and API keys, for the
//! operator only.

use std::sync::Arc;

use rapport_core::convert::to_datetime;
use rapport_core::credential::{Grant, Scope};
use rapport_core::db::Database;
use rapport_core::pagination::Page;
use rapport_core::{ApiError, ApiResult, Clock, Violations};
use rapport_proto::gateway::v1::gateway_admin_service_server::GatewayAdminService;
use rapport_proto::gateway::v1::*;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::api_key;
use crate::store::{self, NewKeyRow};

const MAX_NAME_CHARS: usize = 200;
const MAX_SCOPES: usize = 32;

/// Admits a call only with the operator key (`authorization: Bearer ...`),
/// compared in constant time, and gives it the operator's grant (every
/// scope, no tenant), as services see a service credential.
#[derive(Clone)]
pub struct OperatorCheck {
    key_hash: [u8; 32],
}

impl OperatorCheck {
    pub fn new(operator_key: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            operator_key.len() >= 32,
            "the operator key must be at least 32 characters"
        );
        Ok(Self {
            key_hash: Sha256::digest(operator_key.as_bytes()).into(),
        })
    }
}

impl tonic::service::Interceptor for OperatorCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        let presented_hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matches: bool = presented_hash.ct_eq(&self.key_hash).into();
        if matches {
            request.extensions_mut().insert(Arc::new(Grant {
                tenant_id: None,
                principal: "operator".to_owned(),
                scopes: vec![Scope::all()],
            }));
            Ok(request)
        } else {
            Err(ApiError::unauthenticated(
                ErrorReason::OperatorKeyRequired,
                "admin calls need the operator key",
            )
            .into())
        }
    }
}

pub struct AdminApi {
    db: Database,
    clock: Clock,
}

impl AdminApi {
    pub fn new(db: Database, clock: Clock) -> Self {
        Self { db, clock }
    }
}

#[tonic::async_trait]
impl GatewayAdminService for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        let tenant = request.into_inner().tenant.unwrap_or_default();
        let mut violations = Violations::default();
        check_name(
            &tenant.display_name,
            "tenant.display_name",
            true,
            &mut violations,
        );
        if tenant.rate_limit_per_second < 0 {
            violations.add("tenant.rate_limit_per_second", "must not be negative");
        }
        if tenant.rate_limit_burst < 0 {
            violations.add("tenant.rate_limit_burst", "must not be negative");
        }
        violations.check()?;
        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        let created = store::create_tenant(
            &mut tx,
            &tenant.display_name,
            tenant.rate_limit_per_second,
            tenant.rate_limit_burst,
            self.clock.now(),
        )
        .await
        .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        tracing::info!(tenant_id = %created.id, "tenant created");
        Ok(Response::new(CreateTenantResponse {
            tenant: Some(created.to_proto()),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        let tenant = store::get_tenant(&mut tx, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| tenant_not_found(id))?;
        tx.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(GetTenantResponse {
            tenant: Some(tenant.to_proto()),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Violations::default();
        let page: Page<Uuid> = Page::read(req.page_size, &req.page_token, &(), &mut violations);
        violations.check()?;
        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        let tenants = store::list_tenants(&mut tx, page.after, page.fetch())
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        let (tenants, next_page_token) =
            page.finish(tenants.iter().map(|t| (t.id, t.to_proto())).collect());
        Ok(Response::new(ListTenantsResponse {
            tenants,
            next_page_token,
        }))
    }

    async fn suspend_tenant(
        &self,
        request: Request<SuspendTenantRequest>,
    ) -> Result<Response<SuspendTenantResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let tenant = self.set_state(id, TenantState::Suspended).await?;
        tracing::info!(tenant_id = %id, "tenant suspended");
        Ok(Response::new(SuspendTenantResponse {
            tenant: Some(tenant),
        }))
    }

    async fn resume_tenant(
        &self,
        request: Request<ResumeTenantRequest>,
    ) -> Result<Response<ResumeTenantResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let tenant = self.set_state(id, TenantState::Active).await?;
        tracing::info!(tenant_id = %id, "tenant resumed");
        Ok(Response::new(ResumeTenantResponse {
            tenant: Some(tenant),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        let now = self.clock.now();
        let mut violations = Violations::default();
        let tenant_id = violations.parse_id("tenant_id", &req.tenant_id);
        check_name(&req.display_name, "display_name", false, &mut violations);
        if req.scopes.is_empty() {
            violations.add("scopes", "name at least one scope, such as contacts:read");
        }
        if req.scopes.len() > MAX_SCOPES {
            violations.add("scopes", format!("at most {MAX_SCOPES} scopes"));
        }
        for (i, scope) in req.scopes.iter().enumerate() {
            if let Err(e) = scope.parse::<Scope>() {
                violations.add(format!("scopes[{i}]"), e);
            }
        }
        let expire_time = match req.expire_time.as_ref().map(to_datetime) {
            None => None,
            Some(Some(time)) if time > now => Some(time),
            Some(Some(_)) => {
                violations.add("expire_time", "must be in the future");
                None
            }
            Some(None) => {
                violations.add("expire_time", "is not a valid timestamp");
                None
            }
        };
        violations.check()?;

        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        store::get_tenant(&mut tx, tenant_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| tenant_not_found(tenant_id))?;
        let new_key = api_key::generate();
        let row = store::create_key(
            &mut tx,
            NewKeyRow {
                tenant_id,
                prefix: &new_key.prefix,
                secret_hash: &new_key.hash,
                display_name: &req.display_name,
                scopes: &req.scopes,
                expire_time,
            },
            now,
        )
        .await
        .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        tracing::info!(tenant_id = %tenant_id, key = %row.prefix, "API key created");
        Ok(Response::new(CreateApiKeyResponse {
            api_key: Some(row.to_proto()),
            secret: new_key.secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Violations::default();
        let tenant_id = violations.parse_id("tenant_id", &req.tenant_id);
        // A token continues the keys of the same tenant only.
        let page: Page<Uuid> = Page::read(
            req.page_size,
            &req.page_token,
            &req.tenant_id,
            &mut violations,
        );
        violations.check()?;
        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        let keys = store::list_keys(&mut tx, tenant_id, page.after, page.fetch())
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        let (api_keys, next_page_token) =
            page.finish(keys.iter().map(|k| (k.id, k.to_proto())).collect());
        Ok(Response::new(ListApiKeysResponse {
            api_keys,
            next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<RevokeApiKeyResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let mut tx = store::begin_operator(&self.db)
            .await
            .map_err(ApiError::from)?;
        let key = store::revoke_key(&mut tx, id, self.clock.now())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::not_found(
                    ErrorReason::ApiKeyNotFound,
                    format!("API key {id} does not exist"),
                )
            })?;
        tx.commit().await.map_err(ApiError::from)?;
        tracing::info!(key = %key.prefix, "API key revoked");
        Ok(Response::new(RevokeApiKeyResponse {
            api_key: Some(key.to_proto()),
        }))
    }
}

impl AdminApi {
    async fn set_state(&self, id: Uuid, state: TenantState) -> ApiResult<Tenant> {
        let mut tx = store::begin_operator(&self.db).await?;
        let tenant = store::set_tenant_state(&mut tx, id, state, self.clock.now())
            .await?
            .ok_or_else(|| tenant_not_found(id))?;
        tx.commit().await?;
        Ok(tenant.to_proto())
    }
}

fn tenant_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::TenantNotFound,
        format!("tenant {id} does not exist"),
    )
}

fn parse_id(field: &str, value: &str) -> ApiResult<Uuid> {
    let mut violations = Violations::default();
    let id = violations.parse_id(field, value);
    violations.check()?;
    Ok(id)
}

fn check_name(name: &str, field: &str, required: bool, violations: &mut Violations) {
    if required && name.trim().is_empty() {
        violations.add(field, "is required");
    } else if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        violations.add(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
        );
    }
}
