//! Values the domain's unit tests build their cases from.

use super::model::{Role, User, UserStatus};
use super::values::{AccountId, Email, UserId};

/// A user of a fresh account with `role` and `status`.
pub fn user(role: Role, status: UserStatus) -> User {
    User {
        id: UserId::generate(),
        account_id: AccountId::generate(),
        email: Email::parse("u@example.com").expect("email"),
        display_name: "U".into(),
        status,
        role,
        external: false,
        created_at_ms: 0,
        deactivated_at_ms: None,
        custom_role_name: None,
    }
}
