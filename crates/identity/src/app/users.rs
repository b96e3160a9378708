//! User use cases: reading; starting the deactivate, reactivate, unlink and delete sagas
//! (SPEC R14-R19, R21-R24) and their local points of no return; and the sign-in check an
//! authentication front end asks (R18).

use roster_platform::auth::Principal;
use serde_json::json;

use roster_workflow::{Engine, Started};

use super::{Ctx, Result, audit, caller_from, load_caller, lock_and_load_caller, start_operation, user_target};
use crate::domain::DomainError;
use crate::domain::model::{Account, AccountSettings, Plan, Role, SignIn, User, UserStatus};
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, Email, UserId};
use crate::sagas::{Origin, lifecycle, removal};
use crate::store::{self, Conn, users::ListFilter};

/// Any member of the account, or an operator, may read its users. A user caller and the
/// target are read in one query.
pub async fn get(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<User> {
    let me = match &ctx.principal {
        Principal::User { user_id } => UserId::parse(user_id).ok(),
        _ => None,
    };
    let (caller, target) = match &me {
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
    deactivate_as(tx, ctx, engine, caller.member()?, account, &target).await
}

/// [`deactivate`] by `actor`, loaded under the account lock this transaction holds (the rows
/// of a bulk removal share one lock and one load).
pub async fn deactivate_as(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    actor: &Actor,
    account: &AccountId,
    target: &User,
) -> Result<Started> {
    rules::check_deactivation(actor, target)?;
    let operation = start_lifecycle(tx, ctx, engine, lifecycle::DEACTIVATE, account, &target.id, None).await?;
    store::users::set_status(tx, &target.id, UserStatus::Deactivated, Some(ctx.now_ms)).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::app::actions::USER_DEACTIVATED,
        user_target(&target.id),
        json!({"operation": operation.instance().id}),
    )
    .await?;
    Ok(operation)
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
    let operation = start_lifecycle(tx, ctx, engine, lifecycle::REACTIVATE, account, id, restore).await?;
    store::users::set_status(tx, &target.id, UserStatus::Active, None).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::app::actions::USER_REACTIVATED,
        user_target(&target.id),
        json!({"operation": operation.instance().id, "restore_licenses": restore_licenses}),
    )
    .await?;
    Ok(operation)
}

async fn start_lifecycle(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    kind: &'static str,
    account: &AccountId,
    id: &UserId,
    restore: Option<serde_json::Value>,
) -> Result<Started> {
    let input = lifecycle::LifecycleInput {
        account_id: account.to_string(),
        user_id: id.to_string(),
        restore,
        origin: Origin::of(ctx),
    };
    start_operation(tx, engine, ctx, kind, account, id.as_str(), input).await
}

/// A transfer of R23 as the caller asked for it.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub target: UserId,
    /// "meeting", "webinar", "event", "recording"; at least one.
    pub kinds: Vec<&'static str>,
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
    remove_as(tx, ctx, engine, mode, caller.member()?, account, &target, transfer).await
}

/// [`unlink`] or [`delete`] by `actor`, loaded under the account lock this transaction holds
/// (the rows of a bulk removal share one lock and one load).
#[allow(clippy::too_many_arguments)]
pub async fn remove_as(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    mode: removal::Mode,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> Result<Started> {
    let id = &target.id;
    let transfer = check_removal_as(tx, mode, actor, account, target, transfer).await?;
    let (kind, action) = match mode {
        removal::Mode::Unlink => (removal::UNLINK, "user.unlink_requested"),
        removal::Mode::Delete => (removal::DELETE, "user.delete_requested"),
    };
    let details = json!({"transfer": transfer});
    let input = removal::RemovalInput {
        account_id: account.to_string(),
        user_id: id.to_string(),
        transfer,
        origin: Origin::of(ctx),
    };
    let operation = start_operation(tx, engine, ctx, kind, account, id.as_str(), input).await?;
    audit(
        tx,
        ctx,
        Some(account),
        action,
        user_target(id),
        json!({"operation": operation.instance().id, "details": details}),
    )
    .await?;
    Ok(operation)
}

/// What identity checks before an unlink or delete by `actor` starts (R14, R15, R17, R21,
/// R23): the rules for `mode`, then the transfer's target. Returns the transfer as the saga
/// takes it. Reads only, so a dry run asks the same.
pub async fn check_removal_as(
    conn: &mut Conn,
    mode: removal::Mode,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> Result<Option<removal::TransferSpec>> {
    match mode {
        removal::Mode::Unlink => {
            let managed =
                store::accounts::get(conn, account).await?.ok_or(DomainError::AccountNotFound)?.managed_domains;
            rules::check_unlink(actor, target, &managed)?;
        }
        removal::Mode::Delete => rules::check_removal(actor, target)?,
    }
    let Some(request) = transfer else { return Ok(None) };
    let to = store::users::get_in_account(conn, account, &request.target).await?;
    rules::check_transfer_target(target, to.as_ref())?;
    Ok(Some(removal::TransferSpec {
        target_user_id: request.target.to_string(),
        kinds: request.kinds.iter().map(|k| (*k).to_owned()).collect(),
    }))
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
    super::start_waiting_operation(tx, engine, ctx, removal::DELETE, account, id.as_str(), input).await
}

/// The unlink saga's point of no return (SPEC R21): with the rules checked again under the
/// account lock, the user leaves for a new account of their own, as its owner, keeping their
/// id, e-mail and settings. Returns the new account.
pub async fn leave_account(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<AccountId> {
    let old = store::accounts::get(tx, account).await?.ok_or(DomainError::AccountNotFound)?;
    if !store::accounts::lock(tx, account).await? {
        return Err(DomainError::AccountNotFound.into());
    }
    let user = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_removable(&user)?;
    rules::check_not_managed(&user, &old.managed_domains)?;
    let own = Account {
        id: AccountId::generate(),
        name: format!("{}'s account", user.display_name),
        plan: Plan::Basic,
        csm_eligible: false,
        managed_domains: Vec::new(),
        settings: AccountSettings::default(),
        created_at_ms: ctx.now_ms,
    };
    store::accounts::insert(tx, &own).await?;
    store::users::move_to_account(tx, id, &own.id, &Role::Owner).await?;
    store::reclaimed::forget(tx, id).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::app::actions::USER_UNLINKED,
        user_target(id),
        json!({"new_account": own.id.as_str()}),
    )
    .await?;
    audit(
        tx,
        ctx,
        Some(&own.id),
        crate::app::actions::ACCOUNT_CREATED,
        format!("account:{}", own.id),
        json!({"owner": id.as_str(), "unlinked_from": account.as_str()}),
    )
    .await?;
    Ok(own.id)
}

/// The delete saga's point of no return (SPEC R22): the user row goes, so the e-mail may sign
/// up again; the audit record keeps who they were (the tombstone).
pub async fn remove(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<()> {
    if !store::accounts::lock(tx, account).await? {
        return Err(DomainError::AccountNotFound.into());
    }
    let user = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_removable(&user)?;
    store::reclaimed::forget(tx, id).await?;
    store::user_emails::forget(tx, id).await?;
    store::users::delete(tx, id).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::app::actions::USER_DELETED,
        user_target(id),
        json!({"email": user.email.as_str(), "display_name": user.display_name}),
    )
    .await
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
