//! The accept saga's local steps (SPEC R27-R29): the invitee joins under both account locks,
//! and the refunds the move caused are audited; and the checks under those locks, which the
//! accept use case makes first.

use serde_json::json;

use super::{Ctx, Result, actions, audit, user_target};
use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{Invitation, InvitationStatus, User, UserStatus};
use crate::domain::rules;
use crate::domain::values::{AccountId, InvitationId, UserId};
use crate::store::{self, Conn};

/// Locks both accounts (in a fixed order, so two acceptances cannot deadlock), then checks
/// under the locks what may have changed: the invitation, the invitee, and who else is in
/// the invitee's current account.
pub async fn lock_and_check(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    invitation: &InvitationId,
    caller: &User,
) -> Result<Invitation> {
    let mut to_lock = vec![account.clone(), caller.account_id.clone()];
    to_lock.sort();
    to_lock.dedup();
    for account in &to_lock {
        if !store::accounts::lock(tx, account).await? {
            return Err(DomainError::InvitationNotFound.into());
        }
    }
    let invitation = store::invitations::get(tx, account, invitation).await?.ok_or(DomainError::InvitationNotFound)?;
    let caller = store::users::get(tx, &caller.id).await?.ok_or(DomainError::InvitationNotFound)?;
    rules::check_acceptance(&invitation, &caller.email, ctx.now_ms)?;
    if caller.id != invitation.user_id {
        match caller.status {
            UserStatus::Active => {}
            UserStatus::Deactivated => return Err(DomainError::CallerDisabled.into()),
            UserStatus::Pending => return Err(DomainError::InvitationNotFound.into()),
        }
        let others = store::users::count_others(tx, &caller.account_id, &caller.id).await?;
        rules::check_leaving_account(others)?;
    }
    Ok(invitation)
}

/// The accept saga's point of no return. A new person's pending user becomes active; an
/// invitee from another account moves over keeping their user id, and their old, now empty
/// account closes. Everything is checked again under the locks.
pub async fn join(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    invitation: &InvitationId,
    user: &UserId,
) -> Result<()> {
    let caller = store::users::get(tx, user).await?.ok_or(DomainError::InvitationNotFound)?;
    let invitation = lock_and_check(tx, ctx, account, invitation, &caller).await?;
    let user_id = caller.id.to_string();
    if caller.id == invitation.user_id {
        store::users::set_status(tx, &caller.id, UserStatus::Active, None).await?;
        super::emit(
            tx,
            ctx,
            &invitation.account_id,
            Change::UserJoined { user_id: user_id.clone(), from_account_id: None },
        )
        .await?;
        super::emit(tx, ctx, &invitation.account_id, Change::UserActivated { user_id }).await?;
    } else {
        let from_account_id = Some(caller.account_id.to_string());
        super::emit(tx, ctx, &invitation.account_id, Change::UserJoined { user_id, from_account_id }).await?;
        store::settings::forget(tx, &invitation.user_id).await?;
        store::users::delete(tx, &invitation.user_id).await?;
        store::users::move_to_account(tx, &caller.id, &invitation.account_id, &invitation.role).await?;
        store::accounts::close(tx, &caller.account_id, ctx.now_ms).await?;
        audit(
            tx,
            ctx,
            Some(&caller.account_id),
            actions::ACCOUNT_CLOSED,
            format!("account:{}", caller.account_id),
            json!({"reason": "owner joined another account"}),
        )
        .await?;
    }
    store::invitations::set_status(tx, &invitation.id, InvitationStatus::Accepted).await?;
    audit(
        tx,
        ctx,
        Some(&invitation.account_id),
        actions::INVITATION_ACCEPTED,
        user_target(&caller.id),
        json!({"invitation": invitation.id.as_str()}),
    )
    .await
}

/// The refunds an acceptance caused (SPEC R28), audited beside the acceptance in the account
/// the invitee joined, naming the invitation (R33).
pub async fn record_refunds(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    invitation: &InvitationId,
    user: &UserId,
    refunds: serde_json::Value,
) -> Result<()> {
    let details = json!({"invitation": invitation.as_str(), "refunds": refunds});
    audit(tx, ctx, Some(account), actions::INVITATION_REFUNDED, user_target(user), details).await
}
