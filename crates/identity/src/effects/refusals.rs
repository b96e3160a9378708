//! What a refusal says, whoever reports it: its stable reason and product code (SPEC's table)
//! and its message. The API's status (`api::error`) and a failed operation's record
//! (`sagas::refused`) both read them here, so a refusal reads the same either way.

use roster_platform::status::Reason;
use roster_platform::stored_text::StoredText;

use crate::domain::DomainError;

/// The reason (and product code) of a refusal; also what refusal audit records say.
pub fn reason(error: &DomainError) -> Reason {
    match error {
        DomainError::Invalid { .. } => Reason::new("INVALID_ARGUMENT", None),
        DomainError::AccountNotFound => Reason::new("ACCOUNT_NOT_FOUND", None),
        DomainError::UserNotFound => Reason::new("USER_NOT_FOUND", Some(1010)),
        DomainError::InvitationNotFound => Reason::new("INVITATION_NOT_FOUND", Some(1120)),
        DomainError::OperationNotFound => Reason::new("OPERATION_NOT_FOUND", None),
        DomainError::RoleNotFound => Reason::new("ROLE_NOT_FOUND", None),
        DomainError::EmailInUse => Reason::new("EMAIL_IN_USE", Some(1005)),
        DomainError::RoleNameTaken => Reason::new("ROLE_NAME_TAKEN", None),
        DomainError::NotAccountOwner => Reason::new("NOT_ACCOUNT_OWNER", None),
        DomainError::MissingPrivilege(_) => Reason::new("MISSING_PRIVILEGE", None),
        DomainError::OperatorOnly => Reason::new("PRINCIPAL_NOT_ALLOWED", None),
        DomainError::OwnerOrAdminOnly => Reason::new("OWNER_OR_ADMIN_ONLY", None),
        DomainError::SettingsVersionMismatch { .. } => Reason::new("SETTINGS_VERSION_MISMATCH", None),
        DomainError::CallerDisabled => Reason::new("CALLER_DEACTIVATED", None),
        DomainError::CallerNotActive => Reason::new("CALLER_PENDING", None),
        DomainError::UserPending => Reason::new("USER_PENDING", None),
        DomainError::UserDeactivated => Reason::new("USER_DEACTIVATED", None),
        DomainError::UserNotDeactivated => Reason::new("USER_NOT_DEACTIVATED", None),
        DomainError::AdminMustBeDemoted => Reason::new("ADMIN_MUST_BE_DEMOTED", Some(1117)),
        DomainError::OwnerProtected => Reason::new("OWNER_PROTECTED", None),
        DomainError::OwnerRoleFixed => Reason::new("OWNER_ROLE_FIXED", None),
        DomainError::NewOwnerNotActiveAdmin => Reason::new("NEW_OWNER_NOT_ACTIVE_ADMIN", None),
        DomainError::RoleInUse => Reason::new("ROLE_IN_USE", None),
        DomainError::AccountHasOtherUsers { .. } => Reason::new("ACCOUNT_HAS_OTHER_USERS", Some(1009)),
        DomainError::AccountHasRooms { .. } => Reason::new("ACCOUNT_HAS_OTHER_USERS", Some(1009)),
        DomainError::ManagedDomainUser => Reason::new("MANAGED_DOMAIN_USER", Some(1107)),
        DomainError::TargetNotInAccount => Reason::new("TARGET_NOT_IN_ACCOUNT", Some(1001)),
        DomainError::TargetNotActive => Reason::new("TARGET_NOT_ACTIVE", None),
        DomainError::PhoneTransferUnconfirmed { .. } => Reason::new("PHONE_TRANSFER_UNCONFIRMED", None),
        DomainError::OperationInProgress { .. } => Reason::new("OPERATION_IN_PROGRESS", None),
        DomainError::OperationNotFailed { .. } => Reason::new("OPERATION_NOT_FAILED", None),
        DomainError::OperationNotCancellable { .. } => Reason::new("OPERATION_NOT_CANCELLABLE", None),
        DomainError::OperationRetryTooLate { .. } => Reason::new("OPERATION_RETRY_TOO_LATE", None),
        DomainError::OwnershipRequestNotAllowed { .. } => Reason::new("OWNERSHIP_REQUEST_NOT_ALLOWED", None),
        DomainError::OwnershipRequestOpen { .. } => Reason::new("OWNERSHIP_REQUEST_OPEN", None),
        DomainError::OwnershipRequestNotFound => Reason::new("OWNERSHIP_REQUEST_NOT_FOUND", None),
        DomainError::OwnershipRequestClosed { .. } => Reason::new("OWNERSHIP_REQUEST_CLOSED", None),
        DomainError::NotRequester => Reason::new("NOT_REQUESTER", None),
        DomainError::StepUpRequired => Reason::new("STEP_UP_REQUIRED", None),
        DomainError::StepUpCodeWrong { .. } => Reason::new("STEP_UP_CODE_WRONG", None),
        DomainError::StepUpLocked { .. } => Reason::new("STEP_UP_LOCKED", None),
        DomainError::StepUpChallengeNotFound => Reason::new("STEP_UP_CHALLENGE_NOT_FOUND", None),
        DomainError::EmailAddressNotFound => Reason::new("EMAIL_ADDRESS_NOT_FOUND", None),
        DomainError::EmailVerificationFailed => Reason::new("EMAIL_VERIFICATION_FAILED", None),
        DomainError::EmailNotVerified => Reason::new("EMAIL_NOT_VERIFIED", None),
        DomainError::EmailIsPrimary => Reason::new("EMAIL_IS_PRIMARY", None),
        DomainError::TooManyPendingAddresses { .. } => Reason::new("PENDING_ADDRESSES_LIMIT", None),
        DomainError::VerificationCodesLimited { .. } => Reason::new("VERIFICATION_CODES_LIMITED", None),
    }
}

