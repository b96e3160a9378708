//! Deactivate (SPEC R18) and reactivate (R19). The status change is the use case's own, made
//! in the request's transaction so sign-in is refused (or allowed) at once; the saga then
//! reclaims (or restores) licenses and numbers, forward only.

use roster_workflow::{Engine, Outcome, Started, StepCtx, StepError, StepFuture, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::licensing::{Licensing, license_set_json, license_set_pb};
use super::refused;
use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{User, UserStatus};
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{self, Ctx, Origin, actions, audit, start_operation, user_target};
use crate::store::{self, Conn};

pub const DEACTIVATE: &str = "user.deactivate";
pub const REACTIVATE: &str = "user.reactivate";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifecycleInput {
    pub account_id: String,
    pub user_id: String,
    /// Reactivation only: the remembered set to give back (`None`: give nothing back).
    #[serde(default)]
    pub restore: Option<Value>,
    pub origin: Origin,
}

impl LifecycleInput {
    pub(super) fn ids(&self) -> Result<(AccountId, UserId), StepError> {
        let account = AccountId::parse(&self.account_id).map_err(|_| refused(&DomainError::AccountNotFound))?;
        let user = UserId::parse(&self.user_id).map_err(|_| refused(&DomainError::UserNotFound))?;
        Ok((account, user))
    }
}

/// SPEC R18, the use case's change: by `actor`, loaded under the account lock this transaction holds (the rows
/// of a bulk removal share one lock and one load).
pub async fn deactivate_as(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    actor: &Actor,
    account: &AccountId,
    target: &User,
) -> effects::Result<Started> {
    rules::check_deactivation(actor, target)?;
    let operation = start(tx, ctx, engine, DEACTIVATE, account, &target.id, None).await?;
    store::users::set_status(tx, &target.id, UserStatus::Deactivated, Some(ctx.now_ms)).await?;
    audit(
        tx,
        ctx,
        Some(account),
        actions::USER_DEACTIVATED,
        user_target(&target.id),
        json!({"operation": operation.instance().id}),
    )
    .await?;
    let change = Change::UserDeactivated { user_id: target.id.to_string() };
    effects::emit(tx, &effects::operation_ctx(ctx, &operation), account, change).await?;
    Ok(operation)
}

pub async fn start(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    kind: &'static str,
    account: &AccountId,
    id: &UserId,
    restore: Option<serde_json::Value>,
) -> effects::Result<Started> {
    let input =
        LifecycleInput { account_id: account.to_string(), user_id: id.to_string(), restore, origin: Origin::of(ctx) };
    start_operation(tx, engine, ctx, kind, account, id.as_str(), input).await
}

pub struct Deactivate {
    pub licensing: Licensing,
}

impl Workflow for Deactivate {
    fn kind(&self) -> &'static str {
        DEACTIVATE
    }

    fn steps(&self) -> &'static [&'static str] {
        &["reclaim_licenses", "remember_licenses"]
    }

    fn pivot(&self) -> usize {
        0
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: LifecycleInput = ctx.input()?;
            match step {
                0 => {
                    let reclaimed = self.licensing.reclaim(ctx.request_id(), &input.account_id, &input.user_id).await?;
                    Ok(Outcome::Done(license_set_json(&reclaimed)))
                }
                _ => {
                    let (account, user) = input.ids()?;
                    let reclaimed: Value = ctx.output(0)?.unwrap_or(Value::Null);
                    let local = input.origin.ctx(ctx)?;
                    let tx = ctx.tx().await?;
                    store::reclaimed::remember(tx, &user, &account, &reclaimed, local.now_ms).await?;
                    audit(
                        tx,
                        &local,
                        Some(&account),
                        actions::USER_LICENSES_RECLAIMED,
                        user_target(&user),
                        json!({ "reclaimed": reclaimed }),
                    )
                    .await
                    .map_err(super::step_failed)?;
                    Ok(Outcome::Done(Value::Null))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, _step: usize, _ctx: &'a mut StepCtx) -> StepFuture<'a> {
        // The pivot is the first step: nothing is ever undone.
        Box::pin(async { Ok(Outcome::Done(Value::Null)) })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let input: Option<LifecycleInput> = ctx.input().ok();
        json!({
            "user_id": input.map(|i| i.user_id),
            "reclaimed": ctx.output::<Value>(0).ok().flatten(),
        })
    }
}

pub struct Reactivate {
    pub licensing: Licensing,
}

impl Workflow for Reactivate {
    fn kind(&self) -> &'static str {
        REACTIVATE
    }

    fn steps(&self) -> &'static [&'static str] {
        &["restore_licenses", "forget_licenses"]
    }

    fn pivot(&self) -> usize {
        0
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: LifecycleInput = ctx.input()?;
            match step {
                0 => {
                    // Restoring the empty set still matters: it lifts the hold the reclaim
                    // left, so admins can assign licenses again.
                    let wanted = input.restore.as_ref().map(license_set_pb).unwrap_or_default();
                    let answer =
                        self.licensing.restore(ctx.request_id(), &input.account_id, &input.user_id, wanted).await?;
                    Ok(Outcome::Done(json!({
                        "restored": license_set_json(&answer.restored.unwrap_or_default()),
                        "not_restored": license_set_json(&answer.not_restored.unwrap_or_default()),
                    })))
                }
                _ => {
                    let (_, user) = input.ids()?;
                    store::reclaimed::forget(ctx.tx().await?, &user).await?;
                    Ok(Outcome::Done(Value::Null))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, _step: usize, _ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async { Ok(Outcome::Done(Value::Null)) })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let input: Option<LifecycleInput> = ctx.input().ok();
        let restore: Value = ctx.output(0).ok().flatten().unwrap_or(Value::Null);
        json!({
            "user_id": input.map(|i| i.user_id),
            "restored": restore["restored"],
            "not_restored": restore["not_restored"],
        })
    }
}
