//! Ownership requests (SPEC R8-R10): an admin (or, with no admins, a member) of a `pro`
//! account asks to become its owner; the owner approves or denies with a step-up proof, is
//! reminded daily, and after 168 hours the requester becomes owner by themselves.
//!
//! Every way a request ends (approval, denial, the deadline, a cancel, void) is one guarded
//! update from `open` under the account lock, so exactly one of them wins, and an approval
//! moves ownership in that same transaction (`effects::ownership_requests`). The
//! workflow `sagas::ownership_request` holds the timers: it waits for a decision or the
//! deadline, then moves the phone licenses an approval brings (R4).

use roster_platform::stored_text::StoredText;
use roster_workflow::Engine;
use serde_json::json;

use crate::domain::DomainError;
use crate::domain::model::{OwnershipRequest, OwnershipRequestState, Privilege};
use crate::domain::ownership_requests::{DECISION_WINDOW_MS, check_may_request};
use crate::domain::privileges::Caller;
use crate::domain::values::{AccountId, OwnershipRequestId};
use crate::effects::ownership_requests::{Answer, Decision, close, email, request_target, settle};
use crate::effects::{
    Ctx, Result, actions, audit, load_caller, lock_and_load_caller, owner, start_waiting_operation, user_target,
};
use crate::notify::human_time;
use crate::sagas::ownership_request::{KIND, WorkflowInput};
use crate::store::{self, Conn};

/// R8: opens a request and its workflow; the owner is e-mailed in the same commit.
pub async fn request(tx: &mut Conn, ctx: &Ctx, engine: &Engine, id: &AccountId) -> Result<OwnershipRequest> {
    let caller = lock_and_load_caller(tx, ctx, id).await?;
    let requester = caller.acting_user()?;
    let account = store::accounts::get(tx, id).await?.ok_or(DomainError::AccountNotFound)?;
    let admins = store::users::count_active_admins(tx, id).await?;
    check_may_request(&account, &requester.user, admins)?;
    if let Some(open) = store::ownership_requests::open_in(tx, id).await? {
        return Err(DomainError::OwnershipRequestOpen { request_id: open.id.to_string() }.into());
    }
    let current_owner = store::users::owner_of(tx, id).await?.ok_or(DomainError::AccountNotFound)?;
    let request_id = OwnershipRequestId::generate();
    let input = WorkflowInput { account_id: id.to_string(), ownership_request_id: request_id.to_string() };
    let subject = format!("ownership_request:{request_id}");
    let operation = start_waiting_operation(tx, engine, ctx, KIND, id, &subject, input).await?;
    let request = OwnershipRequest {
        id: request_id,
        account_id: id.clone(),
        requester_user_id: requester.user.id.clone(),
        owner_user_id: current_owner.id.clone(),
        state: OwnershipRequestState::Open,
        outcome_note: String::new(),
        operation_id: operation.id,
        reminders_sent: 0,
        last_reminded_at_ms: None,
        created_at_ms: ctx.now_ms,
        deadline_ms: ctx.now_ms + DECISION_WINDOW_MS,
        decided_at_ms: None,
    };
    store::ownership_requests::insert(tx, &request).await?;
    let body = format!(
        "{} asks to become the owner of the Roster account {}.\n\nApprove or deny the request (ownership request \
         {}) before {}. If you do neither, {} becomes the owner automatically at that time, with access to billing; \
         your phone licenses and numbers move to them if they hold no phone license. You will be reminded daily.",
        requester.user.email,
        account.name,
        request.id,
        human_time(request.deadline_ms),
        requester.user.email,
    );
    email(
        tx,
        ctx,
        &request,
        &current_owner,
        "ownership_requested",
        format!("{} asks to own {}", requester.user.email, account.name),
        body,
    )
    .await?;
    let details = json!({"ownership_request_id": request.id.as_str(), "owner": current_owner.id.as_str(),
                         "deadline_ms": request.deadline_ms});
    audit(tx, ctx, Some(id), actions::OWNERSHIP_REQUESTED, user_target(&requester.user.id), details).await?;
    Ok(request)
}

