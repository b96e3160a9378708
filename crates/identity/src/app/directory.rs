//! Read-only lookups other Roster services make (licensing's authorisation and R31's
//! "active member of the same account" check).

use super::{Ctx, Result};
use crate::domain::DomainError;
use crate::domain::model::Role;
use crate::domain::privileges::Actor;
use crate::domain::values::{AccountId, UserId};
use crate::store::{self, Conn};
use roster_platform::auth::Principal;

/// A user of `account` in any status, with their current privileges. Only services may ask:
/// the answer reveals other users' roles. A user of another account reads as not found.
pub async fn get_member(tx: &mut Conn, ctx: &Ctx, account: &AccountId, user: &UserId) -> Result<Actor> {
    lookup_account(tx, ctx, account).await?;
    let user =
        store::users::get(tx, user).await?.filter(|u| u.account_id == *account).ok_or(DomainError::UserNotFound)?;
    let custom = match &user.role {
        Role::Custom(role_id) => store::roles::get(tx, account, role_id).await?.map(|role| role.privileges),
        _ => None,
    };
    Ok(Actor::new(user, custom))
}

/// The owner of an existing account; services only.
pub async fn lookup_account(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<UserId> {
    if !matches!(ctx.principal, Principal::Service { .. }) {
        return Err(DomainError::OperatorOnly.into());
    }
    if store::accounts::get(tx, account).await?.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    let owner = store::users::owner_of(tx, account).await?.ok_or(DomainError::AccountNotFound)?;
    Ok(owner.id)
}
