//! User use cases: reading; starting the deactivate, reactivate, unlink and delete sagas
//! (SPEC R14-R19, R21-R24) and their local points of no return; and the sign-in check an
//! authentication front end asks (R18).

use serde_json::json;

use roster_workflow::{Engine, Started};

use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{SignIn, User, UserStatus};
use crate::domain::rules;
use crate::domain::values::{AccountId, Email, UserId};
use crate::effects::Origin;
use crate::effects::{
    Ctx, Result, audit, caller_from, calling_user_id, load_caller, lock_and_load_caller, operation_ctx, user_target,
};
use crate::sagas::lifecycle;
use crate::sagas::removal::{self, TransferRequest};
use crate::store::{self, Conn, users::ListFilter};

/// Any member of the account, or an operator, may read its users. A user caller and the
/// target are read in one query.
pub async fn get(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<User> {
    let (caller, target) = match &calling_user_id(&ctx.principal) {
        Some(me) => store::users::get_two(tx, me, id).await?,
        None => (None, store::users::get(tx, id).await?),
    };
    caller_from(tx, ctx, account, caller).await?.may_read(None)?;
    Ok(target.filter(|user| user.account_id == *account).ok_or(DomainError::UserNotFound)?)
}

pub async fn list(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    filter: &ListFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>> {
    load_caller(tx, ctx, account).await?.may_read(None)?;
    Ok(store::users::list(tx, account, filter, after, limit).await?)
}

/// SPEC R18: the user can no longer sign in from this commit on; settings stay. The saga
/// started in the same transaction reclaims every license and number and remembers them.
pub async fn deactivate(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    id: &UserId,
) -> Result<Started> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    lifecycle::deactivate_as(tx, ctx, engine, caller.member()?, account, &target).await
}

/// SPEC R19: active again from this commit on. The saga lifts licensing's hold and, when
/// asked, gives back exactly the remembered set as far as seats allow.
pub async fn reactivate(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    id: &UserId,
    restore_licenses: bool,
) -> Result<Started> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.member()?;
    let target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_reactivation(actor, &target)?;
    let remembered = if restore_licenses { store::reclaimed::get(tx, id, account).await? } else { None };
    let restore = remembered.or_else(|| restore_licenses.then(|| json!({})));
    let operation = lifecycle::start(tx, ctx, engine, lifecycle::REACTIVATE, account, id, restore).await?;
    store::users::set_status(tx, &target.id, UserStatus::Active, None).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::USER_REACTIVATED,
        user_target(&target.id),
        json!({"operation": operation.instance().id, "restore_licenses": restore_licenses}),
    )
    .await?;
    let change = Change::UserReactivated { user_id: target.id.to_string() };
    crate::effects::emit(tx, &operation_ctx(ctx, &operation), account, change).await?;
    Ok(operation)
}

/// SPEC R14, R15, R17, R21, R23, R24: checks everything identity knows, then starts the
/// unlink saga. Licensing's refusals (a target without the needed license, 300) come back
/// through the operation, with nothing changed.
pub async fn unlink(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    id: &UserId,
    transfer: Option<TransferRequest>,
) -> Result<Started> {
    start_removal(tx, ctx, engine, removal::Mode::Unlink, account, id, transfer).await
}

/// SPEC R14, R15, R17, R22, R23: as [`unlink`], for deletion.
pub async fn delete(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    id: &UserId,
    transfer: Option<TransferRequest>,
) -> Result<Started> {
    start_removal(tx, ctx, engine, removal::Mode::Delete, account, id, transfer).await
}

async fn start_removal(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    mode: removal::Mode,
    account: &AccountId,
    id: &UserId,
    transfer: Option<TransferRequest>,
) -> Result<Started> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    removal::remove_as(tx, ctx, engine, mode, caller.member()?, account, &target, transfer).await
}

/// SPEC R20: starts the delete saga for a deactivated user whose auto-delete day has come, as
/// identity itself (the sweep in `app::auto_delete` has checked the day, under the lock). No
/// transfer: what the user owned is deleted with them.
pub async fn start_auto_delete(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    id: &UserId,
) -> Result<roster_workflow::Instance> {
    let target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_removable(&target)?;
    let input = removal::RemovalInput {
        account_id: account.to_string(),
        user_id: id.to_string(),
        transfer: None,
        origin: Origin::of(ctx),
    };
    crate::effects::start_waiting_operation(tx, engine, ctx, removal::DELETE, account, id.as_str(), input).await
}

/// SPEC R18: whether `email` may sign in. Only services (the sign-in front end) and operators
/// ask. An active user anywhere wins over a deactivated one, which wins over a pending invite.
pub async fn check_sign_in(tx: &mut Conn, ctx: &Ctx, email: &Email) -> Result<SignIn> {
    if matches!(ctx.principal, roster_platform::auth::Principal::User { .. }) {
        return Err(DomainError::OperatorOnly.into());
    }
    let users = store::users::find_by_email(tx, email).await?;
    let with = |status| users.iter().find(|u| u.status == status).cloned();
    Ok(if let Some(user) = with(UserStatus::Active) {
        SignIn::Allowed(user)
    } else if let Some(user) = with(UserStatus::Deactivated) {
        SignIn::AccountDisabled(user)
    } else if let Some(user) = with(UserStatus::Pending) {
        SignIn::PendingActivation(user)
    } else {
        SignIn::UnknownUser
    })
}
