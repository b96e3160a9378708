//! Dry runs (`validate_only`) of deactivate, unlink and delete, identity's half: the checks
//! the real call makes before its saga starts (the caller, the rules, the transfer target, an
//! operation already running on the user), on committed data, writing nothing. Licensing's
//! half, what the saga would take, move and leave, is `sagas::dry_run`.

use roster_workflow::Engine;

use super::users::{self, TransferRequest};
use super::{Ctx, Result, load_caller};
use crate::domain::DomainError;
use crate::domain::bulk::BulkAction;
use crate::domain::model::{Privilege, User};
use crate::domain::privileges::{Actor, Need};
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::sagas::removal::{Mode, TransferSpec};
use crate::store::{self, Conn};

/// A call identity would let start: what licensing is then asked to preview.
#[derive(Debug, Clone)]
pub struct Checked {
    pub action: BulkAction,
    pub account: AccountId,
    pub user: UserId,
    pub transfer: Option<TransferSpec>,
}

/// The single-user dry run: the caller is checked as the real call's gate and use case check
/// them (the manage-users privilege, an active member), without the account lock, which only
/// orders writes.
pub async fn check(
    conn: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    action: BulkAction,
    account: &AccountId,
    id: &UserId,
    transfer: Option<TransferRequest>,
) -> Result<Checked> {
    let caller = load_caller(conn, ctx, account).await?;
    caller.satisfies(Need::Privilege(Privilege::ManageUsers))?;
    let target = store::users::get_in_account(conn, account, id).await?.ok_or(DomainError::UserNotFound)?;
    check_as(conn, engine, action, caller.member()?, account, &target, transfer).await
}

/// The checks of `action` by `actor` on `target`, in the order the real call makes them: its
/// rules, then the saga's start, which is refused while another operation works on the user.
pub async fn check_as(
    conn: &mut Conn,
    engine: &Engine,
    action: BulkAction,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> Result<Checked> {
    let transfer = match action {
        BulkAction::Deactivate => {
            rules::check_deactivation(actor, target)?;
            None
        }
        BulkAction::Unlink => users::check_removal_as(conn, Mode::Unlink, actor, account, target, transfer).await?,
        BulkAction::Delete => users::check_removal_as(conn, Mode::Delete, actor, account, target, transfer).await?,
    };
    if let Some(operation_id) = engine.running_on(conn, target.id.as_str()).await? {
        return Err(DomainError::OperationInProgress { operation_id }.into());
    }
    Ok(Checked { action, account: account.clone(), user: target.id.clone(), transfer })
}
