//! The one error type services return, and how it becomes a `tonic::Status`.
//!
//! Each error has a gRPC code, a stable machine-readable reason (a value of
//! a package's `ErrorReason` enum, sent by name as `google.rpc.ErrorInfo`),
//! and a message a person can act on. Bad input
//! carries `google.rpc.BadRequest` field violations. Internal errors are
//! logged with their cause and returned with the request id only, never
//! their text.

use std::collections::HashMap;
use std::time::Duration;

use rapport_proto::ErrorReason;
use rapport_proto::common::v1::ErrorReason as Common;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::request_id;

/// `google.rpc.ErrorInfo.domain` of every Rapport error.
pub const ERROR_DOMAIN: &str = "rapport";

/// Boxed so that `Result<T, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug)]
struct ErrorBody {
    code: Code,
    reason: &'static str,
    message: String,
    metadata: HashMap<String, String>,
    violations: Vec<FieldViolation>,
    retry_after: Option<Duration>,
    source: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: Code, reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorBody {
            code,
            reason: reason.name(),
            message: message.into(),
            metadata: HashMap::new(),
            violations: Vec::new(),
            retry_after: None,
            source: None,
        }))
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::default();
        violations.add(field, description);
        violations.into_error()
    }

    /// INVALID_ARGUMENT, reason REQUEST_TOO_LARGE, for one field that holds
    /// more than the method takes.
    pub fn request_too_large(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::default();
        violations.add(field, description);
        violations.into_error_with(Common::RequestTooLarge)
    }

    pub fn not_found(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, reason, message)
    }

    pub fn already_exists(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, reason, message)
    }

    /// The request is valid but the resource is not in a state that allows
    /// it, such as a stale etag.
    pub fn failed_precondition(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, reason, message)
    }

    pub fn permission_denied(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, reason, message)
    }

    pub fn unauthenticated(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, reason, message)
    }

    pub fn resource_exhausted(
        reason: impl ErrorReason,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        let mut error = Self::new(Code::ResourceExhausted, reason, message);
        error.0.retry_after = Some(retry_after);
        error
    }

    /// A conflict with a concurrent call; the caller should retry.
    pub fn aborted(reason: impl ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::Aborted, reason, message)
    }

    /// The service cannot answer now; the caller should retry after
    /// `retry_after`.
    pub fn unavailable(
        reason: impl ErrorReason,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        let mut error = Self::new(Code::Unavailable, reason, message);
        error.0.retry_after = Some(retry_after);
        error
    }

    /// The call's deadline passed while it waited on the database.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, Common::DatabaseBusy, message)
    }

    /// A failure that is ours, not the caller's. `source` is logged, not sent.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(Code::Internal, Common::Internal, "internal error");
        error.0.source = Some(source.into());
        error
    }

    /// Adds a key to the `ErrorInfo` metadata, such as the id of the
    /// resource a caller should use instead.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.metadata.insert(key.into(), value.into());
        self
    }

    pub fn code(&self) -> Code {
        self.0.code
    }

    pub fn reason(&self) -> &'static str {
        self.0.reason
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.0.code, self.0.message)
    }
}

/// How long a caller is asked to wait after the database went away.
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let lost = || {
            Self::unavailable(
                Common::DatabaseUnavailable,
                "the service lost its database connection; nothing was written; retry after the delay",
                DATABASE_RETRY_AFTER,
            )
        };
        match error {
            // The wait for a connection ran into the call's deadline.
            sqlx::Error::PoolTimedOut
                if crate::deadline::remaining().is_some_and(|left| left.is_zero()) =>
            {
                Self::deadline_exceeded(
                    "the call's deadline passed while it waited for the database",
                )
            }
            sqlx::Error::PoolTimedOut => Self::unavailable(
                Common::DatabaseBusy,
                "the service is overloaded; retry with backoff",
                DATABASE_RETRY_AFTER,
            ),
            error if is_connection_loss(&error) => lost(),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Deadlock or serialization failure: nothing was written.
                Some("40P01" | "40001") => Self::aborted(
                    Common::ConcurrentConflict,
                    "the call conflicted with a concurrent one and was rolled back; retry it",
                ),
                // A row the call refers to was removed while it ran.
                Some("23503") => Self::failed_precondition(
                    Common::ReferenceGone,
                    "a resource the call refers to was removed meanwhile; check it and retry",
                ),
                // The statement or lock timeout: both are the call's own
                // remaining deadline (see `db::Database`).
                Some("57014" | "55P03") => Self::deadline_exceeded(
                    "the call's deadline passed while it waited on the database",
                ),
                _ => Self::internal(sqlx::Error::Database(db)),
            },
            other => Self::internal(other),
        }
    }
}

