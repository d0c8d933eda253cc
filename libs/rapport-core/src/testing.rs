//! Test controls: `rapport.testing.v1.TestControlService`, which every
//! process serves and which refuses every call unless the process was
//! started with its test settings on. A test stack uses it to move the
//! clock of all its processes together.

use std::sync::Arc;

use clap::Args;
use rapport_proto::common::v1::ErrorReason as Common;
use rapport_proto::testing::v1::test_control_service_server::TestControlService;
use rapport_proto::testing::v1::{AdvanceClockRequest, AdvanceClockResponse};
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::convert::to_timestamp;
use crate::credential::{Access, Grant};
use crate::error::ApiError;

/// Settings for test stacks only.
#[derive(Debug, Clone, Default, Args)]
pub struct TestingConfig {
    /// Answer the test controls (moving this process's clock). Never in
    /// production: with it off, every test control call is refused.
    #[arg(long, env = "RAPPORT_TEST_CONTROLS", default_value_t = false)]
    pub test_controls: bool,
}

/// The scope a test control call needs, in a service credential.
const SCOPE: &str = "testing";

pub struct TestControl {
    clock: Clock,
    enabled: bool,
}

impl TestControl {
    pub fn new(clock: Clock, enabled: bool) -> Self {
        Self { clock, enabled }
    }

    fn admit<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        if !self.enabled {
            return Err(ApiError::failed_precondition(
                Common::TestControlDisabled,
                "test controls are off on this process (RAPPORT_TEST_CONTROLS)",
            ));
        }
        let allowed = request
            .extensions()
            .get::<Arc<Grant>>()
            .is_some_and(|grant| grant.tenant_id.is_none() && grant.allows(SCOPE, Access::Write));
        if !allowed {
            return Err(ApiError::permission_denied(
                Common::ServiceCredentialRequired,
                "test controls need a service credential with the testing:write scope",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl TestControlService for TestControl {
    async fn advance_clock(
        &self,
        request: Request<AdvanceClockRequest>,
    ) -> Result<Response<AdvanceClockResponse>, Status> {
        self.admit(&request)?;
        let by = request
            .into_inner()
            .by
            .and_then(|by| std::time::Duration::try_from(by).ok())
            .filter(|by| !by.is_zero())
            .ok_or_else(|| ApiError::invalid_field("by", "must be a positive duration"))?;
        let now = self.clock.advance(by);
        tracing::info!(?by, %now, "test clock advanced");
        Ok(Response::new(AdvanceClockResponse {
            now: Some(to_timestamp(now)),
        }))
    }
}
