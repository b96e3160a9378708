//! What use cases and saga steps both stand on, below both: who is calling (`Ctx`) and as
//! whom current data sees them (SPEC R34), how a change is audited (R33) and refused, how an
//! operation is started, and the local effects saga steps run in their transaction (a user
//! leaving or being deleted, an invitee joining, ownership moving, an ownership request's
//! timers). Nothing here knows who calls it: it imports neither `app` nor `sagas`.

pub mod accounts;
pub mod actions;
pub mod invitations;
pub mod ownership_requests;
pub mod refusals;
pub mod users;

use roster_platform::auth::Principal;
use roster_workflow::{Engine, Failure, Instance, NewWorkflow, StartError, Started, StepCtx, StepError};
use serde::{Deserialize, Serialize};

use roster_platform::event_log::NewEvent;
use roster_platform::folded::{self, Folded};

use crate::domain::DomainError;
use crate::domain::events::Change;
use std::collections::BTreeSet;

use crate::domain::model::{AuditEvent, Privilege, Role, User};
use crate::domain::privileges::{Actor, Caller, Need};
use crate::domain::values::{AccountId, UserId};
use crate::store::{self, Conn};

/// Who is calling, for which request, at what time.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    /// The client's request id; empty for reads.
    pub request_id: String,
    pub now_ms: i64,
    /// The operation (saga) a step runs for; empty outside one. Events name it.
    pub operation_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A bug: e.g. a saga kind that was never registered.
    #[error("internal: {0}")]
    Internal(String),
}

/// Starts a saga in the caller's transaction, leased to this replica's worker, which drives
/// it once the transaction commits. One unfinished saga per subject: a second is refused with
/// `OPERATION_IN_PROGRESS` naming the first.
pub async fn start_operation(
    tx: &mut Conn,
    engine: &Engine,
    ctx: &Ctx,
    kind: &'static str,
    account: &AccountId,
    subject: &str,
    input: impl serde::Serialize,
) -> Result<Started> {
    let new = new_workflow(ctx, kind, account, subject, input)?;
    engine.start_leased(tx, new).await.map_err(start_refused)
}

/// [`start_operation`] for a workflow that begins by waiting (a timer, a decision), so no
/// worker needs to take it at once: any replica's worker claims it when it is due. Call
/// `Engine::wake` after the commit.
pub async fn start_waiting_operation(
    tx: &mut Conn,
    engine: &Engine,
    ctx: &Ctx,
    kind: &'static str,
    account: &AccountId,
    subject: &str,
    input: impl serde::Serialize,
) -> Result<Instance> {
    let new = new_workflow(ctx, kind, account, subject, input)?;
    engine.start(tx, new).await.map_err(start_refused)
}

fn new_workflow(
    ctx: &Ctx,
    kind: &'static str,
    account: &AccountId,
    subject: &str,
    input: impl serde::Serialize,
) -> Result<NewWorkflow> {
    let input = serde_json::to_value(input).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(NewWorkflow {
        kind,
        account_id: account.to_string(),
        subject: subject.to_owned(),
        started_by: ctx.principal.audit_name(),
        input,
    })
}

