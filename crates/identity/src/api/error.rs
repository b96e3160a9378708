//! The one mapping from identity errors to gRPC statuses. Each refusal gets a stable
//! `ErrorInfo.reason` and, where the product has one, its numeric code (SPEC's table), as
//! `effects::refusals` names them.

use roster_platform::status;
use tonic::{Code, Status};

use crate::domain::DomainError;
use crate::effects;
use crate::effects::refusals::{message, reason};

fn code(error: &DomainError) -> Code {
    match error {
        DomainError::Invalid { .. } => Code::InvalidArgument,
        DomainError::AccountNotFound
        | DomainError::UserNotFound
        | DomainError::InvitationNotFound
        | DomainError::OperationNotFound
        | DomainError::RoleNotFound
        | DomainError::OwnershipRequestNotFound
        | DomainError::StepUpChallengeNotFound
        | DomainError::EmailAddressNotFound => Code::NotFound,
        DomainError::EmailInUse | DomainError::RoleNameTaken => Code::AlreadyExists,
        DomainError::NotAccountOwner
        | DomainError::MissingPrivilege(_)
        | DomainError::OperatorOnly
        | DomainError::OwnerOrAdminOnly
        | DomainError::CallerDisabled
        | DomainError::CallerNotActive
        | DomainError::NotRequester
        | DomainError::StepUpRequired
        | DomainError::StepUpCodeWrong { .. } => Code::PermissionDenied,
        DomainError::UserPending
        | DomainError::UserDeactivated
        | DomainError::UserNotDeactivated
        | DomainError::AdminMustBeDemoted
        | DomainError::OwnerProtected
        | DomainError::OwnerRoleFixed
        | DomainError::NewOwnerNotActiveAdmin
        | DomainError::RoleInUse
        | DomainError::AccountHasOtherUsers { .. }
        | DomainError::AccountHasRooms { .. }
        | DomainError::ManagedDomainUser
        | DomainError::TargetNotInAccount
        | DomainError::TargetNotActive
        | DomainError::PhoneTransferUnconfirmed { .. }
        | DomainError::OperationInProgress { .. }
        | DomainError::OperationNotFailed { .. }
        | DomainError::OperationNotCancellable { .. }
        | DomainError::OperationRetryTooLate { .. }
        | DomainError::OwnershipRequestNotAllowed { .. }
        | DomainError::OwnershipRequestOpen { .. }
        | DomainError::OwnershipRequestClosed { .. }
        | DomainError::StepUpLocked { .. }
        | DomainError::EmailVerificationFailed
        | DomainError::EmailNotVerified
        | DomainError::EmailIsPrimary
        | DomainError::TooManyPendingAddresses { .. }
        | DomainError::SettingsVersionMismatch { .. } => Code::FailedPrecondition,
        DomainError::VerificationCodesLimited { .. } => Code::ResourceExhausted,
    }
}

/// The kind of object whose state blocks the request (`PreconditionFailure.subject`).
fn subject(error: &DomainError) -> &'static str {
    match error {
        DomainError::RoleInUse => "role",
        DomainError::AccountHasOtherUsers { .. }
        | DomainError::AccountHasRooms { .. }
        | DomainError::PhoneTransferUnconfirmed { .. } => "account",
        DomainError::OperationInProgress { .. }
        | DomainError::OperationNotFailed { .. }
        | DomainError::OperationNotCancellable { .. }
        | DomainError::OperationRetryTooLate { .. } => "operation",
        DomainError::OwnershipRequestNotAllowed { .. } => "account",
        DomainError::OwnershipRequestOpen { .. } | DomainError::OwnershipRequestClosed { .. } => "ownership_request",
        DomainError::SettingsVersionMismatch { .. } => "user_settings",
        _ => "user",
    }
}

pub fn domain_status(error: &DomainError) -> Status {
    let reason = reason(error);
    match (error, code(error)) {
        (DomainError::Invalid { field, message }, _) => status::invalid_argument(field, message.clone()),
        (DomainError::VerificationCodesLimited { retry_after_ms }, _) => {
            let retry_after = std::time::Duration::from_millis(u64::try_from(*retry_after_ms).unwrap_or(0));
            status::retry_later(Code::ResourceExhausted, reason, retry_after, message(error))
        }
        (DomainError::PhoneTransferUnconfirmed { would_move }, _) => {
            status::failed_precondition_each(reason, would_move, message(error))
        }
        (_, Code::FailedPrecondition) => status::failed_precondition(reason, subject(error), message(error)),
        (_, code) => status::refusal(code, reason, message(error)),
    }
}

pub fn to_status(error: effects::Error) -> Status {
    match error {
        effects::Error::Domain(error) => domain_status(&error),
        effects::Error::Db(error) => status::from_db(&error),
        effects::Error::Internal(cause) => status::internal(&cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn product_codes_match_the_spec_table() {
        let cases = [
            (
                DomainError::AccountHasOtherUsers { other_users: 1 },
                "ACCOUNT_HAS_OTHER_USERS",
                Some("1009"),
                Code::FailedPrecondition,
            ),
            (DomainError::AdminMustBeDemoted, "ADMIN_MUST_BE_DEMOTED", Some("1117"), Code::FailedPrecondition),
            (DomainError::UserNotFound, "USER_NOT_FOUND", Some("1010"), Code::NotFound),
            (DomainError::InvitationNotFound, "INVITATION_NOT_FOUND", Some("1120"), Code::NotFound),
            (DomainError::EmailInUse, "EMAIL_IN_USE", Some("1005"), Code::AlreadyExists),
            (DomainError::UserPending, "USER_PENDING", None, Code::FailedPrecondition),
            (DomainError::NotAccountOwner, "NOT_ACCOUNT_OWNER", None, Code::PermissionDenied),
            (DomainError::ManagedDomainUser, "MANAGED_DOMAIN_USER", Some("1107"), Code::FailedPrecondition),
            (DomainError::TargetNotInAccount, "TARGET_NOT_IN_ACCOUNT", Some("1001"), Code::FailedPrecondition),
        ];
        for (error, reason, product_code, grpc_code) in cases {
            let status = domain_status(&error);
            assert_eq!(status.code(), grpc_code, "{error:?}");
            if grpc_code == Code::FailedPrecondition {
                let failure = status.get_details_precondition_failure().expect("precondition failure");
                let expected = if reason == "ACCOUNT_HAS_OTHER_USERS" { "account" } else { "user" };
                assert_eq!(failure.violations[0].subject, expected, "{error:?}");
            }
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(info.reason, reason);
            assert_eq!(info.metadata.get("code").map(String::as_str), product_code);
        }
    }
}
