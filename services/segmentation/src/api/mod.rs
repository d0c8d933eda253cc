//! The `rapport.segmentation.v1.SegmentationService` implementation: each
//! call is authorized, validated in full before anything is written, run
//! in one transaction, and its errors mapped to gRPC statuses. The
//! handlers live in one module per resource.

mod explain;
mod history;
mod members;
mod preview;
mod privacy;
mod scoring;
mod segments;

use std::sync::Arc;

use rapport_core::api::{ApiScope, ApiStream};
use rapport_core::db::{Database, finish_read};
use rapport_core::idempotency::IdempotencyTable;
use rapport_core::{ApiError, ApiResult, Clock, TenantContext, Violations};
use rapport_proto::segmentation::v1::segmentation_service_server::SegmentationService;
use rapport_proto::segmentation::v1::*;
use sqlx::PgConnection;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::references;
use crate::domain::rule::{Leaf, Rule as TypedRule};
use crate::domain::scoring::Models;
use crate::domain::validate;
use crate::store::segment::{self as store, Lock};

/// `segmentation:read` and `segmentation:write`.
const SCOPE: ApiScope = ApiScope("segmentation");
const IDEMPOTENCY: IdempotencyTable = IdempotencyTable {
    table: "segmentation.idempotency_keys",
};

#[derive(Clone)]
pub struct SegmentationApi {
    db: Database,
    clock: Clock,
    /// Wakes this replica's builder when a call queues a build.
    builds: Arc<Notify>,
    /// How long an archived segment is kept.
    retention: chrono::Duration,
}

impl SegmentationApi {
    pub fn new(
        db: Database,
        clock: Clock,
        builds: Arc<Notify>,
        retention: chrono::Duration,
    ) -> Self {
        Self {
            db,
            clock,
            builds,
            retention,
        }
    }

    /// A segment of the tenant, or NOT_FOUND.
    async fn segment(&self, tx: &mut PgConnection, id: Uuid, lock: Lock) -> ApiResult<Segment> {
        store::get(tx, id, lock)
            .await?
            .ok_or_else(|| segment_not_found(id))
    }
}

fn segment_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::SegmentNotFound,
        format!("segment {id} does not exist"),
    )
}

fn contact_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(
        ErrorReason::ContactNotFound,
        format!(
            "segmentation knows no contact {id}; a contact created a moment ago appears shortly"
        ),
    )
}

fn archived(segment: &Segment) -> bool {
    segment.archive_time.is_some()
}

/// Refuses a rule (at `path`) whose `segment` leaves name no segment of
/// the tenant, an archived one, or (for `owner`, the segment the rule
/// belongs to) lead back to it.
/// The scoring models `rule` names, to check it against before it is
/// saved: held against deletion until the transaction ends.
async fn named_models(tx: &mut PgConnection, rule: Option<&Rule>) -> ApiResult<Models> {
    let ids = rule.map(validate::named_models).unwrap_or_default();
    Ok(crate::store::scoring::named(tx, &ids, true).await?)
}

impl SegmentationApi {
    /// The scoring models `rule` names, to check a rule nothing will save.
    async fn models_for_reading(
        &self,
        ctx: &TenantContext,
        rule: Option<&Rule>,
    ) -> ApiResult<Models> {
        let ids = rule.map(validate::named_models).unwrap_or_default();
        if ids.is_empty() {
            return Ok(Models::new());
        }
        let mut tx = self.db.begin_tenant_read(ctx.tenant_id).await?;
        let models = crate::store::scoring::named(&mut tx, &ids, false).await?;
        finish_read(tx);
        Ok(models)
    }
}

async fn check_references(
    tx: &mut PgConnection,
    rule: &TypedRule,
    path: &str,
    owner: Option<Uuid>,
) -> ApiResult<()> {
    let named = rule.referenced_segments();
    if named.is_empty() {
        return Ok(());
    }
    let (missing, archived) = store::unusable(tx, &named).await?;
    let graph = match owner {
        Some(_) => store::reference_graph(tx).await?,
        None => Default::default(),
    };
    let mut violations = Violations::default();
    for (leaf_path, leaf) in rule.leaves(path) {
        let Leaf::Segment(id) = leaf else {
            continue;
        };
        let field = format!("{leaf_path}.segment.segment_id");
        if missing.contains(id) {
            violations.add(field, format!("names segment {id}, which does not exist"));
        } else if archived.contains(id) {
            violations.add(field, format!("names segment {id}, which is archived"));
        } else if let Some(owner) = owner
            && let Some(cycle) = references::cycle(owner, &[*id], &graph)
        {
            let chain: Vec<String> = cycle.iter().map(Uuid::to_string).collect();
            violations.add(
                field,
                format!(
                    "would make segments name each other in a cycle: {}",
                    chain.join(" -> ")
                ),
            );
        }
    }
    violations.check()
}

