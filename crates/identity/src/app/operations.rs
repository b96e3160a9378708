//! Operations: who may see one (SPEC R34), decided from current data on every read (operators;
//! whoever started it, unless they have since been deactivated or removed; and members of its
//! account who manage users: the owner and admins, or a custom role with that privilege;
//! everyone else is told it does not exist), and the repairs: operators retry or resolve a
//! failed one, and operators or user managers cancel one before its point of no return.
//! Each repair is audited in the operation's account, in its transaction.

use roster_platform::auth::Principal;
use roster_platform::stored_text::StoredText;
use roster_workflow::{ControlError, Engine, Instance, NotCancellable, State};
use serde_json::json;

use crate::domain::DomainError;
use crate::domain::bulk::BulkAction;
use crate::domain::model::{Privilege, UserStatus};
use crate::domain::values::AccountId;
use crate::effects::actions::{OPERATION_CANCELLED, OPERATION_RESOLVED, OPERATION_RETRIED};
use crate::effects::{Ctx, Result, audit, load_caller};
use crate::store::Conn;

pub async fn may_see(tx: &mut Conn, ctx: &Ctx, operation: &Instance) -> Result<()> {
    if matches!(ctx.principal, Principal::Operator { .. }) {
        return Ok(());
    }
    if ctx.principal.audit_name() == operation.started_by && starter_still_here(tx, &ctx.principal).await? {
        return Ok(());
    }
    let account = AccountId::parse(&operation.account_id).map_err(|_| DomainError::OperationNotFound)?;
    match load_caller(tx, ctx, &account).await {
        Ok(caller) if caller.may_read(Some(Privilege::ManageUsers)).is_ok() => Ok(()),
        Ok(_) | Err(crate::effects::Error::Domain(_)) => Err(DomainError::OperationNotFound.into()),
        Err(other) => Err(other),
    }
}

/// A user who started an operation keeps seeing it while they exist and are not deactivated
/// (an invitee who is still pending may follow their acceptance); services keep seeing theirs.
async fn starter_still_here(tx: &mut Conn, principal: &Principal) -> Result<bool> {
    if !matches!(principal, Principal::User { .. }) {
        return Ok(true);
    }
    let user = crate::effects::calling_user(tx, principal).await?;
    Ok(user.is_some_and(|user| user.status != UserStatus::Deactivated))
}

/// Listing an account's operations: its user managers, or operators.
pub async fn may_list(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<()> {
    load_caller(tx, ctx, account).await?.may_read(Some(Privilege::ManageUsers))?;
    Ok(())
}

/// Longest note an operator may leave when resolving.
pub const MAX_NOTE_CHARS: usize = 1_000;

fn operator_only(ctx: &Ctx) -> Result<()> {
    match ctx.principal {
        Principal::Operator { .. } => Ok(()),
        _ => Err(DomainError::OperatorOnly.into()),
    }
}

/// A state as the Operations API names it (the engine's `completed` is SUCCEEDED).
fn api_state(state: State) -> String {
    match state {
        State::Completed => "succeeded".to_owned(),
        other => other.as_str().to_owned(),
    }
}

fn refusal(error: ControlError) -> crate::effects::Error {
    match error {
        ControlError::NotFound => DomainError::OperationNotFound.into(),
        ControlError::NotFailed(state) => DomainError::OperationNotFailed { state: api_state(state) }.into(),
        ControlError::NotCancellable(NotCancellable::Finished(state)) => {
            DomainError::OperationNotCancellable { why: format!("it has already finished ({})", api_state(state)) }
                .into()
        }
        ControlError::NotCancellable(why) => DomainError::OperationNotCancellable { why: why.to_string() }.into(),
        too_late @ ControlError::RetryTooLate { .. } => {
            DomainError::OperationRetryTooLate { message: too_late.to_string() }.into()
        }
        ControlError::Busy { operation_id } => DomainError::OperationInProgress { operation_id }.into(),
        ControlError::Db(error) => error.into(),
    }
}

async fn audited(
    tx: &mut Conn,
    ctx: &Ctx,
    action: &str,
    instance: &Instance,
    details: serde_json::Value,
) -> Result<()> {
    let account = AccountId::parse(&instance.account_id).ok();
    audit(tx, ctx, account.as_ref(), action, format!("operation:{}", instance.id), details).await
}

/// Operators: runs a failed operation again from the step that failed.
pub async fn retry(tx: &mut Conn, ctx: &Ctx, engine: &Engine, id: &str) -> Result<Instance> {
    operator_only(ctx)?;
    let instance = engine.retry(tx, id).await.map_err(refusal)?;
    let details = json!({"kind": instance.kind, "step": instance.current_step});
    audited(tx, ctx, OPERATION_RETRIED, &instance, details).await?;
    Ok(instance)
}

/// Operators: closes a failed operation, with a note saying what was set right by hand.
pub async fn resolve(tx: &mut Conn, ctx: &Ctx, engine: &Engine, id: &str, note: &str) -> Result<Instance> {
    operator_only(ctx)?;
    let note = note.trim();
    if note.is_empty() {
        return Err(DomainError::invalid("note", "is required: say what was done by hand").into());
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(DomainError::invalid("note", format!("is longer than {MAX_NOTE_CHARS} characters")).into());
    }
    let instance = engine.resolve(tx, id, note, &ctx.principal.audit_name()).await.map_err(refusal)?;
    let details = json!({"kind": instance.kind, "step": instance.current_step, "note": note});
    audited(tx, ctx, OPERATION_RESOLVED, &instance, details).await?;
    Ok(instance)
}

/// Operators and the account's user managers (checked by the caller against current data):
/// asks a running operation to stop before its point of no return; a bulk operation stops
/// starting rows instead, and lets the running ones finish.
pub async fn cancel(tx: &mut Conn, ctx: &Ctx, engine: &Engine, operation: Instance) -> Result<Instance> {
    let instance = if BulkAction::of_operation_kind(&operation.kind).is_some() {
        super::bulk::cancel(tx, ctx, engine, operation).await?
    } else {
        engine.cancel(tx, &operation.id, &ctx.principal.audit_name()).await.map_err(refusal)?
    };
    let details = json!({"kind": instance.kind, "step": instance.current_step});
    audited(tx, ctx, OPERATION_CANCELLED, &instance, details).await?;
    Ok(instance)
}
