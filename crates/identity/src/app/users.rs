//! User use cases: reading, deactivation and reactivation as local state changes (SPEC R15,
//! R17-R19), and the sign-in check an authentication front end asks (R18).

use serde_json::json;

use super::{Ctx, Result, audit, load_caller, lock_and_load_caller, user_target};
use crate::domain::DomainError;
use crate::domain::model::{SignIn, User, UserStatus};
use crate::domain::rules;
use crate::domain::values::{AccountId, Email, UserId};
use crate::store::{self, Tx, users::ListFilter};

/// Any member of the account, or an operator, may read its users.
pub async fn get(tx: &mut Tx, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<User> {
    load_caller(tx, ctx, account).await?.may_read(None)?;
    Ok(store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?)
}

pub async fn list(
    tx: &mut Tx,
    ctx: &Ctx,
    account: &AccountId,
    filter: &ListFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>> {
    load_caller(tx, ctx, account).await?.may_read(None)?;
    Ok(store::users::list(tx, account, filter, after, limit).await?)
}

/// SPEC R18: the user can no longer sign in; settings stay. License reclaim joins this step
/// when licensing exists (it becomes a saga).
pub async fn deactivate(tx: &mut Tx, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<User> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.member()?;
    let mut target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_deactivation(actor, &target)?;
    target.status = UserStatus::Deactivated;
    target.deactivated_at_ms = Some(ctx.now_ms);
    store::users::set_status(tx, &target.id, target.status, target.deactivated_at_ms).await?;
    audit(tx, ctx, Some(account), "user.deactivated", user_target(&target.id), json!({})).await?;
    Ok(target)
}

/// SPEC R19: active again, with no licenses given back.
pub async fn reactivate(tx: &mut Tx, ctx: &Ctx, account: &AccountId, id: &UserId) -> Result<User> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.member()?;
    let mut target = store::users::get_in_account(tx, account, id).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_reactivation(actor, &target)?;
    target.status = UserStatus::Active;
    target.deactivated_at_ms = None;
    store::users::set_status(tx, &target.id, target.status, None).await?;
    audit(tx, ctx, Some(account), "user.reactivated", user_target(&target.id), json!({})).await?;
    Ok(target)
}

/// SPEC R18: whether `email` may sign in. Only services (the sign-in front end) and operators
/// ask. An active user anywhere wins over a deactivated one, which wins over a pending invite.
pub async fn check_sign_in(tx: &mut Tx, ctx: &Ctx, email: &Email) -> Result<SignIn> {
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
