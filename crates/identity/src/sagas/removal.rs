//! Unlink (SPEC R21, R24) and delete (R22), each with the optional transfer of R23:
//!
//! 1. `transfer_content`: the chosen kinds go to the target, all or nothing (undo: move
//!    exactly those items back).
//! 2. `reclaim_licenses`: every license and number (undo: restore exactly that set).
//! 3. the pivot, local: the user leaves for an account of their own (unlink) or is removed
//!    (delete), after the rules are checked again under the account lock.
//! 4. what was not transferred moves to the new account (unlink) or is deleted (delete).
//!
//! A refusal in 1-3 (the target lost its license, the user was made an admin meanwhile)
//! undoes what was done, so nothing changed in either service.

use roster_workflow::{Engine, Outcome, Started, StepCtx, StepFuture, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::licensing::{Licensing, TransferSpec, counts_json, license_set_json, license_set_pb};
use super::{refused, step_failed};
use crate::domain::DomainError;
use crate::domain::model::User;
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{self, Ctx, Origin, audit, start_operation, user_target};
use crate::store::{self, Conn};

pub const UNLINK: &str = "user.unlink";
pub const DELETE: &str = "user.delete";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Unlink,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovalInput {
    pub account_id: String,
    pub user_id: String,
    pub transfer: Option<TransferSpec>,
    pub origin: Origin,
}

/// A transfer of R23 as the caller asked for it.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub target: UserId,
    /// "meeting", "webinar", "event", "recording"; at least one.
    pub kinds: Vec<&'static str>,
}