fn start_refused(error: StartError) -> Error {
    match error {
        StartError::Busy { operation_id, .. } => DomainError::OperationInProgress { operation_id }.into(),
        StartError::Db(error) => Error::Db(error),
        StartError::UnknownKind(kind) => Error::Internal(format!("saga {kind} is not registered")),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Who asked for the operation and with which request id; local steps audit under it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Origin {
    pub started_by: String,
    pub request_id: String,
}

impl Origin {
    pub fn of(ctx: &Ctx) -> Self {
        Self { started_by: ctx.principal.audit_name(), request_id: ctx.request_id.clone() }
    }

    /// The use-case context a local step runs in: the original principal, at the step's time.
    pub fn ctx(&self, step: &StepCtx) -> std::result::Result<Ctx, StepError> {
        let principal = Principal::from_audit_name(&self.started_by).ok_or_else(|| {
            StepError::Refused(Failure {
                reason: "WORKFLOW_DATA_CORRUPT".into(),
                code: None,
                message: format!("unreadable principal {:?}", self.started_by),
            })
        })?;
        Ok(Ctx {
            principal,
            request_id: self.request_id.clone(),
            now_ms: step.now_ms,
            operation_id: step.workflow_id.clone(),
        })
    }
}

/// Takes the account's write lock and loads the caller under it, in one statement.
pub async fn lock_and_load_caller(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Caller> {
    let user_id = calling_user_id(&ctx.principal);
    let locked = store::account_locks::lock_and_read_caller(tx, account, user_id.as_ref()).await?;
    let locked = locked.ok_or(DomainError::AccountNotFound)?;
    caller_of(ctx, account, locked.user, locked.privileges)
}

/// The caller as current data describes them. Users of other accounts, users that no longer
/// exist and unknown accounts all read as "account not found", so nothing leaks.
pub async fn load_caller(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Caller> {
    let user = calling_user(tx, &ctx.principal).await?;
    caller_from(tx, ctx, account, user).await
}

/// [`load_caller`] for a caller whose user row (`None` for operators and services) was read
/// together with something else, to save a round trip.
pub async fn caller_from(tx: &mut Conn, ctx: &Ctx, account: &AccountId, user: Option<User>) -> Result<Caller> {
    let custom = match (&ctx.principal, &user) {
        (Principal::User { .. }, Some(found))
            if found.account_id == *account && found.status == crate::domain::model::UserStatus::Active =>
        {
            match &found.role {
                Role::Custom(role_id) => store::roles::get(tx, account, role_id).await?.map(|role| role.privileges),
                _ => None,
            }
        }
        (Principal::User { .. }, _) => None,
        _ => {
            if store::accounts::get(tx, account).await?.is_none() {
                return Err(DomainError::AccountNotFound.into());
            }
            None
        }
    };
    caller_of(ctx, account, user, custom)
}

/// The caller, from what [`caller_from`] loads, read already: the calling user (for a user
/// principal) and the privileges of their custom role, if they hold one of this account's.
/// For operators and services the account must be known to be open.
pub fn caller_of(
    ctx: &Ctx,
    account: &AccountId,
    user: Option<User>,
    custom: Option<BTreeSet<Privilege>>,
) -> Result<Caller> {
    Ok(match &ctx.principal {
        Principal::User { .. } => {
            let user = user.filter(|u| u.account_id == *account).ok_or(DomainError::AccountNotFound)?;
            match user.status {
                crate::domain::model::UserStatus::Pending => return Err(DomainError::CallerNotActive.into()),
                crate::domain::model::UserStatus::Deactivated => return Err(DomainError::CallerDisabled.into()),
                crate::domain::model::UserStatus::Active => {}
            }
            Caller::Member(Actor::new(user, custom))
        }
        Principal::Operator { name } => Caller::Operator(name.clone()),
        Principal::Service { name } => Caller::Service(name.clone()),
    })
}

/// May this caller make this kind of change request, decided from current data before an
/// earlier answer to the same request id is replayed (SPEC R34)? In an account: a user of it
/// who is active and at least what `need` asks (the use case then applies its full rules).
/// Without one (accepting an invitation, creating an account): any principal but a
/// deactivated user.
pub async fn may_request(tx: &mut Conn, ctx: &Ctx, scope: Option<&(AccountId, Need)>) -> Result<()> {
    if let Some((account, need)) = scope {
        return Ok(load_caller(tx, ctx, account).await?.satisfies(*need)?);
    }
    match calling_user(tx, &ctx.principal).await? {
        Some(user) if user.status == crate::domain::model::UserStatus::Deactivated => {
            Err(DomainError::CallerDisabled.into())
        }
        _ => Ok(()),
    }
}

/// The user a principal names, as current data has them; `None` for operators, services and
/// users that do not exist.
pub async fn calling_user(tx: &mut Conn, principal: &Principal) -> Result<Option<crate::domain::model::User>> {
    match calling_user_id(principal) {
        Some(id) => Ok(store::users::get(tx, &id).await?),
        None => Ok(None),
    }
}

/// The user a principal names, for reading them beside something else; `None` for operators,
/// services and subjects that are no user id at all (they match no row either way).
pub fn calling_user_id(principal: &Principal) -> Option<UserId> {
    match principal {
        Principal::User { user_id } => UserId::parse(user_id).ok(),
        _ => None,
    }
}

/// The acting owner; anyone else is refused with `NOT_ACCOUNT_OWNER` (SPEC R1).
pub fn owner(caller: &Caller) -> Result<&Actor> {
    match caller {
        Caller::Member(actor) if actor.is_owner() => Ok(actor),
        _ => Err(DomainError::NotAccountOwner.into()),
    }
}

/// Appends a successful change to the audit trail, in the change's transaction (with its last
/// statement: `roster_platform::folded::write_last`).
pub async fn audit(
    tx: &mut Conn,
    ctx: &Ctx,
    account: Option<&AccountId>,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<()> {
    let event = audit_event(ctx, account, action, target, "ok".to_owned(), details.to_string());
    folded::write_last(tx, |write| store::audit::insert_into(write, &event)).await?;
    Ok(())
}

/// Records a refused change (outcome `refused:<REASON>`) once the change has rolled back, on a
/// connection of its own. Refusals are audited so abuse is visible.
pub async fn audit_refusal(
    tx: &mut Conn,
    ctx: &Ctx,
    account: Option<&AccountId>,
    action: &str,
    reason: &str,
) -> Result<()> {
    let event = audit_event(ctx, account, action, String::new(), format!("refused:{reason}"), "{}".to_owned());
    store::audit::insert(tx, &event).await?;
    Ok(())
}

/// [`audit`] as one of a change's folded writes.
pub fn audit_into(
    write: &mut Folded,
    ctx: &Ctx,
    account: Option<&AccountId>,
    action: &str,
    target: String,
    details: serde_json::Value,
) {
    store::audit::insert_into(write, &audit_event(ctx, account, action, target, "ok".to_owned(), details.to_string()));
}

fn audit_event(
    ctx: &Ctx,
    account: Option<&AccountId>,
    action: &str,
    target: String,
    outcome: String,
    details_json: String,
) -> AuditEvent {
    AuditEvent {
        // Ordered by the time it shows, so the trail lists newest first without inversions.
        id: roster_platform::ids::at(ctx.now_ms),
        account_id: account.cloned(),
        principal: ctx.principal.audit_name(),
        action: action.to_owned(),
        target,
        outcome,
        request_id: ctx.request_id.clone(),
        details_json,
        at_ms: ctx.now_ms,
    }
}

/// `ctx` for a change that starts `operation`, so its event names the operation.
pub fn operation_ctx(ctx: &Ctx, operation: &Started) -> Ctx {
    Ctx { operation_id: operation.instance().id.clone(), ..ctx.clone() }
}

/// Appends `change` to the event log in the change's own transaction, so the event is in the
/// log exactly when the change committed.
pub async fn emit(tx: &mut Conn, ctx: &Ctx, account: &AccountId, change: Change) -> Result<()> {
    let event = new_event(ctx, account, change)?;
    folded::write_last(tx, |write| roster_platform::event_log::store::append_into(write, &event)).await?;
    Ok(())
}

/// [`emit`] as one of a change's folded writes.
pub fn emit_into(write: &mut Folded, ctx: &Ctx, account: &AccountId, change: Change) -> Result<()> {
    roster_platform::event_log::store::append_into(write, &new_event(ctx, account, change)?);
    Ok(())
}

fn new_event(ctx: &Ctx, account: &AccountId, change: Change) -> Result<NewEvent> {
    let payload = serde_json::to_string(&change).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(NewEvent {
        at_ms: ctx.now_ms,
        account_id: account.to_string(),
        subject: change.subject(),
        kind: change.kind(),
        request_id: ctx.request_id.clone(),
        operation_id: ctx.operation_id.clone(),
        principal: ctx.principal.audit_name(),
        payload,
    })
}

pub fn user_target(id: &UserId) -> String {
    format!("user:{id}")
}
