//! The points of no return of the unlink and delete sagas (SPEC R21, R22), each run in its
//! step's transaction with the rules checked again under the account lock.

use serde_json::json;

use super::{Ctx, Result, actions, audit, user_target};
use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{Account, AccountSettings, Plan, Role};
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::store::{self, Conn};

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
    audit(tx, ctx, Some(account), actions::USER_UNLINKED, user_target(id), json!({"new_account": own.id.as_str()}))
        .await?;
    let change = Change::UserUnlinked { user_id: id.to_string(), new_account_id: own.id.to_string() };
    super::emit(tx, ctx, account, change).await?;
    audit(
        tx,
        ctx,
        Some(&own.id),
        actions::ACCOUNT_CREATED,
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
    store::settings::forget(tx, id).await?;
    store::users::delete(tx, id).await?;
    audit(
        tx,
        ctx,
        Some(account),
        actions::USER_DELETED,
        user_target(id),
        json!({"email": user.email.as_str(), "display_name": user.display_name}),
    )
    .await?;
    super::emit(tx, ctx, account, Change::UserDeleted { user_id: id.to_string() }).await
}
