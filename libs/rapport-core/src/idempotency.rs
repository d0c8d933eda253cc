//! Idempotent retries keyed by a client's `request_id` (AIP-155).
//!
//! The first call with a given id stores its response in the same
//! transaction as its effect; a retry within the retention window gets that
//! response back without doing the work again. Calls with the same id are
//! serialized by a transaction-scoped advisory lock, so two concurrent
//! retries cannot both do the work. Reusing an id for a different request
//! is an error rather than a silent replay.

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest as _, Sha256};
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Violations};

/// How long a request id is remembered.
pub const RETENTION: &str = "24 hours";

/// Longest accepted request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The idempotency table of one service schema. The table has the columns
/// `(tenant_id uuid, operation text, request_id text, request_hash bytea,
/// response bytea, subject_ids uuid[], create_time timestamptz)` with
/// primary key `(tenant_id, operation, request_id)` and row-level security.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyTable {
    /// Schema-qualified table name, such as `contacts.idempotency_keys`.
    pub table: &'static str,
}

/// What a call's `request_id` allows: the stored response of an earlier
/// call, or doing the work and then [`Pending::complete`].
pub enum Claim<R> {
    Replay(R),
    Proceed(Pending),
}

/// The work of a call is to be done; completing it stores the response for
/// retries (nothing to store for a call without a request id).
#[must_use = "complete the claim in the transaction that does the work"]
pub struct Pending(Option<Reserved>);

struct Reserved {
    table: &'static str,
    operation: &'static str,
    request_id: String,
    request_hash: Vec<u8>,
}

/// Adds a violation when `request_id` is too long to store.
pub fn check_request_id(request_id: &str, violations: &mut Violations) {
    if request_id.len() > MAX_REQUEST_ID_LEN {
        violations.add(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID_LEN} characters"),
        );
    }
}

impl IdempotencyTable {
    /// Claims `request_id` for `operation` at `now` inside the caller's tenant
    /// transaction, blocking while another transaction holds the same id.
    /// A call without a request id simply proceeds: it is not idempotent.
    pub async fn claim<R: Message + Default>(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        operation: &'static str,
        request_id: &str,
        request: &impl Message,
        now: DateTime<Utc>,
    ) -> ApiResult<Claim<R>> {
        if request_id.is_empty() {
            return Ok(Claim::Proceed(Pending(None)));
        }
        let request_hash = Sha256::digest(request.encode_to_vec()).to_vec();
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{}/{tenant}/{operation}/{request_id}", self.table))
            .execute(&mut *tx)
            .await?;
        let stored: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT request_hash, response FROM {} \
             WHERE tenant_id = $1 AND operation = $2 AND request_id = $3 \
               AND create_time > $4 - interval '{RETENTION}'",
            self.table
        )))
        .bind(tenant)
        .bind(operation)
        .bind(request_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        match stored {
            Some((hash, _)) if hash != request_hash => Err(ApiError::invalid_field(
                "request_id",
                "was already used for a different request; use a new request_id",
            )),
            Some((_, response)) => {
                let response = R::decode(response.as_slice()).map_err(ApiError::internal)?;
                Ok(Claim::Replay(response))
            }
            None => Ok(Claim::Proceed(Pending(Some(Reserved {
                table: self.table,
                operation,
                request_id: request_id.to_owned(),
                request_hash,
            })))),
        }
    }
}

impl Pending {
    /// Stores `response` for retries. `subject_ids` name the resources the
    /// response describes, so erasing one can also drop the stored copy.
    pub async fn complete(
        self,
        tx: &mut PgConnection,
        tenant: Uuid,
        response: &impl Message,
        subject_ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> ApiResult<()> {
        let Some(reserved) = self.0 else {
            return Ok(());
        };
        // Forget expired ids of this tenant first; cheap through the
        // (tenant_id, create_time) index and keeps the table small.
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND create_time <= $2 - interval '{RETENTION}'",
            reserved.table
        )))
        .bind(tenant)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (tenant_id, operation, request_id, request_hash, response, subject_ids, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            reserved.table
        )))
        .bind(tenant)
        .bind(reserved.operation)
        .bind(&reserved.request_id)
        .bind(&reserved.request_hash)
        .bind(response.encode_to_vec())
        .bind(subject_ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
