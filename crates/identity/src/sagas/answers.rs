//! How licensing's answer to a step's call becomes the step's outcome: a lost connection or an
//! overloaded peer is transient (the engine tries again), anything else is a business refusal
//! carrying licensing's reason and product code.

use roster_workflow::{Failure, StepError};
use tonic_types::StatusExt;

/// A licensing answer that is not a success.
pub type Answer<T> = Result<T, StepError>;

/// Unavailable, deadline and other "try again" answers are transient; everything else is a
/// refusal, carrying licensing's reason and product code.
pub fn step_error(status: tonic::Status) -> StepError {
    use tonic::Code;
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Unknown
        | Code::Internal => StepError::Transient(format!("licensing: {:?}: {}", status.code(), status.message())),
        code => {
            let info = status.get_details_error_info();
            let reason = info.as_ref().map_or_else(|| format!("{code:?}").to_uppercase(), |i| i.reason.clone());
            let product_code = info.and_then(|i| i.metadata.get("code").cloned());
            StepError::Refused(Failure { reason, code: product_code, message: status.message().to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_retry_and_refusals_keep_their_reason_and_code() {
        assert!(matches!(step_error(tonic::Status::unavailable("down")), StepError::Transient(_)));
        assert!(matches!(step_error(tonic::Status::deadline_exceeded("slow")), StepError::Transient(_)));
        let refusal = roster_platform::status::failed_precondition(
            roster_platform::status::Reason::new("TARGET_LACKS_LICENSE", Some(300)),
            "user",
            "needs a licensed seat",
        );
        match step_error(refusal) {
            StepError::Refused(failure) => {
                assert_eq!(failure.reason, "TARGET_LACKS_LICENSE");
                assert_eq!(failure.code.as_deref(), Some("300"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
