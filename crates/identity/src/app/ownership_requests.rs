//! Ownership requests (SPEC R8-R10): an admin (or, with no admins, a member) of a `pro`
//! account asks to become its owner; the owner approves or denies with a step-up proof, is
//! reminded daily, and after 168 hours the requester becomes owner by themselves.
//!
//! Every way a request ends (approval, denial, the deadline, a cancel, void) is one guarded
//! update from `open` under the account lock, so exactly one of them wins, and an approval
//! moves ownership in that same transaction. The workflow of kind [`KIND`] (in
//! `sagas::ownership_request`) holds the timers: it calls [`await_decision`], then moves the
//! phone licenses an approval brings (R4). This module owns the request and its workflow's
//! input, so the saga depends on it and not the other way round.

use roster_platform::auth::Principal;
use roster_platform::stored_text::StoredText;
use roster_workflow::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Ctx, Result, audit, load_caller, lock_and_load_caller, owner, start_waiting_operation, user_target};
use crate::domain::DomainError;
use crate::domain::model::{OwnershipRequest, OwnershipRequestState, Privilege, StepUpPurpose, User};
use crate::domain::ownership_requests::{DECISION_WINDOW_MS, Due, check_may_request, due, void_reason};
use crate::domain::privileges::Caller;
use crate::domain::values::{AccountId, OwnershipRequestId, UserId};
use crate::notify::human_time;
use crate::store::{self, Conn, outbox};

/// The workflow that reminds the owner and decides at the deadline.
pub const KIND: &str = "account.ownership_request";

/// The workflow's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowInput {
    pub account_id: String,
    pub ownership_request_id: String,
}

/// How the owner answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
}

impl Answer {
    fn purpose(self) -> StepUpPurpose {
        match self {
            Self::Approve => StepUpPurpose::ApproveOwnershipRequest,
            Self::Deny => StepUpPurpose::DenyOwnershipRequest,
        }
    }
}

/// What ends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Owner(Answer),
    Deadline,
}

/// What the workflow's waiting step learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Still open: look again at this instant.
    Until(i64),
    /// Final. `moved` names (previous owner, new owner) when ownership moved.
    Ended { state: OwnershipRequestState, moved: Option<(UserId, UserId)> },
}

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
    audit(tx, ctx, Some(id), super::actions::OWNERSHIP_REQUESTED, user_target(&requester.user.id), details).await?;
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
    audit(tx, ctx, Some(id), super::actions::OWNERSHIP_REQUEST_CANCELLED, request_target(&request), json!({})).await?;
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