/// R10: the owner approves or denies, spending a step-up proof for that answer.
pub async fn answer(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    id: &AccountId,
    request_id: &OwnershipRequestId,
    answer: Answer,
    proof: &str,
) -> Result<OwnershipRequest> {
    let caller = lock_and_load_caller(tx, ctx, id).await?;
    let actor = owner(&caller)?;
    let request = open_request(tx, id, request_id).await?;
    super::step_up::spend(tx, ctx, actor, id, answer.purpose(), proof).await?;
    let request = settle(tx, ctx, request, Decision::Owner(answer)).await?;
    engine.due_now(tx, &request.operation_id).await?;
    Ok(request)
}

/// The requester withdraws their open request.
pub async fn cancel(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    id: &AccountId,
    request_id: &OwnershipRequestId,
) -> Result<OwnershipRequest> {
    let caller = lock_and_load_caller(tx, ctx, id).await?;
    let actor = caller.acting_user()?;
    let mut request = visible(tx, &caller, id, request_id).await?;
    if request.requester_user_id != actor.user.id {
        return Err(DomainError::NotRequester.into());
    }
    if request.state != OwnershipRequestState::Open {
        return Err(DomainError::OwnershipRequestClosed { state: request.state.as_str().to_owned() }.into());
    }
    close(tx, ctx, &mut request, OwnershipRequestState::Cancelled, "cancelled by the requester").await?;
    let owner = store::users::get_in_account(tx, id, &request.owner_user_id).await?;
    let body = format!("{} withdrew the request to become the owner. Nothing changes.", actor.user.email);
    for recipient in [Some(&actor.user), owner.as_ref()].into_iter().flatten() {
        email(
            tx,
            ctx,
            &request,
            recipient,
            "ownership_request_cancelled",
            "Ownership request withdrawn".into(),
            body.clone(),
        )
        .await?;
    }
    audit(tx, ctx, Some(id), actions::OWNERSHIP_REQUEST_CANCELLED, request_target(&request), json!({})).await?;
    engine.due_now(tx, &request.operation_id).await?;
    Ok(request)
}

/// One request, for its requester, the owner, user managers and operators.
pub async fn get(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    request_id: &OwnershipRequestId,
) -> Result<OwnershipRequest> {
    let caller = load_caller(tx, ctx, id).await?;
    visible(tx, &caller, id, request_id).await
}

/// Newest first. The owner, user managers and operators see every request; anyone else in
/// the account sees their own.
pub async fn list(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<OwnershipRequest>> {
    let caller = load_caller(tx, ctx, id).await?;
    let only = match &caller {
        Caller::Member(actor) if !actor.has(Privilege::ManageUsers) => Some(actor.user.id.clone()),
        Caller::Member(_) | Caller::Operator(_) => None,
        Caller::Service(_) => return Err(DomainError::OperatorOnly.into()),
    };
    Ok(store::ownership_requests::list(tx, id, only.as_ref(), before, limit).await?)
}

async fn open_request(tx: &mut Conn, id: &AccountId, request_id: &OwnershipRequestId) -> Result<OwnershipRequest> {
    let request =
        store::ownership_requests::get(tx, id, request_id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
    if request.state != OwnershipRequestState::Open {
        return Err(DomainError::OwnershipRequestClosed { state: request.state.as_str().to_owned() }.into());
    }
    Ok(request)
}

/// The request if the caller may see it (R34: others learn only that it is not found).
async fn visible(
    tx: &mut Conn,
    caller: &Caller,
    id: &AccountId,
    request_id: &OwnershipRequestId,
) -> Result<OwnershipRequest> {
    let request =
        store::ownership_requests::get(tx, id, request_id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
    let allowed = match caller {
        Caller::Operator(_) => true,
        Caller::Member(actor) => {
            actor.is_owner() || actor.has(Privilege::ManageUsers) || actor.user.id == request.requester_user_id
        }
        Caller::Service(_) => false,
    };
    if allowed { Ok(request) } else { Err(DomainError::OwnershipRequestNotFound.into()) }
}
