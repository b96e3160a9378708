//! The one mapping from licensing errors to gRPC statuses. Each refusal gets a stable
//! `ErrorInfo.reason` and, where the product has one, its numeric code (SPEC's table).

use roster_platform::status::{self, Reason};
use roster_platform::stored_text::StoredText;
use tonic::{Code, Status};

use crate::app;
use crate::directory::LookupError;
use crate::domain::DomainError;

/// The reason (and product code) of a refusal; also what refusal audit records say.
pub fn reason(error: &DomainError) -> Reason {
    match error {
        DomainError::Invalid { .. } => Reason::new("INVALID_ARGUMENT", None),
        DomainError::AccountNotFound => Reason::new("ACCOUNT_NOT_FOUND", None),
        DomainError::UserNotFound => Reason::new("USER_NOT_FOUND", Some(1010)),
        DomainError::UserNotActive => Reason::new("USER_NOT_ACTIVE", None),
        DomainError::MissingPrivilege(_) => Reason::new("MISSING_PRIVILEGE", None),
        DomainError::NotAccountOwner => Reason::new("NOT_ACCOUNT_OWNER", None),
        DomainError::PrincipalNotAllowed => Reason::new("PRINCIPAL_NOT_ALLOWED", None),
        DomainError::OwnerOrAdminOnly => Reason::new("OWNER_OR_ADMIN_ONLY", None),
        DomainError::CallerNotActive => Reason::new("CALLER_NOT_ACTIVE", None),
        DomainError::SeatsExhausted { .. } => Reason::new("SEATS_EXHAUSTED", Some(200)),
        DomainError::CapacityBelowAssigned { .. } => Reason::new("CAPACITY_BELOW_ASSIGNED", None),
        DomainError::AlreadyAssigned => Reason::new("LICENSE_ALREADY_ASSIGNED", None),
        DomainError::NotAssigned => Reason::new("LICENSE_NOT_ASSIGNED", None),
        DomainError::PhoneNumberNotFound => Reason::new("PHONE_NUMBER_NOT_FOUND", None),
        DomainError::PhoneNumberTaken => Reason::new("PHONE_NUMBER_TAKEN", None),
        DomainError::PhoneNumberAttached => Reason::new("PHONE_NUMBER_ATTACHED", None),
        DomainError::PhoneLicenseRequired => Reason::new("PHONE_LICENSE_REQUIRED", None),
        DomainError::TargetNotInAccount => Reason::new("TARGET_NOT_IN_ACCOUNT", Some(1001)),
        DomainError::TargetLacksLicense { .. } => Reason::new("TARGET_LACKS_LICENSE", Some(300)),
        DomainError::TransferNotFound => Reason::new("TRANSFER_NOT_FOUND", None),
        DomainError::SubscriptionNotFound => Reason::new("SUBSCRIPTION_NOT_FOUND", None),
        DomainError::SubscriptionNotActive => Reason::new("SUBSCRIPTION_NOT_ACTIVE", None),
        DomainError::AlreadyRefunded => Reason::new("ALREADY_REFUNDED", None),
    }
}

fn message(error: &DomainError) -> String {
    match error {
        DomainError::Invalid { field, message } => format!("{field}: {message}"),
        DomainError::AccountNotFound => "No such account, or you are not part of it.".into(),
        DomainError::UserNotFound => "No such user in this account.".into(),
        DomainError::UserNotActive => {
            "Only active users can hold licenses; this user is pending, deactivated or having licenses reclaimed."
                .into()
        }
        DomainError::MissingPrivilege(p) => format!("You need the {p} privilege for this."),
        DomainError::NotAccountOwner => "Only the account owner can do this.".into(),
        DomainError::PrincipalNotAllowed => "This caller kind is not allowed to make this call.".into(),
        DomainError::OwnerOrAdminOnly => {
            "Only the account's owner and admins may do this, and only in their own account.".into()
        }
        DomainError::CallerNotActive => "Your user is not active in this account.".into(),
        DomainError::SeatsExhausted { license_type, capacity } => format!(
            "All {capacity} purchased {} seat(s) are assigned; buy more seats or unassign one first.",
            license_type.as_str()
        ),
        DomainError::CapacityBelowAssigned { license_type, assigned } => format!(
            "{assigned} {} seat(s) are assigned; unassign some before lowering the capacity below that.",
            license_type.as_str()
        ),
        DomainError::AlreadyAssigned => "The user already holds this license.".into(),
        DomainError::NotAssigned => "The user does not hold this license.".into(),
        DomainError::PhoneNumberNotFound => "No such phone number in this account.".into(),
        DomainError::PhoneNumberTaken => "That phone number is already registered.".into(),
        DomainError::PhoneNumberAttached => "That phone number is attached to another user; detach it first.".into(),
        DomainError::PhoneLicenseRequired => "Only a user holding a phone license can have a phone number.".into(),
        DomainError::TargetNotInAccount => "The transfer target is not a user of this account.".into(),
        DomainError::TargetLacksLicense { kind, license_type } => format!(
            "The transfer target needs a {} license to receive {}s; nothing was transferred.",
            license_type.as_str(),
            kind.as_str()
        ),
        DomainError::TransferNotFound => "No such transfer in this account.".into(),
        DomainError::SubscriptionNotFound => "No such subscription in this account.".into(),
        DomainError::SubscriptionNotActive => "The subscription has already ended.".into(),
        DomainError::AlreadyRefunded => "The subscription was already refunded; a refund is made once only.".into(),
    }
}

