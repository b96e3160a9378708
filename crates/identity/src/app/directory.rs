//! Read-only lookups other Roster services make (licensing's authorisation and R31's
//! "active member of the same account" check).

use crate::domain::DomainError;
use crate::domain::privileges::Actor;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{Ctx, Result};
use crate::store::{self, Conn};
use roster_platform::auth::Principal;

/// A user of `account` in any status, with their current privileges. Only services may ask:
/// the answer reveals other users' roles. A user of another account reads as not found.
pub async fn get_member(tx: &mut Conn, ctx: &Ctx, account: &AccountId, user: &UserId) -> Result<Actor> {
    let mut found = get_members(tx, ctx, account, std::slice::from_ref(user)).await?;
    Ok(found.pop().ok_or(DomainError::UserNotFound)?)
}

/// Users to look up at once, at most.
pub const MAX_MEMBERS: usize = 16;

/// [`get_member`] for several users, in one query with their account and custom roles; those
/// not in `account` are left out.
pub async fn get_members(tx: &mut Conn, ctx: &Ctx, account: &AccountId, users: &[UserId]) -> Result<Vec<Actor>> {
    services_only(ctx)?;
    match store::members::of_account(tx, account, users).await? {
        Some((false, members)) => {
            Ok(members.into_iter().filter_map(|m| Some(Actor::new(m.user?, m.privileges))).collect())
        }
        // Unknown and closed accounts alike.
        _ => Err(DomainError::AccountNotFound.into()),
    }
}

fn services_only(ctx: &Ctx) -> Result<()> {
    match ctx.principal {
        Principal::Service { .. } => Ok(()),
        _ => Err(DomainError::OperatorOnly.into()),
    }
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
    services_only(ctx)?;
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
