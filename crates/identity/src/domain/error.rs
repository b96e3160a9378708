//! Every way an identity operation can be refused. The API maps each variant to a gRPC
//! status with a stable reason (and product code) in exactly one place, `api::error`.

use super::model::Privilege;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Input that is well-formed but not acceptable (field name, why).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// Unknown account, or one the caller is not part of: the two are not told apart.
    #[error("account not found")]
    AccountNotFound,
    /// Missing or in another account (SPEC R34: never reveal which).
    #[error("user not found")]
    UserNotFound,
    #[error("operation not found")]
    OperationNotFound,
    #[error("invitation not found, revoked or expired")]
    InvitationNotFound,
    #[error("role not found")]
    RoleNotFound,
    #[error("the e-mail address already belongs to a user")]
    EmailInUse,
    #[error("a role with that name already exists")]
    RoleNameTaken,
    #[error("only the account owner can do this")]
    NotAccountOwner,
    #[error("the caller lacks the {0:?} privilege")]
    MissingPrivilege(Privilege),
    #[error("only platform operators can do this")]
    OperatorOnly,
    #[error("only the account's owner and admins may do this")]
    OwnerOrAdminOnly,
    /// The settings changed since the version the caller read.
    #[error("the settings are at version {current}, not the one expected")]
    SettingsVersionMismatch { current: i64 },
    #[error("the caller's user has been deactivated")]
    CallerDisabled,
    #[error("the caller has not activated their user yet")]
    CallerNotActive,
    #[error("the user has not activated yet")]
    UserPending,
    #[error("the user is deactivated")]
    UserDeactivated,
    #[error("the user is not deactivated")]
    UserNotDeactivated,
    #[error("an admin must be changed to a member before this")]
    AdminMustBeDemoted,
    #[error("the account owner cannot be deactivated, unlinked or deleted")]
    OwnerProtected,
    #[error("ownership moves only by transferring it")]
    OwnerRoleFixed,
    #[error("the new owner must be an active admin of the account")]
    NewOwnerNotActiveAdmin,
    #[error("the role is held by users")]
    RoleInUse,
    #[error("the invitee's current account still has other users")]
    AccountHasOtherUsers { other_users: u64 },
    #[error("the invitee's current account still has rooms")]
    AccountHasRooms { rooms: u32 },
    #[error("users of a managed domain cannot be unlinked")]
    ManagedDomainUser,
    #[error("the transfer target is not a user of this account")]
    TargetNotInAccount,
    #[error("the transfer target is not active")]
    TargetNotActive,
    /// SPEC R4: what would move to the new owner, e.g. `license:phone`, `number:+3120...`.
    #[error("phone licenses or numbers would move to the new owner")]
    PhoneTransferUnconfirmed { would_move: Vec<String> },
    #[error("operation {operation_id} is still working on this")]
    OperationInProgress { operation_id: String },
    /// Retry and resolve are for failed operations only.
    #[error("the operation is {state}, not failed")]
    OperationNotFailed { state: String },
    #[error("the operation cannot be cancelled: {why}")]
    OperationNotCancellable { why: String },
    /// SPEC R8: plan, CSM eligibility or the requester's role forbids the request (why).
    #[error("ownership cannot be requested: {why}")]
    OwnershipRequestNotAllowed { why: String },
    /// SPEC R8: one open request per account; this one is open.
    #[error("ownership request {request_id} is already open")]
    OwnershipRequestOpen { request_id: String },
    #[error("ownership request not found")]
    OwnershipRequestNotFound,
    /// Approved, denied, cancelled or void already: nothing more can be decided.
    #[error("the ownership request is {state}")]
    OwnershipRequestClosed { state: String },
    #[error("only the requester can cancel the request")]
    NotRequester,
    /// SPEC R10: no fresh, unused proof for this user, account and purpose.
    #[error("a step-up verification is required")]
    StepUpRequired,
    #[error("the step-up code is wrong")]
    StepUpCodeWrong { attempts_left: u32 },
    /// Five wrong codes in a row lock step-up until this instant.
    #[error("step-up is locked")]
    StepUpLocked { until_ms: i64 },
    /// Unknown, expired, already used, or another user's challenge.
    #[error("step-up challenge not found")]
    StepUpChallengeNotFound,
    /// SPEC R12: not one of the caller's addresses.
    #[error("e-mail address not found")]
    EmailAddressNotFound,
    /// The code is wrong or expired (the address stays unverified).
    #[error("the verification code is wrong or expired")]
    EmailVerificationFailed,
    #[error("the address is not verified")]
    EmailNotVerified,
    #[error("the primary address cannot be removed")]
    EmailIsPrimary,
    /// SPEC R12: a user may have this many unverified addresses at once.
    #[error("too many addresses are waiting for verification")]
    TooManyPendingAddresses { limit: i64 },
    /// Codes to this address, or from this user, hit their limit for the window.
    #[error("too many verification codes were sent")]
    VerificationCodesLimited { retry_after_ms: i64 },
    /// Re-running the failed step could apply it twice (see `roster_platform::saga_retry`).
    #[error("{message}")]
    OperationRetryTooLate { message: String },
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}