fn code(error: &DomainError) -> Code {
    match error {
        DomainError::Invalid { .. } => Code::InvalidArgument,
        DomainError::AccountNotFound
        | DomainError::UserNotFound
        | DomainError::NotAssigned
        | DomainError::PhoneNumberNotFound
        | DomainError::TransferNotFound
        | DomainError::SubscriptionNotFound => Code::NotFound,
        DomainError::AlreadyAssigned | DomainError::PhoneNumberTaken => Code::AlreadyExists,
        DomainError::MissingPrivilege(_)
        | DomainError::NotAccountOwner
        | DomainError::PrincipalNotAllowed
        | DomainError::OwnerOrAdminOnly
        | DomainError::CallerNotActive => Code::PermissionDenied,
        DomainError::UserNotActive
        | DomainError::SeatsExhausted { .. }
        | DomainError::CapacityBelowAssigned { .. }
        | DomainError::PhoneNumberAttached
        | DomainError::PhoneLicenseRequired
        | DomainError::TargetNotInAccount
        | DomainError::TargetLacksLicense { .. }
        | DomainError::SubscriptionNotActive
        | DomainError::AlreadyRefunded => Code::FailedPrecondition,
    }
}

/// The kind of object whose state blocks the request (`PreconditionFailure.subject`).
fn subject(error: &DomainError) -> &'static str {
    match error {
        DomainError::SeatsExhausted { .. } | DomainError::CapacityBelowAssigned { .. } => "seats",
        DomainError::PhoneNumberAttached => "phone_number",
        DomainError::SubscriptionNotActive | DomainError::AlreadyRefunded => "subscription",
        _ => "user",
    }
}

pub fn domain_status(error: &DomainError) -> Status {
    let reason = reason(error);
    match (error, code(error)) {
        (DomainError::Invalid { field, message }, _) => status::invalid_argument(field, message.clone()),
        (_, Code::FailedPrecondition) => status::failed_precondition(reason, subject(error), message(error)),
        (_, code) => status::refusal(code, reason, message(error)),
    }
}

/// A refusal of one item of a batch, as its own call's status would name it.
pub fn item_refusal(error: &DomainError) -> roster_proto::licensing::v1::ItemRefusal {
    let reason = reason(error);
    roster_proto::licensing::v1::ItemRefusal {
        reason: reason.reason.to_owned(),
        code: reason.product_code.map(|code| code.to_string()).unwrap_or_default(),
        message: message(error),
    }
}

pub fn to_status(error: app::Error) -> Status {
    match error {
        app::Error::Domain(error) => domain_status(&error),
        app::Error::Db(error) => status::from_db(&error),
        app::Error::Identity(LookupError::Unavailable(cause)) => {
            status::service_unavailable("identity", "to say who the caller and the users named are", &cause)
        }
        app::Error::Identity(other) => status::internal(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ContentKind, LicenseType};
    use tonic_types::StatusExt;

    #[test]
    fn product_codes_match_the_spec_table() {
        let cases = [
            (
                DomainError::SeatsExhausted { license_type: LicenseType::Licensed, capacity: 10 },
                "SEATS_EXHAUSTED",
                Some("200"),
                Code::FailedPrecondition,
            ),
            (DomainError::TargetNotInAccount, "TARGET_NOT_IN_ACCOUNT", Some("1001"), Code::FailedPrecondition),
            (
                DomainError::TargetLacksLicense { kind: ContentKind::Recording, license_type: LicenseType::Licensed },
                "TARGET_LACKS_LICENSE",
                Some("300"),
                Code::FailedPrecondition,
            ),
            (DomainError::UserNotFound, "USER_NOT_FOUND", Some("1010"), Code::NotFound),
            (DomainError::NotAccountOwner, "NOT_ACCOUNT_OWNER", None, Code::PermissionDenied),
        ];
        for (error, reason, product_code, grpc_code) in cases {
            let status = domain_status(&error);
            assert_eq!(status.code(), grpc_code, "{error:?}");
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(info.reason, reason);
            assert_eq!(info.metadata.get("code").map(String::as_str), product_code);
        }
    }
}
