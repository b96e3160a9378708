//! Who may see an operation (SPEC R34), decided from current data on every read: operators;
//! whoever started it, unless they have since been deactivated or removed; and members of its
//! account who manage users (the owner and admins, or a custom role with that privilege).
//! Everyone else is told it does not exist.

use roster_platform::auth::Principal;
use roster_workflow::Instance;

use super::{Ctx, Result, load_caller};
use crate::domain::DomainError;
use crate::domain::model::{Privilege, UserStatus};
use crate::domain::values::AccountId;
use crate::store::Tx;

pub async fn may_see(tx: &mut Tx, ctx: &Ctx, operation: &Instance) -> Result<()> {
    if matches!(ctx.principal, Principal::Operator { .. }) {
        return Ok(());
    }
    if ctx.principal.audit_name() == operation.started_by && starter_still_here(tx, &ctx.principal).await? {
        return Ok(());
    }
    let account = AccountId::parse(&operation.account_id).map_err(|_| DomainError::OperationNotFound)?;
    match load_caller(tx, ctx, &account).await {
        Ok(caller) if caller.may_read(Some(Privilege::ManageUsers)).is_ok() => Ok(()),
        Ok(_) | Err(super::Error::Domain(_)) => Err(DomainError::OperationNotFound.into()),
        Err(other) => Err(other),
    }
}

/// A user who started an operation keeps seeing it while they exist and are not deactivated
/// (an invitee who is still pending may follow their acceptance); services keep seeing theirs.
async fn starter_still_here(tx: &mut Tx, principal: &Principal) -> Result<bool> {
    if !matches!(principal, Principal::User { .. }) {
        return Ok(true);
    }
    let user = super::calling_user(tx, principal).await?;
    Ok(user.is_some_and(|user| user.status != UserStatus::Deactivated))
}

/// Listing an account's operations: its user managers, or operators.
pub async fn may_list(tx: &mut Tx, ctx: &Ctx, account: &AccountId) -> Result<()> {
    load_caller(tx, ctx, account).await?.may_read(Some(Privilege::ManageUsers))?;
    Ok(())
}
