//! Read-only lookups other Roster services make (licensing's authorisation and R31's
//! "active member of the same account" check).

use crate::domain::DomainError;
use crate::domain::model::Role;
use crate::domain::privileges::Actor;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{Ctx, Result};
use crate::store::{self, Conn};
use roster_platform::auth::Principal;

/// A user of `account` in any status, with their current privileges. Only services may ask:
/// the answer reveals other users' roles. A user of another account reads as not found.
pub async fn get_member(tx: &mut Conn, ctx: &Ctx, account: &AccountId, user: &UserId) -> Result<Actor> {
    lookup_account(tx, ctx, account, false).await?;
    let user =
        store::users::get(tx, user).await?.filter(|u| u.account_id == *account).ok_or(DomainError::UserNotFound)?;
    actor(tx, account, user).await
}

/// Users to look up at once, at most.
pub const MAX_MEMBERS: usize = 16;

/// [`get_member`] for several users in one query; those not in `account` are left out.
pub async fn get_members(tx: &mut Conn, ctx: &Ctx, account: &AccountId, users: &[UserId]) -> Result<Vec<Actor>> {
    lookup_account(tx, ctx, account, false).await?;
    let mut actors = Vec::with_capacity(users.len());
    for user in store::users::get_many_in_account(tx, account, users).await? {
        actors.push(actor(tx, account, user).await?);
    }
    Ok(actors)
}

/// A user with the privileges their role gives now (a custom role's are read).
async fn actor(tx: &mut Conn, account: &AccountId, user: crate::domain::model::User) -> Result<Actor> {
    let custom = match &user.role {
        Role::Custom(role_id) => store::roles::get(tx, account, role_id).await?.map(|role| role.privileges),
        _ => None,
    };
    Ok(Actor::new(user, custom))
}

/// An account as other services see it: its owner, or that it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    Open {
        owner: UserId,
    },
    /// Its last user joined another account (SPEC R27); its records (a refund) remain.
    Closed,
}

/// An existing account; a closed one only when `include_closed`. Services only.
pub async fn lookup_account(tx: &mut Conn, ctx: &Ctx, account: &AccountId, include_closed: bool) -> Result<AccountRef> {
    if !matches!(ctx.principal, Principal::Service { .. }) {
        return Err(DomainError::OperatorOnly.into());
    }
    match store::accounts::is_closed(tx, account).await? {
        None => Err(DomainError::AccountNotFound.into()),
        Some(true) if include_closed => Ok(AccountRef::Closed),
        Some(true) => Err(DomainError::AccountNotFound.into()),
        Some(false) => {
            let owner = store::users::owner_of(tx, account).await?.ok_or(DomainError::AccountNotFound)?;
            Ok(AccountRef::Open { owner: owner.id })
        }
    }
}
