//! The timers of an ownership request (SPEC R8-R10) and the phone licenses an approval moves:
//!
//! 1. `await_decision`, local: sleeps on a durable timer, e-mails the owner a reminder every
//!    24 hours, and at 168 hours makes the requester owner (all in
//!    `effects::ownership_requests::await_decision`). An approval, denial or cancel made through
//!    the API brings the timer forward, so the step sees it at once.
//! 2. `move_phone_licenses`: after an approval (by the owner or by the deadline), the
//!    previous owner's phone licenses and numbers move to the new owner when the new owner
//!    holds no phone license (R4, as if confirmed).
//! 3. `announce_phone_move`, local: both owners are e-mailed what moved, if anything did.
//!
//! Forward only: ownership has already moved when the phone licenses follow, and a request
//! is withdrawn with `CancelOwnershipRequest`, not by cancelling the operation.

use roster_platform::stored_text::StoredText;
use roster_workflow::{Outcome, StepCtx, StepFuture, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::licensing::{Licensing, license_set_json};
use super::step_failed;
use crate::domain::model::OwnershipRequestState;
use crate::domain::values::{AccountId, OwnershipRequestId};
use crate::effects::ownership_requests::{self, Waiting};

/// The workflow that reminds the owner and decides at the deadline.
pub const KIND: &str = "account.ownership_request";

/// The workflow's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowInput {
    pub account_id: String,
    pub ownership_request_id: String,
}

impl WorkflowInput {
    fn ids(&self) -> (AccountId, OwnershipRequestId) {
        (
            AccountId::from_stored(self.account_id.clone()),
            OwnershipRequestId::from_stored(self.ownership_request_id.clone()),
        )
    }
}

pub struct OwnershipRequestTimers {
    pub licensing: Licensing,
}

impl Workflow for OwnershipRequestTimers {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn steps(&self) -> &'static [&'static str] {
        &["await_decision", "move_phone_licenses", "announce_phone_move"]
    }

    fn pivot(&self) -> usize {
        0
    }

    fn is_local(&self, step: usize) -> bool {
        step != 1
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: WorkflowInput = ctx.input()?;
            match step {
                0 => {
                    let ((account, id), request_id, now_ms) = (input.ids(), ctx.request_id(), ctx.now_ms);
                    let tx = ctx.tx().await?;
                    let waiting = ownership_requests::await_decision(tx, &account, &id, &request_id, now_ms)
                        .await
                        .map_err(step_failed)?;
                    Ok(match waiting {
                        Waiting::Until(at) => Outcome::WaitUntil(at),
                        Waiting::Ended { state, moved } => Outcome::Done(json!({
                            "state": state.as_str(),
                            "previous_owner_user_id": moved.as_ref().map(|(from, _)| from.to_string()),
                            "new_owner_user_id": moved.as_ref().map(|(_, to)| to.to_string()),
                        })),
                    })
                }
                1 => {
                    let decided: Value = ctx.output(0)?.unwrap_or(Value::Null);
                    let (Some(from), Some(to)) =
                        (decided["previous_owner_user_id"].as_str(), decided["new_owner_user_id"].as_str())
                    else {
                        return Ok(Outcome::Done(Value::Null));
                    };
                    // Licensing decides under its account lock whether anything moves (not
                    // when the new owner has a phone license of their own), so a check made
                    // here first could only race it. Run again after its record was lost, the
                    // step gets, under the same request id, what the first run moved.
                    let moved = self.licensing.move_phone(ctx.request_id(), &input.account_id, from, to).await?;
                    if moved.license_types.is_empty() && moved.phone_numbers.is_empty() {
                        return Ok(Outcome::Done(Value::Null));
                    }
                    Ok(Outcome::Done(license_set_json(&moved)))
                }
                _ => {
                    let moved: Value = ctx.output(1)?.unwrap_or(Value::Null);
                    if moved.is_null() {
                        return Ok(Outcome::Done(Value::Null));
                    }
                    let ((account, id), request_id, now_ms) = (input.ids(), ctx.request_id(), ctx.now_ms);
                    let tx = ctx.tx().await?;
                    ownership_requests::announce_phone_move(tx, &account, &id, &moved, &request_id, now_ms)
                        .await
                        .map_err(step_failed)?;
                    Ok(Outcome::Done(Value::Null))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, _step: usize, _ctx: &'a mut StepCtx) -> StepFuture<'a> {
        // Forward only (pivot 0): nothing is ever undone.
        Box::pin(async { Ok(Outcome::Done(Value::Null)) })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let input: Option<WorkflowInput> = ctx.input().ok();
        let decided: Value = ctx.output(0).ok().flatten().unwrap_or(Value::Null);
        json!({
            "account_id": input.as_ref().map(|i| i.account_id.clone()),
            "ownership_request_id": input.as_ref().map(|i| i.ownership_request_id.clone()),
            "state": decided["state"].as_str().unwrap_or(OwnershipRequestState::Void.as_str()),
            "new_owner_user_id": decided["new_owner_user_id"],
            "moved_phone": ctx.output::<Value>(1).ok().flatten(),
        })
    }
}
