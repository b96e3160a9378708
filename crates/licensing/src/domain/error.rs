//! Licensing's refusals. Each maps to one gRPC status in `api::error`.

use super::model::{ContentKind, LicenseType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("account not found")]
    AccountNotFound,
    /// SPEC R34: a user of another account is "not found", never "forbidden".
    #[error("user not found")]
    UserNotFound,
    /// SPEC R31: pending or deactivated users cannot hold licenses (or have had them reclaimed).
    #[error("user is not active")]
    UserNotActive,
    #[error("caller lacks a privilege")]
    MissingPrivilege(&'static str),
    #[error("only the account owner may do this")]
    NotAccountOwner,
    #[error("this kind of caller may not make this call")]
    PrincipalNotAllowed,
    #[error("only the account's owner and admins may do this")]
    OwnerOrAdminOnly,
    #[error("caller is not active in the account")]
    CallerNotActive,
    /// SPEC R30.
    #[error("all seats taken")]
    SeatsExhausted { license_type: LicenseType, capacity: u32 },
    #[error("capacity below assigned")]
    CapacityBelowAssigned { license_type: LicenseType, assigned: u32 },
    #[error("license already assigned")]
    AlreadyAssigned,
    #[error("license not assigned")]
    NotAssigned,
    #[error("phone number not found")]
    PhoneNumberNotFound,
    #[error("phone number already exists")]
    PhoneNumberTaken,
    #[error("phone number attached to a user")]
    PhoneNumberAttached,
    #[error("phone license required")]
    PhoneLicenseRequired,
    /// SPEC R23, code 1001.
    #[error("transfer target not in account")]
    TargetNotInAccount,
    /// SPEC R23, code 300.
    #[error("transfer target lacks a license")]
    TargetLacksLicense { kind: ContentKind, license_type: LicenseType },
    #[error("transfer not found")]
    TransferNotFound,
    #[error("subscription not found")]
    SubscriptionNotFound,
    #[error("subscription not active")]
    SubscriptionNotActive,
    /// SPEC R28: refunded once already.
    #[error("already refunded")]
    AlreadyRefunded,
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}
