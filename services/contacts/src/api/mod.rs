//! The `rapport.contacts.v1.ContactsService` implementation: each call is
//! authorized, validated in full before anything is written, run in one
//! tenant transaction, and its errors mapped to gRPC statuses. The
//! handlers live in one module per resource.

mod contacts;
mod history;
mod privacy;
mod timeline;

use rapport_core::api::{ApiScope, ApiStream};
use rapport_core::db::Database;
use rapport_core::idempotency::IdempotencyTable;
use rapport_core::{ApiError, ApiResult, Clock};
use rapport_proto::contacts::v1::contacts_service_server::ContactsService;
use rapport_proto::contacts::v1::*;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::contact::StoredContact;
use crate::store::contact::{Lookup, SaveError};

/// `contacts:read` and `contacts:write`.
const SCOPE: ApiScope = ApiScope("contacts");
const IDEMPOTENCY: IdempotencyTable = IdempotencyTable {
    table: "contacts.idempotency_keys",
};
/// History source recorded when a call names none.
const DEFAULT_SOURCE: &str = "api";

#[derive(Clone)]
pub struct ContactsApi {
    db: Database,
    clock: Clock,
}

impl ContactsApi {
    pub fn new(db: Database, clock: Clock) -> Self {
        Self { db, clock }
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn create_contact(
        &self,
        request: Request<CreateContactRequest>,
    ) -> Result<Response<CreateContactResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.create(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_contact(
        &self,
        request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_contact(
        &self,
        request: Request<UpdateContactRequest>,
    ) -> Result<Response<UpdateContactResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.update(&ctx, request.into_inner()).await?,
        ))
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.delete(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ListContactsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn batch_upsert_contacts(
        &self,
        request: Request<BatchUpsertContactsRequest>,
    ) -> Result<Response<BatchUpsertContactsResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.batch_upsert(&ctx, request.into_inner()).await?,
        ))
    }

    async fn merge_contacts(
        &self,
        request: Request<MergeContactsRequest>,
    ) -> Result<Response<MergeContactsResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(self.merge(&ctx, request.into_inner()).await?))
    }

    async fn change_lifecycle_stage(
        &self,
        request: Request<ChangeLifecycleStageRequest>,
    ) -> Result<Response<ChangeLifecycleStageResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.change_lifecycle_stage(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn list_lifecycle_history(
        &self,
        request: Request<ListLifecycleHistoryRequest>,
    ) -> Result<Response<ListLifecycleHistoryResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_lifecycle_history(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn change_consent(
        &self,
        request: Request<ChangeConsentRequest>,
    ) -> Result<Response<ChangeConsentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.change_consent(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_consent_history(
        &self,
        request: Request<ListConsentHistoryRequest>,
    ) -> Result<Response<ListConsentHistoryResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_consent_history(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn record_events(
        &self,
        request: Request<RecordEventsRequest>,
    ) -> Result<Response<RecordEventsResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.record_events(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_events(&ctx, request.into_inner()).await?,
        ))
    }

    type ExportContactStream = ApiStream<ExportContactResponse>;

    async fn export_contact(
        &self,
        request: Request<ExportContactRequest>,
    ) -> Result<Response<Self::ExportContactStream>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.export(ctx, request.into_inner()).await?))
    }

    async fn erase_contact(
        &self,
        request: Request<EraseContactRequest>,
    ) -> Result<Response<EraseContactResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(self.erase(&ctx, request.into_inner()).await?))
    }
}

/// The live contact a lookup of `id` found, or the error for an id that
/// names none: merged (with the survivor's id), erased, or unknown.
fn found(lookup: Lookup, id: Uuid) -> ApiResult<StoredContact> {
    match lookup {
        Lookup::Found(contact) => Ok(*contact),
        Lookup::Merged(survivor) => Err(ApiError::not_found(
            ErrorReason::ContactMerged,
            format!("contact {id} was merged into contact {survivor}; use that id"),
        )
        .with_metadata("survivor_id", survivor.to_string())),
        Lookup::Erased => Err(ApiError::not_found(
            ErrorReason::ContactErased,
            format!("contact {id} was erased"),
        )),
        Lookup::Missing => Err(ApiError::not_found(
            ErrorReason::ContactNotFound,
            format!("contact {id} does not exist"),
        )),
    }
}

impl From<SaveError> for ApiError {
    fn from(error: SaveError) -> Self {
        match error {
            SaveError::EmailTaken(_) => {
                ApiError::already_exists(ErrorReason::ContactEmailTaken, error.to_string())
            }
            SaveError::ExternalIdTaken(_) => {
                ApiError::already_exists(ErrorReason::ContactExternalIdTaken, error.to_string())
            }
            SaveError::Database(error) => error.into(),
        }
    }
}