/// Whether `error` means the database connection went away (a restart, a
/// failover, the server shutting down or starting up): the transaction did
/// not commit, the pool replaces the connection, and a retry may succeed.
pub fn is_connection_loss(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let error = *error.0;
        let request_id = request_id::current();
        let message = match (&error.source, &request_id) {
            (Some(source), Some(id)) => {
                tracing::error!(request_id = %id, error = format!("{source:#}"), "internal error");
                format!("internal error (request id {id})")
            }
            (Some(source), None) => {
                tracing::error!(error = format!("{source:#}"), "internal error");
                error.message
            }
            (None, _) => error.message,
        };
        let mut details = ErrorDetails::new();
        details.set_error_info(error.reason, ERROR_DOMAIN, error.metadata);
        if !error.violations.is_empty() {
            details.set_bad_request(error.violations);
        }
        if let Some(delay) = error.retry_after {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(error.code, message, details)
    }
}

/// The most violations one error lists; the rest are counted, so hostile
/// input cannot make the error itself large.
pub const MAX_VIOLATIONS: usize = 100;

/// Collects every problem with a request before failing, so a caller can fix
/// them all at once (up to [`MAX_VIOLATIONS`]).
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<FieldViolation>,
    /// Violations found beyond the listed ones.
    more: usize,
}

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.list.len() < MAX_VIOLATIONS {
            self.list.push(FieldViolation::new(field, description));
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many violations were found, listed or not.
    pub fn len(&self) -> usize {
        self.list.len() + self.more
    }

    /// The fields named so far, in the order found.
    pub fn fields(&self) -> Vec<String> {
        self.list.iter().map(|v| v.field.clone()).collect()
    }

    /// Parses a required id; a missing or malformed one is a violation.
    pub fn parse_id(&mut self, field: &str, value: &str) -> uuid::Uuid {
        if value.is_empty() {
            self.add(field, "is required");
        } else if let Ok(id) = uuid::Uuid::parse_str(value) {
            return id;
        } else {
            self.add(field, "must be an id (UUID)");
        }
        uuid::Uuid::nil()
    }

    /// Parses required ids at `field[i]`; a missing, malformed or repeated
    /// one is a violation.
    pub fn parse_distinct_ids(&mut self, field: &str, values: &[String]) -> Vec<uuid::Uuid> {
        let mut seen = std::collections::HashSet::with_capacity(values.len());
        let mut ids = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let id = self.parse_id(&at, value);
            if !id.is_nil() && !seen.insert(id) {
                self.add(at, format!("repeats {id}"));
            }
            ids.push(id);
        }
        ids
    }

    /// `Ok` when nothing was added, else the INVALID_ARGUMENT error.
    pub fn check(self) -> ApiResult<()> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    fn into_error(self) -> ApiError {
        self.into_error_with(Common::InvalidArgument)
    }

    fn into_error_with(self, reason: Common) -> ApiError {
        // The message names every field so that even a client that ignores
        // status details learns what to fix.
        let mut summary = self
            .list
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        if self.more > 0 {
            summary.push_str(&format!("; and {} more", self.more));
        }
        let mut error = ApiError::new(
            Code::InvalidArgument,
            reason,
            format!("invalid request: {summary}"),
        );
        error.0.violations = self.list;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_name_each_bad_one_at_its_index() {
        let id = uuid::Uuid::now_v7().to_string();
        let mut violations = Violations::default();
        let ids = violations
            .parse_distinct_ids("ids", &[id.clone(), String::new(), "x".into(), id.clone()]);
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0].to_string(), id);
        assert_eq!(violations.fields(), ["ids[1]", "ids[2]", "ids[3]"]);
    }

    #[test]
    fn invalid_argument_names_every_field_in_message_and_details() {
        let mut violations = Violations::default();
        violations.add("contact.email", "must be an email address");
        violations.add("contact.phone", "must be E.164");
        let status = Status::from(violations.check().unwrap_err());

        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("contact.email"));
        assert!(status.message().contains("contact.phone"));
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["contact.email", "contact.phone"]);
    }

    #[test]
    fn violations_stop_at_the_cap_and_count_the_rest() {
        let mut violations = Violations::default();
        for i in 0..MAX_VIOLATIONS + 5 {
            violations.add(format!("items[{i}]"), "is wrong");
        }
        assert_eq!(violations.len(), MAX_VIOLATIONS + 5);
        let status = Status::from(violations.check().unwrap_err());
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations.len(),
            MAX_VIOLATIONS
        );
        assert!(
            status.message().ends_with("and 5 more"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn internal_error_text_is_not_sent() {
        let status = Status::from(ApiError::internal(anyhow::anyhow!(
            "relation contacts.secret does not exist"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn error_info_carries_reason_and_metadata() {
        let status = Status::from(
            ApiError::not_found(
                rapport_proto::contacts::v1::ErrorReason::ContactMerged,
                "merged",
            )
            .with_metadata("survivor_id", "x"),
        );
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "CONTACT_MERGED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["survivor_id"], "x");
    }

    #[test]
    fn resource_exhausted_carries_retry_delay() {
        let status = Status::from(ApiError::resource_exhausted(
            Common::DatabaseBusy,
            "slow down",
            Duration::from_millis(250),
        ));
        let details = status.get_error_details();
        let delay = details.retry_info().unwrap().retry_delay.unwrap();
        assert_eq!(delay, Duration::from_millis(250));
    }
}
