//! Who may read identity's event log (`roster.events.v1`), decided from current data (SPEC
//! R34): service principals and operators, any account; an account's active owner and admins,
//! their own account only.

use roster_platform::auth::Principal;

use crate::domain::DomainError;
use crate::domain::model::UserStatus;
use crate::effects::{Ctx, Result, calling_user};
use crate::store::Conn;

/// The accounts a reader's filter may cover: `requested` for operators and services (empty:
/// all); for a user, their own account, which `requested` may name and nothing else.
pub async fn readable_accounts(conn: &mut Conn, ctx: &Ctx, requested: &[String]) -> Result<Vec<String>> {
    if !matches!(ctx.principal, Principal::User { .. }) {
        return Ok(requested.to_vec());
    }
    let user = calling_user(conn, &ctx.principal).await?.ok_or(DomainError::OwnerOrAdminOnly)?;
    match user.status {
        UserStatus::Deactivated => return Err(DomainError::CallerDisabled.into()),
        UserStatus::Pending => return Err(DomainError::CallerNotActive.into()),
        UserStatus::Active => {}
    }
    let own = user.account_id.to_string();
    if !(user.is_owner() || user.is_admin()) || requested.iter().any(|account| *account != own) {
        return Err(DomainError::OwnerOrAdminOnly.into());
    }
    Ok(vec![own])
}
