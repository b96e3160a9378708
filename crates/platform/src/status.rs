//! Building rich gRPC errors (google.rpc `ErrorInfo`, `BadRequest`, `PreconditionFailure`)
//! so every refusal carries a stable reason and, where the product has one, its numeric code
//! in `ErrorInfo.metadata["code"]`.

use std::collections::HashMap;
use std::time::Duration;

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
pub fn retry_later(code: Code, reason: Reason, retry_after: Duration, message: impl Into<String>) -> Status {
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

/// `UNAVAILABLE` for a dependency that cannot be reached or is overloaded, so clients retry.
pub fn unavailable(cause: &dyn std::fmt::Display) -> Status {
    tracing::warn!(error = %cause, "dependency unavailable");
    Status::unavailable("temporarily unavailable; retry with backoff")
}

/// `UNAVAILABLE` for a call that needed the other Roster service, which could not answer:
/// the message names the service and what it was needed for, `ErrorInfo` says
/// `SERVICE_UNAVAILABLE` with the service in its metadata, and `RetryInfo` when to retry.
pub fn service_unavailable(service: &str, needed_for: &str, cause: &dyn std::fmt::Display) -> Status {
    tracing::debug!(service, error = %cause, "the other service did not answer");
    let mut details = ErrorDetails::new();
    let metadata = HashMap::from([("service".to_owned(), service.to_owned())]);
    details.set_error_info("SERVICE_UNAVAILABLE", ERROR_DOMAIN, metadata);
    details.set_retry_info(Some(DATABASE_RETRY_AFTER));
    Status::with_error_details(
        Code::Unavailable,
        format!("{service} is unavailable, and is needed {needed_for}; retry with backoff"),
        details,
    )
}

/// How long a client should wait before retrying a call the database could not serve.
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);
/// ... and one that lost a conflict with a concurrent transaction.
const CONFLICT_RETRY_AFTER: Duration = Duration::from_millis(50);

/// Why the server itself may run a failed call again; kept in the status's `source`, which
/// never leaves the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rerun {
    /// The transaction never reached COMMIT: nothing of it was kept.
    #[error("the transaction never reached COMMIT")]
    NotCommitted,
    /// The COMMIT was sent, but its answer was lost with the connection: running the call again
    /// is safe only where a request id makes the second run replay the first.
    #[error("the outcome of the COMMIT is unknown")]
    CommitUnknown,
}

/// The one mapping of database errors to statuses (see [`crate::db::Failure`]): a lost
/// connection is `UNAVAILABLE`, a lost conflict `ABORTED`, both with a `RetryInfo` (clients and
/// meshes retry those; `INTERNAL` they would not); anything else is `INTERNAL`. For a failure
/// before COMMIT.
pub fn from_db(error: &sqlx::Error) -> Status {
    transient(error, Rerun::NotCommitted)
}

/// [`from_db`] for a failed COMMIT, whose outcome may be unknown.
pub fn from_commit(error: &sqlx::Error) -> Status {
    transient(error, Rerun::CommitUnknown)
}

fn transient(error: &sqlx::Error, rerun: Rerun) -> Status {
    use crate::db::Failure;
    let failure = crate::db::failure(error);
    let mut status = match failure {
        Failure::Connection => {
            crate::incident::database_unavailable(error);
            retry_later(
                Code::Unavailable,
                Reason::new("DATABASE_UNAVAILABLE", None),
                DATABASE_RETRY_AFTER,
                "the database cannot be reached right now; retry with backoff",
            )
        }
        Failure::Conflict => retry_later(
            Code::Aborted,
            Reason::new("CONCURRENT_UPDATE", None),
            CONFLICT_RETRY_AFTER,
            "a concurrent change got in the way; retry",
        ),
        Failure::Other => return internal(error),
    };
    status.set_source(std::sync::Arc::new(rerun));
    status
}

/// May the server run the call that failed with `status` once more, on a fresh connection?
/// Only for a database failure that can pass: one before COMMIT always, one at COMMIT when the
/// call is `keyed` by a request id (a second run then replays the first if it committed).
pub fn may_rerun(status: &Status, keyed: bool) -> bool {
    match std::error::Error::source(status).and_then(|source| source.downcast_ref::<Rerun>()) {
        Some(Rerun::NotCommitted) => true,
        Some(Rerun::CommitUnknown) => keyed,
        None => false,
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
    fn database_failures_are_unavailable_aborted_or_internal_and_say_when_to_retry() {
        let lost = from_db(&sqlx::Error::PoolTimedOut);
        assert_eq!(lost.code(), Code::Unavailable);
        assert!(lost.get_details_retry_info().and_then(|info| info.retry_delay).is_some(), "RetryInfo");
        assert_eq!(lost.get_details_error_info().expect("error info").reason, "DATABASE_UNAVAILABLE");
        assert!(may_rerun(&lost, false), "nothing was committed");
        let commit = from_commit(&sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(commit.code(), Code::Unavailable);
        assert!(!may_rerun(&commit, false) && may_rerun(&commit, true), "only a keyed call reruns an unknown COMMIT");
        let bug = from_db(&sqlx::Error::RowNotFound);
        assert_eq!(bug.code(), Code::Internal);
        assert!(!may_rerun(&bug, true));
        assert!(!may_rerun(&Status::unavailable("licensing"), true), "only database failures the server met");
    }

    #[test]
    fn precondition_failure_lists_the_violation() {
        let status = failed_precondition(Reason::new("USER_PENDING", None), "user:1", "not activated");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let failure = status.get_details_precondition_failure().expect("precondition failure");
        assert_eq!(failure.violations[0].r#type, "USER_PENDING");
    }
}
