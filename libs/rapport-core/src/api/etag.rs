//! Optimistic concurrency (AIP-154): a client sends back the etag it read,
//! and a write applies only if the resource has not changed since.

use rapport_proto::common::v1::ErrorReason as Common;

use crate::error::{ApiError, ApiResult};

/// Checks the etag a client `sent` against the `current` one of `resource`
/// (such as "contact 0190..."). An empty etag skips the check; a stale one
/// is FAILED_PRECONDITION with reason ETAG_MISMATCH and the current etag in
/// the error metadata (`current_etag`).
pub fn check(sent: &str, current: &str, resource: impl std::fmt::Display) -> ApiResult<()> {
    if sent.is_empty() || sent == current {
        return Ok(());
    }
    Err(ApiError::failed_precondition(
        Common::EtagMismatch,
        format!("{resource} changed since etag {sent} was read; get it again and retry"),
    )
    .with_metadata("current_etag", current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_current_etag_passes_and_a_stale_one_names_the_current() {
        assert!(check("", "7", "contact x").is_ok());
        assert!(check("7", "7", "contact x").is_ok());
        let status = tonic::Status::from(check("6", "7", "contact x").unwrap_err());
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("contact x"), "{status:?}");
        use tonic_types::StatusExt as _;
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "ETAG_MISMATCH");
        assert_eq!(info.metadata["current_etag"], "7");
    }
}
