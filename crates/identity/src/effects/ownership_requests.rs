//! How an ownership request ends (SPEC R8-R10), shared by the owner's answer and the
//! requester's cancel (use cases) and by the request's timer workflow: one guarded update from
//! `open` under the account lock, so exactly one way of ending wins, an approval moving
//! ownership in that same transaction; and the timer's own steps, the daily reminder, the
//! deadline and the note of phone licenses that moved.

use roster_platform::auth::Principal;
use roster_platform::stored_text::StoredText;
use serde_json::json;

use super::{Ctx, Result, actions, audit};
use crate::domain::DomainError;
use crate::domain::events::OwnershipCause;
use crate::domain::model::{OwnershipRequest, OwnershipRequestState, StepUpPurpose, User};
use crate::domain::ownership_requests::{Due, due, void_reason};
use crate::domain::values::{AccountId, OwnershipRequestId, UserId};
use crate::notify::human_time;
use crate::store::{self, Conn, outbox};

/// How the owner answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
}

impl Answer {
    pub fn purpose(self) -> StepUpPurpose {
        match self {
            Self::Approve => StepUpPurpose::ApproveOwnershipRequest,
            Self::Deny => StepUpPurpose::DenyOwnershipRequest,
        }
    }
}

/// What ends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
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

/// The workflow's waiting step (R9): sends the daily reminder, decides at the deadline, and
/// reports how a request ended. Runs in the step's transaction, which commits with the
/// workflow's own record, so a reminder goes out once however often the step runs.
pub async fn await_decision(
    tx: &mut Conn,
    account: &AccountId,
    id: &OwnershipRequestId,
    request_id: &str,
    now_ms: i64,
) -> Result<Waiting> {
    let ctx = system_ctx(request_id, now_ms);
    if !store::accounts::lock(tx, account).await? {
        return Ok(Waiting::Ended { state: OwnershipRequestState::Void, moved: None });
    }
    let request =
        store::ownership_requests::get(tx, account, id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
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
    account: &AccountId,
    id: &OwnershipRequestId,
    moved: &serde_json::Value,
    request_id: &str,
    now_ms: i64,
) -> Result<()> {
    let ctx = system_ctx(request_id, now_ms);
    let request =
        store::ownership_requests::get(tx, account, id).await?.ok_or(DomainError::OwnershipRequestNotFound)?;
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
        if let Some(user) = store::users::get_in_account(tx, account, user).await? {
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
        operation_id: String::new(),
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
    audit(tx, ctx, Some(&request.account_id), actions::OWNERSHIP_REQUEST_REMINDED, request_target(request), details)
        .await
}

/// Ends an open request, under the account lock: void if it no longer holds, otherwise as
/// decided; an approval moves ownership in this same transaction (R3-R6). The requester is
/// told the outcome (R10).
pub async fn settle(
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
        (Some(why), _) => (OwnershipRequestState::Void, why, actions::OWNERSHIP_REQUEST_SETTLED),
        (None, Decision::Owner(Answer::Deny)) => {
            (OwnershipRequestState::Denied, "denied by the owner".to_owned(), actions::OWNERSHIP_REQUEST_DENIED)
        }
        (None, Decision::Owner(Answer::Approve)) => {
            (OwnershipRequestState::Approved, "approved by the owner".to_owned(), actions::OWNERSHIP_REQUEST_APPROVED)
        }
        (None, Decision::Deadline) => (
            OwnershipRequestState::AutoApproved,
            "approved automatically: the owner did not answer within 168 hours".to_owned(),
            actions::OWNERSHIP_REQUEST_SETTLED,
        ),
    };
    close(tx, ctx, &mut request, state, &note).await?;
    let moved = matches!(state, OwnershipRequestState::Approved | OwnershipRequestState::AutoApproved);
    if let (true, Some(previous), Some(next)) = (moved, current_owner.as_ref(), requester.as_ref()) {
        super::accounts::hand_over(tx, ctx, &id, previous, next, Some(&request.id), OwnershipCause::Request).await?;
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

pub async fn close(
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

pub async fn email(
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

pub fn request_target(request: &OwnershipRequest) -> String {
    format!("ownership_request:{}", request.id)
}
