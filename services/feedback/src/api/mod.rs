//! The `rapport.feedback.v1.FeedbackService` implementation: each call is
//! authorized, validated in full before anything is written, run in one
//! transaction, and its errors mapped to gRPC statuses. The handlers live
//! in one module per resource.

mod invitations;
mod privacy;
mod responses;
mod settings;
mod submit;
mod summary;
mod surveys;

use std::sync::Arc;

use rapport_core::api::{ApiScope, ApiStream};
use rapport_core::credential::Grant;
use rapport_core::db::Database;
use rapport_core::idempotency::IdempotencyTable;
use rapport_core::{ApiError, Clock};
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::feedback::v1::feedback_service_server::FeedbackService;
use rapport_proto::feedback::v1::*;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::directory::ContactDirectory;

/// `feedback:read` and `feedback:write`.
const SCOPE: ApiScope = ApiScope("feedback");
const IDEMPOTENCY: IdempotencyTable = IdempotencyTable {
    table: "feedback.idempotency_keys",
};

#[derive(Clone)]
pub struct FeedbackApi {
    db: Database,
    clock: Clock,
    directory: ContactDirectory,
}

impl FeedbackApi {
    pub fn new(db: Database, clock: Clock, directory: ContactDirectory) -> Self {
        Self {
            db,
            clock,
            directory,
        }
    }
}

#[tonic::async_trait]
impl FeedbackService for FeedbackApi {
    async fn create_survey(
        &self,
        request: Request<CreateSurveyRequest>,
    ) -> Result<Response<CreateSurveyResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.create_survey(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_survey(
        &self,
        request: Request<GetSurveyRequest>,
    ) -> Result<Response<GetSurveyResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.get_survey(&ctx, request.into_inner()).await?,
        ))
    }

    async fn update_survey(
        &self,
        request: Request<UpdateSurveyRequest>,
    ) -> Result<Response<UpdateSurveyResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.update_survey(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_surveys(
        &self,
        request: Request<ListSurveysRequest>,
    ) -> Result<Response<ListSurveysResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_surveys(&ctx, request.into_inner()).await?,
        ))
    }

    async fn activate_survey(
        &self,
        request: Request<ActivateSurveyRequest>,
    ) -> Result<Response<ActivateSurveyResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        let survey = self
            .change_status(&ctx, &request.into_inner().id, SurveyStatus::Active)
            .await?;
        Ok(Response::new(ActivateSurveyResponse {
            survey: Some(survey),
        }))
    }

    async fn close_survey(
        &self,
        request: Request<CloseSurveyRequest>,
    ) -> Result<Response<CloseSurveyResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        let survey = self
            .change_status(&ctx, &request.into_inner().id, SurveyStatus::Closed)
            .await?;
        Ok(Response::new(CloseSurveyResponse {
            survey: Some(survey),
        }))
    }

    async fn create_invitations(
        &self,
        request: Request<CreateInvitationsRequest>,
    ) -> Result<Response<CreateInvitationsResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.create_invitations(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_feedback_settings(
        &self,
        request: Request<GetFeedbackSettingsRequest>,
    ) -> Result<Response<GetFeedbackSettingsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.get_settings(&ctx).await?))
    }

    async fn update_feedback_settings(
        &self,
        request: Request<UpdateFeedbackSettingsRequest>,
    ) -> Result<Response<UpdateFeedbackSettingsResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.update_settings(&ctx, request.into_inner()).await?,
        ))
    }

    async fn submit_response(
        &self,
        request: Request<SubmitResponseRequest>,
    ) -> Result<Response<SubmitResponseResponse>, Status> {
        // Public: any gateway-minted credential admits it (it names no
        // tenant); the token in the request decides what it may answer.
        if request.extensions().get::<Arc<Grant>>().is_none() {
            return Err(ApiError::unauthenticated(
                Common::MissingCredential,
                "the call carries no credential",
            )
            .into());
        }
        Ok(Response::new(self.submit(request.into_inner()).await?))
    }

    async fn get_response(
        &self,
        request: Request<GetResponseRequest>,
    ) -> Result<Response<GetResponseResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.get_response(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_responses(
        &self,
        request: Request<ListResponsesRequest>,
    ) -> Result<Response<ListResponsesResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_responses(&ctx, request.into_inner()).await?,
        ))
    }

    type ExportResponsesStream = ApiStream<ExportResponsesResponse>;

    async fn export_responses(
        &self,
        request: Request<ExportResponsesRequest>,
    ) -> Result<Response<Self::ExportResponsesStream>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.export(ctx, request.into_inner()).await?))
    }

    async fn tag_response(
        &self,
        request: Request<TagResponseRequest>,
    ) -> Result<Response<TagResponseResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(self.tag(&ctx, request.into_inner()).await?))
    }

    type ExportContactFeedbackStream = ApiStream<ExportContactFeedbackResponse>;

    async fn export_contact_feedback(
        &self,
        request: Request<ExportContactFeedbackRequest>,
    ) -> Result<Response<Self::ExportContactFeedbackStream>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.export_contact(ctx, request.into_inner()).await?,
        ))
    }

    async fn get_survey_summary(
        &self,
        request: Request<GetSurveySummaryRequest>,
    ) -> Result<Response<GetSurveySummaryResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.summary(&ctx, request.into_inner()).await?,
        ))
    }
}

fn survey_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::SurveyNotFound,
        format!("survey {id} does not exist"),
    )
}