/// [`unlink`] or [`delete`] by `actor`, loaded under the account lock this transaction holds
/// (the rows of a bulk removal share one lock and one load).
#[allow(clippy::too_many_arguments)]
pub async fn remove_as(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    mode: Mode,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> effects::Result<Started> {
    let id = &target.id;
    let transfer = check_removal_as(tx, mode, actor, account, target, transfer).await?;
    let (kind, action) = match mode {
        Mode::Unlink => (UNLINK, "user.unlink_requested"),
        Mode::Delete => (DELETE, "user.delete_requested"),
    };
    let details = json!({"transfer": transfer});
    let input =
        RemovalInput { account_id: account.to_string(), user_id: id.to_string(), transfer, origin: Origin::of(ctx) };
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
    mode: Mode,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> effects::Result<Option<TransferSpec>> {
    match mode {
        Mode::Unlink => {
            let managed =
                store::accounts::get(conn, account).await?.ok_or(DomainError::AccountNotFound)?.managed_domains;
            rules::check_unlink(actor, target, &managed)?;
        }
        Mode::Delete => rules::check_removal(actor, target)?,
    }
    let Some(request) = transfer else { return Ok(None) };
    let to = store::users::get_in_account(conn, account, &request.target).await?;
    rules::check_transfer_target(target, to.as_ref())?;
    Ok(Some(TransferSpec {
        target_user_id: request.target.to_string(),
        kinds: request.kinds.iter().map(|k| (*k).to_owned()).collect(),
    }))
}

pub struct Removal {
    mode: Mode,
    licensing: Licensing,
}

impl Removal {
    pub fn unlink(licensing: Licensing) -> Self {
        Self { mode: Mode::Unlink, licensing }
    }

    pub fn delete(licensing: Licensing) -> Self {
        Self { mode: Mode::Delete, licensing }
    }

    async fn pivot_step(&self, ctx: &mut StepCtx, input: &RemovalInput) -> Result<Outcome, roster_workflow::StepError> {
        let account = AccountId::parse(&input.account_id).map_err(|_| refused(&DomainError::AccountNotFound))?;
        let user = UserId::parse(&input.user_id).map_err(|_| refused(&DomainError::UserNotFound))?;
        let local = input.origin.ctx(ctx)?;
        let tx = ctx.tx().await?;
        match self.mode {
            Mode::Unlink => {
                let new_account =
                    effects::users::leave_account(tx, &local, &account, &user).await.map_err(step_failed)?;
                Ok(Outcome::Done(json!({ "new_account_id": new_account.as_str() })))
            }
            Mode::Delete => {
                effects::users::remove(tx, &local, &account, &user).await.map_err(step_failed)?;
                Ok(Outcome::Done(Value::Null))
            }
        }
    }
}

impl Workflow for Removal {
    fn kind(&self) -> &'static str {
        match self.mode {
            Mode::Unlink => UNLINK,
            Mode::Delete => DELETE,
        }
    }

    fn steps(&self) -> &'static [&'static str] {
        match self.mode {
            Mode::Unlink => &["transfer_content", "reclaim_licenses", "leave_account", "rehome_content"],
            Mode::Delete => &["transfer_content", "reclaim_licenses", "delete_user", "delete_content"],
        }
    }

    fn pivot(&self) -> usize {
        // Once the user has left (or is deleted) there is no way back.
        3
    }

    fn is_local(&self, step: usize) -> bool {
        // Leaving the account (or being deleted) writes only identity's database.
        step == 2
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: RemovalInput = ctx.input()?;
            let (account, user) = (input.account_id.as_str(), input.user_id.as_str());
            match step {
                0 => match &input.transfer {
                    Some(transfer) => {
                        let done = self
                            .licensing
                            .transfer_content(
                                ctx.request_id(),
                                account,
                                user,
                                &transfer.target_user_id,
                                transfer.kinds(),
                            )
                            .await?;
                        Ok(Outcome::Done(json!({
                            "transfer_id": done.transfer_id,
                            "moved": counts_json(&done.moved.unwrap_or_default()),
                            "kept": counts_json(&done.kept.unwrap_or_default()),
                        })))
                    }
                    None => Ok(Outcome::Done(json!({ "transfer_id": null }))),
                },
                1 => {
                    let reclaimed = self.licensing.reclaim(ctx.request_id(), account, user).await?;
                    Ok(Outcome::Done(license_set_json(&reclaimed)))
                }
                2 => self.pivot_step(ctx, &input).await,
                _ => {
                    let counts = match self.mode {
                        Mode::Unlink => {
                            let left: Value = ctx.output(2)?.unwrap_or(Value::Null);
                            let new_account = left["new_account_id"].as_str().unwrap_or_default();
                            self.licensing.rehome_content(ctx.request_id(), account, user, new_account).await?
                        }
                        Mode::Delete => self.licensing.delete_content(ctx.request_id(), account, user).await?,
                    };
                    Ok(Outcome::Done(counts_json(&counts)))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: RemovalInput = ctx.input()?;
            let done: Value = ctx.output(step)?.unwrap_or(Value::Null);
            match step {
                0 => match done["transfer_id"].as_str() {
                    Some(transfer) => {
                        let returned =
                            self.licensing.undo_transfer(ctx.request_id(), &input.account_id, transfer).await?;
                        Ok(Outcome::Done(counts_json(&returned)))
                    }
                    None => Ok(Outcome::Done(Value::Null)),
                },
                _ => {
                    let answer = self
                        .licensing
                        .restore(ctx.request_id(), &input.account_id, &input.user_id, license_set_pb(&done))
                        .await?;
                    Ok(Outcome::Done(json!({
                        "restored": license_set_json(&answer.restored.unwrap_or_default()),
                        "not_restored": license_set_json(&answer.not_restored.unwrap_or_default()),
                    })))
                }
            }
        })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let input: Option<RemovalInput> = ctx.input().ok();
        let output = |step| ctx.output::<Value>(step).ok().flatten().unwrap_or(Value::Null);
        let transfer = output(0);
        let mut result = json!({
            "user_id": input.map(|i| i.user_id),
            "transferred": transfer["moved"],
            "kept": transfer["kept"],
            "reclaimed": output(1),
        });
        match self.mode {
            Mode::Unlink => {
                result["new_account_id"] = output(2)["new_account_id"].clone();
                result["rehomed"] = output(3);
            }
            Mode::Delete => result["deleted"] = output(3),
        }
        result
    }
}
