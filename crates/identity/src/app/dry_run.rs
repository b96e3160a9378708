//! Dry runs (`validate_only`) of deactivate, unlink and delete, identity's half: the checks
//! the real call makes before its saga starts (the caller, then `sagas::dry_run::check_as`:
//! the rules, the transfer target, an operation already running on the user), on committed
//! data, writing nothing. Licensing's half, what the saga would take, move and leave, is
//! `sagas::dry_run::preview`.

use roster_workflow::Engine;

use crate::domain::DomainError;
use crate::domain::bulk::BulkAction;
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{Ctx, Result, load_caller};
use crate::sagas::dry_run::{Checked, check_as};
use crate::sagas::removal::TransferRequest;
use crate::store::{self, Conn};

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