#[tonic::async_trait]
impl SegmentationService for SegmentationApi {
    async fn create_segment(
        &self,
        request: Request<CreateSegmentRequest>,
    ) -> Result<Response<CreateSegmentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.create(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_segment(
        &self,
        request: Request<GetSegmentRequest>,
    ) -> Result<Response<GetSegmentResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_segment(
        &self,
        request: Request<UpdateSegmentRequest>,
    ) -> Result<Response<UpdateSegmentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.update(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_segments(
        &self,
        request: Request<ListSegmentsRequest>,
    ) -> Result<Response<ListSegmentsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn delete_segment(
        &self,
        request: Request<DeleteSegmentRequest>,
    ) -> Result<Response<DeleteSegmentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.delete(&ctx, request.into_inner()).await?,
        ))
    }

    async fn undelete_segment(
        &self,
        request: Request<UndeleteSegmentRequest>,
    ) -> Result<Response<UndeleteSegmentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.undelete(&ctx, request.into_inner()).await?,
        ))
    }

    async fn build_segment(
        &self,
        request: Request<BuildSegmentRequest>,
    ) -> Result<Response<BuildSegmentResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(self.build(&ctx, request.into_inner()).await?))
    }

    async fn add_list_members(
        &self,
        request: Request<AddListMembersRequest>,
    ) -> Result<Response<AddListMembersResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.add_members(&ctx, request.into_inner()).await?,
        ))
    }

    async fn remove_list_members(
        &self,
        request: Request<RemoveListMembersRequest>,
    ) -> Result<Response<RemoveListMembersResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.remove_members(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_segment_members(
        &self,
        request: Request<ListSegmentMembersRequest>,
    ) -> Result<Response<ListSegmentMembersResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.members(&ctx, request.into_inner()).await?,
        ))
    }

    async fn count_segment(
        &self,
        request: Request<CountSegmentRequest>,
    ) -> Result<Response<CountSegmentResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.count(&ctx, request.into_inner()).await?))
    }

    async fn list_contact_segments(
        &self,
        request: Request<ListContactSegmentsRequest>,
    ) -> Result<Response<ListContactSegmentsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.contact_segments(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_membership_history(
        &self,
        request: Request<ListMembershipHistoryRequest>,
    ) -> Result<Response<ListMembershipHistoryResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.history(&ctx, request.into_inner()).await?,
        ))
    }

    type ExportSegmentMembersStream = ApiStream<ExportSegmentMembersResponse>;

    async fn export_segment_members(
        &self,
        request: Request<ExportSegmentMembersRequest>,
    ) -> Result<Response<Self::ExportSegmentMembersStream>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(self.export(ctx, request.into_inner()).await?))
    }

    async fn preview_rule(
        &self,
        request: Request<PreviewRuleRequest>,
    ) -> Result<Response<PreviewRuleResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.preview(&ctx, request.into_inner()).await?,
        ))
    }

    async fn explain_membership(
        &self,
        request: Request<ExplainMembershipRequest>,
    ) -> Result<Response<ExplainMembershipResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.explain(&ctx, request.into_inner()).await?,
        ))
    }

    async fn evaluate_rule(
        &self,
        request: Request<EvaluateRuleRequest>,
    ) -> Result<Response<EvaluateRuleResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.evaluate_rule(&ctx, request.into_inner()).await?,
        ))
    }

    async fn create_scoring_model(
        &self,
        request: Request<CreateScoringModelRequest>,
    ) -> Result<Response<CreateScoringModelResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.create_model(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_scoring_model(
        &self,
        request: Request<GetScoringModelRequest>,
    ) -> Result<Response<GetScoringModelResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.get_model(&ctx, request.into_inner()).await?,
        ))
    }

    async fn list_scoring_models(
        &self,
        request: Request<ListScoringModelsRequest>,
    ) -> Result<Response<ListScoringModelsResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.list_models(&ctx, request.into_inner()).await?,
        ))
    }

    async fn update_scoring_model(
        &self,
        request: Request<UpdateScoringModelRequest>,
    ) -> Result<Response<UpdateScoringModelResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.update_model(&ctx, request.into_inner()).await?,
        ))
    }

    async fn delete_scoring_model(
        &self,
        request: Request<DeleteScoringModelRequest>,
    ) -> Result<Response<DeleteScoringModelResponse>, Status> {
        let ctx = SCOPE.write(&request)?;
        Ok(Response::new(
            self.delete_model(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_contact_score(
        &self,
        request: Request<GetContactScoreRequest>,
    ) -> Result<Response<GetContactScoreResponse>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.contact_score(&ctx, request.into_inner()).await?,
        ))
    }

    type ExportContactSegmentsStream = ApiStream<ExportContactSegmentsResponse>;

    async fn export_contact_segments(
        &self,
        request: Request<ExportContactSegmentsRequest>,
    ) -> Result<Response<Self::ExportContactSegmentsStream>, Status> {
        let ctx = SCOPE.read(&request)?;
        Ok(Response::new(
            self.export_contact(ctx, request.into_inner()).await?,
        ))
    }
}
