//! Ownership moving (SPEC R1-R6): the transfer saga's point of no return, and the hand-over
//! that it, support's reassignment (R11) and an approved ownership request (R8-R10) share.

use serde_json::json;

use super::{Ctx, Result, actions, audit, user_target};
use crate::domain::DomainError;
use crate::domain::events::{Change, OwnershipCause};
use crate::domain::model::{Integration, Role, User};
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, OwnershipRequestId, UserId};
use crate::store::{self, Conn, outbox};

/// The ownership saga's point of no return (SPEC R1-R3, R5, R6), checked again under the
/// account lock. The previous owner becomes an admin in the same transaction, so there is
/// exactly one owner at every instant (the database's one-owner index backs this up).
/// Billing access is derived from the owner role, so it moves with this commit. Returns the
/// integrations that now need the new owner's re-authorisation (R6).
pub async fn apply_ownership_transfer(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    previous_owner: &UserId,
    new_owner: &UserId,
) -> Result<Vec<Integration>> {
    if !store::accounts::lock(tx, id).await? {
        return Err(DomainError::AccountNotFound.into());
    }
    let previous = store::users::get_in_account(tx, id, previous_owner)
        .await?
        .filter(|u| u.role == Role::Owner)
        .ok_or(DomainError::NotAccountOwner)?;
    let target = store::users::get_in_account(tx, id, new_owner).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_ownership_transfer(&Actor::new(previous.clone(), None), &target)?;
    hand_over(tx, ctx, id, &previous, &target, None, OwnershipCause::Transfer).await
}

/// Moves ownership from `previous` to `target`, the checks already made under the account
/// lock: a direct transfer's (R1-R2) or an ownership request's (R8-R10, `request`). The
/// previous owner becomes an admin, integrations are flagged (R6), both are e-mailed and the
/// change is audited. Returns the integrations that now need re-authorisation.
pub async fn hand_over(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    previous: &User,
    target: &User,
    request: Option<&OwnershipRequestId>,
    cause: OwnershipCause,
) -> Result<Vec<Integration>> {
    // Demote first: the one-owner index is checked statement by statement.
    store::users::set_role(tx, &previous.id, &Role::Admin).await?;
    store::users::set_role(tx, &target.id, &Role::Owner).await?;
    let flagged = store::integrations::flag_for_reauthorization(tx, id, &previous.id).await?;
    let name = store::accounts::get(tx, id).await?.ok_or(DomainError::AccountNotFound)?.name;
    for (recipient, body) in [
        (&target.email, format!("You are now the owner of the Roster account {name}. You have access to its billing.")),
        (
            &previous.email,
            format!("Ownership of the Roster account {name} moved to {}. You remain an admin.", target.email),
        ),
    ] {
        let email = outbox::Email {
            account_id: Some(id.clone()),
            kind: "ownership_transferred",
            recipient: recipient.to_string(),
            subject: format!("Ownership of {name} has changed"),
            body,
        };
        outbox::enqueue(tx, &email, ctx.now_ms).await?;
    }
    audit(
        tx,
        ctx,
        Some(id),
        actions::OWNERSHIP_TRANSFERRED,
        user_target(&target.id),
        json!({"previous_owner": previous.id.as_str(), "new_owner": target.id.as_str(),
               "integrations_flagged": flagged.len(), "ownership_request": request.map(OwnershipRequestId::as_str)}),
    )
    .await?;
    let change = Change::OwnershipMoved {
        previous_owner_id: previous.id.to_string(),
        new_owner_id: target.id.to_string(),
        cause,
    };
    super::emit(tx, ctx, id, change).await?;
    Ok(flagged)
}