/// The workflow's waiting step (R9): sends the daily reminder, decides at the deadline, and
/// reports how a request ended. Runs in the step's transaction, which commits with the
/// workflow's own record, so a reminder goes out once however often the step runs.
pub async fn await_decision(tx: &mut Conn, input: &WorkflowInput, request_id: &str, now_ms: i64) -> Result<Waiting> {
    let account = AccountId::from_stored(input.account_id.clone());
    let ctx = system_ctx(request_id, now_ms);
    if !store::accounts::lock(tx, &account).await? {
        return Ok(Waiting::Ended { state: OwnershipRequestState::Void, moved: None });
    }
    let id = OwnershipRequestId::from_stored(input.ownership_request_id.clone());
    let request =
        store::ownership_requests::get(tx, &account, &id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
    if request.state != OwnershipRequestState::Open {
        return Ok(ended(&request));
    }
    match due(&request, now_ms) {
        Due::Sleep(at) => Ok(Waiting::Until(at)),
        Due::Remind => {
            store::ownership_requests::reminded(tx, &request.id, now_ms).await?;
            remind(tx, &ctx, &request).await?;
            Ok(Waiting::Until(match due(&OwnershipRequest { last_reminded_at_ms: Some(now_ms), ..request }, now_ms) {
                Due::Sleep(at) => at,
                Due::Remind | Due::Decide => now_ms,
            }))
        }
        Due::Decide => Ok(ended(&settle(tx, &ctx, request, Decision::Deadline).await?)),
    }
}

/// The workflow's last step: both owners learn which phone licenses and numbers moved with
/// ownership (R4). `moved` is licensing's license set, as the saga recorded it.
pub async fn announce_phone_move(
    tx: &mut Conn,
    input: &WorkflowInput,
    moved: &serde_json::Value,
    request_id: &str,
    now_ms: i64,
) -> Result<()> {
    let ctx = system_ctx(request_id, now_ms);
    let account = AccountId::from_stored(input.account_id.clone());
    let id = OwnershipRequestId::from_stored(input.ownership_request_id.clone());
    let request =
        store::ownership_requests::get(tx, &account, &id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
    let listed = |key: &str| -> Vec<String> {
        moved[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    let (licenses, numbers) = (listed("license_types"), listed("phone_numbers"));
    let body = format!(
        "With ownership request {} the previous owner's phone licenses and numbers moved to the new owner, as a \
         confirmed transfer moves them.\n\nLicenses: {}\nPhone numbers: {}",
        request.id,
        if licenses.is_empty() { "none".to_owned() } else { licenses.join(", ") },
        if numbers.is_empty() { "none".to_owned() } else { numbers.join(", ") },
    );
    for user in [&request.owner_user_id, &request.requester_user_id] {
        if let Some(user) = store::users::get_in_account(tx, &account, user).await? {
            email(
                tx,
                &ctx,
                &request,
                &user,
                "ownership_phone_moved",
                "Phone licenses moved with ownership".into(),
                body.clone(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Changes the workflow makes by itself are audited as identity's own.
fn system_ctx(request_id: &str, now_ms: i64) -> Ctx {
    Ctx {
        principal: Principal::Service { name: roster_platform::auth::IDENTITY_SERVICE.into() },
        request_id: request_id.to_owned(),
        now_ms,
    }
}

fn ended(request: &OwnershipRequest) -> Waiting {
    let moved = matches!(request.state, OwnershipRequestState::Approved | OwnershipRequestState::AutoApproved)
        .then(|| (request.owner_user_id.clone(), request.requester_user_id.clone()));
    Waiting::Ended { state: request.state, moved }
}

async fn remind(tx: &mut Conn, ctx: &Ctx, request: &OwnershipRequest) -> Result<()> {
    let Some(owner) = store::users::get_in_account(tx, &request.account_id, &request.owner_user_id).await? else {
        return Ok(());
    };
    let requester = store::users::get(tx, &request.requester_user_id).await?;
    let who = requester.map_or_else(|| "A user".to_owned(), |u| u.email.to_string());
    let body = format!(
        "Reminder: {who} asked to become the owner of this account (ownership request {}). Approve or deny it \
         before {}; otherwise they become the owner automatically at that time.",
        request.id,
        human_time(request.deadline_ms),
    );
    email(
        tx,
        ctx,
        request,
        &owner,
        "ownership_request_reminder",
        "Reminder: a request to own your account".into(),
        body,
    )
    .await?;
    let details = json!({"reminders_sent": request.reminders_sent + 1});
    audit(
        tx,
        ctx,
        Some(&request.account_id),
        super::actions::OWNERSHIP_REQUEST_REMINDED,
        request_target(request),
        details,
    )
    .await
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

/// Ends an open request, under the account lock: void if it no longer holds, otherwise as
/// decided; an approval moves ownership in this same transaction (R3-R6). The requester is
/// told the outcome (R10).
async fn settle(
    tx: &mut Conn,
    ctx: &Ctx,
    mut request: OwnershipRequest,
    decision: Decision,
) -> Result<OwnershipRequest> {
    let id = request.account_id.clone();
    let account = store::accounts::get(tx, &id).await?.ok_or(DomainError::AccountNotFound)?;
    let requester = store::users::get_in_account(tx, &id, &request.requester_user_id).await?;
    let current_owner = store::users::owner_of(tx, &id).await?;
    let admins = store::users::count_active_admins(tx, &id).await?;
    let void = void_reason(&request, &account, requester.as_ref(), current_owner.as_ref(), admins);
    let (state, note, action) = match (void, decision) {
        (Some(why), _) => (OwnershipRequestState::Void, why, super::actions::OWNERSHIP_REQUEST_SETTLED),
        (None, Decision::Owner(Answer::Deny)) => {
            (OwnershipRequestState::Denied, "denied by the owner".to_owned(), super::actions::OWNERSHIP_REQUEST_DENIED)
        }
        (None, Decision::Owner(Answer::Approve)) => (
            OwnershipRequestState::Approved,
            "approved by the owner".to_owned(),
            super::actions::OWNERSHIP_REQUEST_APPROVED,
        ),
        (None, Decision::Deadline) => (
            OwnershipRequestState::AutoApproved,
            "approved automatically: the owner did not answer within 168 hours".to_owned(),
            super::actions::OWNERSHIP_REQUEST_SETTLED,
        ),
    };
    close(tx, ctx, &mut request, state, &note).await?;
    let moved = matches!(state, OwnershipRequestState::Approved | OwnershipRequestState::AutoApproved);
    if let (true, Some(previous), Some(next)) = (moved, current_owner.as_ref(), requester.as_ref()) {
        super::accounts::hand_over(tx, ctx, &id, previous, next, Some(&request.id)).await?;
    }
    if let Some(requester) = &requester {
        let body = match state {
            OwnershipRequestState::Approved | OwnershipRequestState::AutoApproved => format!(
                "Your request to become the owner of {} was {note}. You are now the owner, with access to billing. \
                 The previous owner's phone licenses and numbers move to you if you hold no phone license; you \
                 will get another e-mail if any do.",
                account.name
            ),
            OwnershipRequestState::Denied => {
                format!("Your request to become the owner of {} was denied.", account.name)
            }
            _ => format!("Your request to become the owner of {} is void: {note}.", account.name),
        };
        let subject = format!("Your ownership request: {}", state.as_str().replace('_', " "));
        email(tx, ctx, &request, requester, "ownership_request_outcome", subject, body).await?;
    }
    let details = json!({"state": state.as_str(), "note": note});
    audit(tx, ctx, Some(&id), action, request_target(&request), details).await?;
    Ok(request)
}

async fn close(
    tx: &mut Conn,
    ctx: &Ctx,
    request: &mut OwnershipRequest,
    state: OwnershipRequestState,
    note: &str,
) -> Result<()> {
    // Under the account lock the request was just read open, so the guarded update holds;
    // should it not, the caller's transaction must not go on as if it had decided.
    if !store::ownership_requests::close(tx, &request.id, state, note, ctx.now_ms).await? {
        return Err(DomainError::OwnershipRequestClosed { state: "closed".into() }.into());
    }
    request.state = state;
    request.outcome_note = note.to_owned();
    request.decided_at_ms = Some(ctx.now_ms);
    Ok(())
}

async fn email(
    tx: &mut Conn,
    ctx: &Ctx,
    request: &OwnershipRequest,
    to: &User,
    kind: &'static str,
    subject: String,
    body: String,
) -> Result<()> {
    let email = outbox::Email {
        account_id: Some(request.account_id.clone()),
        kind,
        recipient: to.email.to_string(),
        subject,
        body,
    };
    outbox::enqueue(tx, &email, ctx.now_ms).await?;
    Ok(())
}

fn request_target(request: &OwnershipRequest) -> String {
    format!("ownership_request:{}", request.id)
}
