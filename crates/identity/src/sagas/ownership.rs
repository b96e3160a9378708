//! Ownership transfer (SPEC R1-R6) with the phone licenses of R4:
//!
//! 1. `move_phone_licenses`, when the caller confirmed it: the owner's phone licenses and
//!    numbers go to the new owner (undo: move them back). Unconfirmed, the step asks licensing
//!    again: a phone license or number the owner got after the request was checked would now
//!    move unannounced, so the transfer is refused (`PHONE_TRANSFER_UNCONFIRMED`, nothing done).
//! 2. `transfer_ownership`, the pivot, local: the rules are checked again under the account
//!    lock and ownership moves (the previous owner becomes an admin, integrations are flagged,
//!    both are e-mailed). A refusal here moves the phone licenses back.

use roster_workflow::{Outcome, StepCtx, StepFuture, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::licensing::{Licensing, license_set_json};
use super::{refused, step_failed};
use crate::domain::DomainError;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{self, Origin};

pub const TRANSFER_OWNERSHIP: &str = "account.transfer_ownership";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnershipInput {
    pub account_id: String,
    pub previous_owner_user_id: String,
    pub new_owner_user_id: String,
    /// The caller confirmed that phone licenses and numbers move (R4).
    pub move_phone: bool,
    pub origin: Origin,
}

pub struct TransferOwnership {
    pub licensing: Licensing,
}

impl Workflow for TransferOwnership {
    fn kind(&self) -> &'static str {
        TRANSFER_OWNERSHIP
    }

    fn steps(&self) -> &'static [&'static str] {
        &["move_phone_licenses", "transfer_ownership"]
    }

    fn pivot(&self) -> usize {
        // A refusal of the transfer itself still moves the phone licenses back.
        2
    }

    fn is_local(&self, step: usize) -> bool {
        // The transfer itself writes only identity's database.
        step == 1
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: OwnershipInput = ctx.input()?;
            match step {
                0 if input.move_phone => {
                    let moved = self
                        .licensing
                        .move_phone(
                            ctx.request_id(),
                            &input.account_id,
                            &input.previous_owner_user_id,
                            &input.new_owner_user_id,
                        )
                        .await?;
                    Ok(Outcome::Done(license_set_json(&moved)))
                }
                0 => {
                    let holdings = self
                        .licensing
                        .phone_holdings(&input.account_id, &input.previous_owner_user_id, &input.new_owner_user_id)
                        .await?;
                    let would_move = holdings.would_move();
                    if !would_move.is_empty() {
                        return Err(refused(&DomainError::PhoneTransferUnconfirmed { would_move }));
                    }
                    Ok(Outcome::Done(Value::Null))
                }
                _ => {
                    let account =
                        AccountId::parse(&input.account_id).map_err(|_| refused(&DomainError::AccountNotFound))?;
                    let previous = UserId::parse(&input.previous_owner_user_id)
                        .map_err(|_| refused(&DomainError::NotAccountOwner))?;
                    let next =
                        UserId::parse(&input.new_owner_user_id).map_err(|_| refused(&DomainError::UserNotFound))?;
                    let local = input.origin.ctx(ctx)?;
                    let tx = ctx.tx().await?;
                    let flagged = effects::accounts::apply_ownership_transfer(tx, &local, &account, &previous, &next)
                        .await
                        .map_err(step_failed)?;
                    Ok(Outcome::Done(json!({
                        "integrations_needing_reauthorization":
                            flagged.iter().map(|i| i.id.to_string()).collect::<Vec<_>>(),
                    })))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, _step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: OwnershipInput = ctx.input()?;
            if !input.move_phone {
                return Ok(Outcome::Done(Value::Null));
            }
            let back = self
                .licensing
                .move_phone(
                    ctx.request_id(),
                    &input.account_id,
                    &input.new_owner_user_id,
                    &input.previous_owner_user_id,
                )
                .await?;
            Ok(Outcome::Done(license_set_json(&back)))
        })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let input: Option<OwnershipInput> = ctx.input().ok();
        let transferred: Value = ctx.output(1).ok().flatten().unwrap_or(Value::Null);
        json!({
            "account_id": input.as_ref().map(|i| i.account_id.clone()),
            "new_owner_user_id": input.as_ref().map(|i| i.new_owner_user_id.clone()),
            "previous_owner_user_id": input.as_ref().map(|i| i.previous_owner_user_id.clone()),
            "integrations_needing_reauthorization": transferred["integrations_needing_reauthorization"],
            "moved_phone": ctx.output::<Value>(0).ok().flatten(),
        })
    }
}
