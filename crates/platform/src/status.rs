//! Building rich gRPC errors (google.rpc `ErrorInfo`, `BadRequest`, `PreconditionFailure`)
//! so every refusal carries a stable reason and, where the product has one, its numeric code
//! in `ErrorInfo.metadata["code"]`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Roster error.
pub use roster_proto::checked::ERROR_DOMAIN;
/// `INVALID_ARGUMENT` with a `BadRequest` field violation; the same builder the boundary check
/// of every decoded request uses.
pub use roster_proto::checked::invalid_argument;

/// A refusal with a stable reason: the `ErrorInfo` part of a rich status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub reason: &'static str,
    /// The product's numeric error code, when it has one (SPEC's table).
    pub product_code: Option<u32>,
}

impl Reason {
    pub const fn new(reason: &'static str, product_code: Option<u32>) -> Self {
        Self { reason, product_code }
    }
}

fn error_info(details: &mut ErrorDetails, reason: Reason) {
    let mut metadata = HashMap::new();
    if let Some(code) = reason.product_code {
        metadata.insert("code".to_owned(), code.to_string());
    }
    details.set_error_info(reason.reason, ERROR_DOMAIN, metadata);
}

/// A status with an `ErrorInfo` and a human sentence.
pub fn refusal(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    error_info(&mut details, reason);
    Status::with_error_details(code, message, details)
}

/// A refusal the caller should retry after a while (`RESOURCE_EXHAUSTED` for a rate limit),
/// with the reason and a `RetryInfo` saying how long to wait.
pub fn retry_later(code: Code, reason: Reason, retry_after: std::time::Duration, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    error_info(&mut details, reason);
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(code, message, details)
}

/// `FAILED_PRECONDITION` with the reason and a `PreconditionFailure` naming what is wrong.
pub fn failed_precondition(reason: Reason, subject: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    error_info(&mut details, reason);
    details.add_precondition_failure_violation(reason.reason, subject, message.clone());
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// `FAILED_PRECONDITION` with one `PreconditionFailure` violation per subject (each thing in
/// the way, e.g. every phone number that would move).
pub fn failed_precondition_each(reason: Reason, subjects: &[String], message: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    error_info(&mut details, reason);
    for subject in subjects {
        details.add_precondition_failure_violation(reason.reason, subject.clone(), message.clone());
    }
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// `FAILED_PRECONDITION` for a refusal relayed from the other service, whose reason and
/// product code are known only as it answers (licensing's refusal of a dry run's preview).
pub fn relayed_refusal(reason: &str, product_code: Option<&str>, message: impl Into<String>) -> Status {
    let metadata: HashMap<String, String> =
        product_code.map(|code| ("code".to_owned(), code.to_owned())).into_iter().collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// `INTERNAL` without the cause: the cause is logged here, never sent to the caller.
pub fn internal(cause: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %cause, "internal error");
    Status::internal("internal error; the server log has the details")
}

/// `UNAVAILABLE` for a database that cannot be reached or is overloaded, so clients retry.
pub fn unavailable(cause: &dyn std::fmt::Display) -> Status {
    tracing::warn!(error = %cause, "dependency unavailable");
    Status::unavailable("temporarily unavailable; retry with backoff")
}

/// Maps a database error: pool exhaustion and I/O become `UNAVAILABLE`, the rest `INTERNAL`.
pub fn from_db(error: &sqlx::Error) -> Status {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => unavailable(error),
        _ => internal(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_carries_reason_and_product_code() {
        let status = refusal(Code::NotFound, Reason::new("USER_NOT_FOUND", Some(1010)), "no such user");
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "USER_NOT_FOUND");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("code").map(String::as_str), Some("1010"));
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = invalid_argument("email", "is not an e-mail address");
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "email");
    }

    #[test]
    fn precondition_failure_lists_the_violation() {
        let status = failed_precondition(Reason::new("USER_PENDING", None), "user:1", "not activated");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let failure = status.get_details_precondition_failure().expect("precondition failure");
        assert_eq!(failure.violations[0].r#type, "USER_PENDING");
    }
}