pub fn message(error: &DomainError) -> String {
    match error {
        DomainError::Invalid { field, message } => format!("{field}: {message}"),
        DomainError::AccountNotFound => "No such account, or you are not part of it.".into(),
        DomainError::UserNotFound => "No such user in this account.".into(),
        DomainError::InvitationNotFound => {
            "The invitation is unknown, revoked, expired, or not addressed to you.".into()
        }
        DomainError::RoleNotFound => "No such role in this account.".into(),
        DomainError::OperationNotFound => "No such operation, or you may not see it.".into(),
        DomainError::EmailInUse => "That e-mail address already belongs to a user.".into(),
        DomainError::RoleNameTaken => "A role with that name already exists.".into(),
        DomainError::NotAccountOwner => "Only the account owner can do this.".into(),
        DomainError::MissingPrivilege(p) => format!("You need the {} privilege for this.", p.as_str()),
        DomainError::OperatorOnly => "This caller kind is not allowed to make this call.".into(),
        DomainError::SettingsVersionMismatch { current } => format!(
            "The settings changed since you read them; they are now at version {current}. Read them again and \
             apply your change to what is there."
        ),
        DomainError::OwnerOrAdminOnly => {
            "Only the account's owner and admins may do this, and only in their own account.".into()
        }
        DomainError::CallerDisabled => "Your user has been deactivated.".into(),
        DomainError::CallerNotActive => "Accept your invitation before acting in this account.".into(),
        DomainError::UserPending => {
            "The user has not activated yet; a pending user cannot be given admin rights or removed.".into()
        }
        DomainError::UserDeactivated => "The user is deactivated.".into(),
        DomainError::UserNotDeactivated => "The user is not deactivated.".into(),
        DomainError::AdminMustBeDemoted => "Change this admin to a member first (the owner can do that).".into(),
        DomainError::OwnerProtected => {
            "The account owner cannot be deactivated, unlinked or deleted; transfer ownership first.".into()
        }
        DomainError::OwnerRoleFixed => "Ownership moves only with TransferOwnership.".into(),
        DomainError::NewOwnerNotActiveAdmin => {
            "The new owner must be an active admin of this account; make them an admin first.".into()
        }
        DomainError::RoleInUse => "Users still hold this role; assign them another role first.".into(),
        DomainError::AccountHasOtherUsers { other_users } => format!(
            "Your current account still has {other_users} other user(s). Remove or unlink them (and delete any rooms) before accepting."
        ),
        DomainError::AccountHasRooms { rooms } => format!(
            "Your current account still has {rooms} room(s). Delete the rooms (and remove any other users) before accepting."
        ),
        DomainError::ManagedDomainUser => {
            "The user's e-mail domain is managed by this account, so the user cannot be unlinked.".into()
        }
        DomainError::TargetNotInAccount => "The transfer target must be another user of this account.".into(),
        DomainError::TargetNotActive => "The transfer target must be an active user.".into(),
        DomainError::PhoneTransferUnconfirmed { would_move } => format!(
            "The owner's phone licenses and numbers ({}) would move to the new owner, who holds no phone license. \
             Repeat with confirm_phone_transfer to move them together with ownership.",
            would_move.join(", ")
        ),
        DomainError::OperationInProgress { operation_id } => {
            format!("Operation {operation_id} is still working on this; watch it and try again when it is done.")
        }
        DomainError::OperationNotFailed { state } => {
            format!("Only a failed operation can be retried or resolved; this one is {state}.")
        }
        DomainError::OperationNotCancellable { why } => format!("The operation cannot be cancelled: {why}."),
        DomainError::OperationRetryTooLate { message } => format!("{message}."),
        DomainError::OwnershipRequestNotAllowed { why } => format!("Ownership cannot be requested: {why}."),
        DomainError::OwnershipRequestOpen { request_id } => format!(
            "Ownership request {request_id} is already open for this account; wait for its outcome or have its \
             requester cancel it."
        ),
        DomainError::OwnershipRequestNotFound => "No such ownership request, or you may not see it.".into(),
        DomainError::OwnershipRequestClosed { state } => {
            format!("The ownership request is {state}; nothing more can be decided.")
        }
        DomainError::NotRequester => "Only the user who made the request can cancel it.".into(),
        DomainError::StepUpRequired => "This needs a fresh verification: call StartStepUp, then VerifyStepUp with \
             the code e-mailed to you, and pass its proof (valid 5 minutes, once) as step_up_proof."
            .into(),
        DomainError::StepUpCodeWrong { attempts_left } => {
            format!("The code is wrong; {attempts_left} more wrong code(s) lock verification for 15 minutes.")
        }
        DomainError::StepUpLocked { until_ms } => {
            format!("Too many wrong codes: verification is locked until {}.", crate::notify::human_time(*until_ms))
        }
        DomainError::StepUpChallengeNotFound => {
            "No such verification code request: it is unknown, expired, used, or not yours. Start a new one.".into()
        }
        DomainError::EmailAddressNotFound => "That is not one of your e-mail addresses.".into(),
        DomainError::EmailVerificationFailed => {
            "The code is wrong or has expired; add the address again for a new one.".into()
        }
        DomainError::EmailNotVerified => "Verify the address with the code sent to it before making it primary.".into(),
        DomainError::EmailIsPrimary => "Make another verified address primary before removing this one.".into(),
        DomainError::TooManyPendingAddresses { limit } => format!(
            "You have {limit} addresses waiting for verification; verify or remove one (or wait for its code to \
             expire) before adding another."
        ),
        DomainError::VerificationCodesLimited { retry_after_ms } => format!(
            "Too many verification codes were sent to this address or by you; try again in {} minute(s).",
            (retry_after_ms + 59_999) / 60_000
        ),
    }
}
