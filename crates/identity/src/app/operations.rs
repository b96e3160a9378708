//! Who may see an operation (SPEC R34): operators; whoever started it; and members of its
//! account who manage users (the owner and admins, or a custom role with that privilege).
//! Everyone else is told it does not exist.

use roster_platform::auth::Principal;
use roster_workflow::Instance;

use super::{Ctx, Result, load_caller};
use crate::domain::DomainError;
use crate::domain::model::Privilege;
use crate::domain::values::AccountId;
use crate::store::Tx;

pub async fn may_see(tx: &mut Tx, ctx: &Ctx, operation: &Instance) -> Result<()> {
    if matches!(ctx.principal, Principal::Operator { .. }) || ctx.principal.audit_name() == operation.started_by {
        return Ok(());
    }
    let account = AccountId::parse(&operation.account_id).map_err(|_| DomainError::OperationNotFound)?;
    match load_caller(tx, ctx, &account).await {
        Ok(caller) if caller.may_read(Some(Privilege::ManageUsers)).is_ok() => Ok(()),
        Ok(_) | Err(super::Error::Domain(_)) => Err(DomainError::OperationNotFound.into()),
        Err(other) => Err(other),
    }
}

/// Listing an account's operations: its user managers, or operators.
pub async fn may_list(tx: &mut Tx, ctx: &Ctx, account: &AccountId) -> Result<()> {
    load_caller(tx, ctx, account).await?.may_read(Some(Privilege::ManageUsers))?;
    Ok(())
}
