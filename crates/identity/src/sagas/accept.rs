//! Accepting an invitation (SPEC R27-R29). An invitee who owns an account of their own:
//!
//! 1. `check_rooms`: that account must have no rooms (error 1009 otherwise).
//! 2. `join_account`, the pivot, local: other users are counted again under both account
//!    locks (1009), then the invitee becomes a member and the old account closes.
//! 3. `refund_subscriptions`: each active subscription of the old account is refunded for
//!    its unused part and ends. After the pivot, so a refund is never made for a move that
//!    did not happen; licensing's one-refund-per-subscription rule and the step's request ids
//!    make it happen exactly once. The refunded user keeps seeing the refund in licensing
//!    (`ListMyRefunds`) after their old account has closed.
//! 4. `record_refunds`, local: the refunds go into identity's audit trail as
//!    `invitation.refunded`, naming the invitation, beside its `invitation.accepted`.
//!
//! A brand-new invitee (the pending user itself) has no old account: steps 1 and 3 do nothing.

use roster_proto::licensing::v1 as pb;
use roster_workflow::{Outcome, StepCtx, StepFuture, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::licensing::Licensing;
use super::{refused, step_failed};
use crate::domain::DomainError;
use crate::domain::values::{AccountId, InvitationId, UserId};
use crate::effects::{self, Origin};

pub const ACCEPT: &str = "invitation.accept";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptInput {
    pub invitation_id: String,
    /// The inviting account.
    pub account_id: String,
    /// The invitee (the caller).
    pub user_id: String,
    /// The account the invitee leaves; `None` for a new person.
    pub old_account_id: Option<String>,
    pub origin: Origin,
}

pub struct Accept {
    pub licensing: Licensing,
}

impl Accept {
    async fn join(&self, ctx: &mut StepCtx, input: &AcceptInput) -> Result<Outcome, roster_workflow::StepError> {
        let not_found = || refused(&DomainError::InvitationNotFound);
        let account = AccountId::parse(&input.account_id).map_err(|_| not_found())?;
        let invitation = InvitationId::parse(&input.invitation_id).map_err(|_| not_found())?;
        let user = UserId::parse(&input.user_id).map_err(|_| not_found())?;
        let local = input.origin.ctx(ctx)?;
        let tx = ctx.tx().await?;
        effects::invitations::join(tx, &local, &account, &invitation, &user).await.map_err(step_failed)?;
        Ok(Outcome::Done(json!({ "account_id": input.account_id, "user_id": input.user_id })))
    }
}

impl Workflow for Accept {
    fn kind(&self) -> &'static str {
        ACCEPT
    }

    fn steps(&self) -> &'static [&'static str] {
        &["check_rooms", "join_account", "refund_subscriptions", "record_refunds"]
    }

    fn pivot(&self) -> usize {
        // Past `join_account`, only forward.
        2
    }

    fn is_local(&self, step: usize) -> bool {
        // Joining the account and recording the refunds write only identity's database.
        step == 1 || step == 3
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let input: AcceptInput = ctx.input()?;
            match (step, input.old_account_id.as_deref()) {
                (1, _) => self.join(ctx, &input).await,
                (_, None) => Ok(Outcome::Done(Value::Null)),
                (3, Some(_)) => {
                    let refunds: Value = ctx.output(2)?.unwrap_or(Value::Null);
                    if refunds.as_array().is_none_or(Vec::is_empty) {
                        return Ok(Outcome::Done(Value::Null));
                    }
                    let local = input.origin.ctx(ctx)?;
                    let invitation = InvitationId::from_stored(input.invitation_id.clone());
                    let (account, user) =
                        (AccountId::from_stored(input.account_id.clone()), UserId::from_stored(input.user_id.clone()));
                    let tx = ctx.tx().await?;
                    effects::invitations::record_refunds(tx, &local, &account, &invitation, &user, refunds)
                        .await
                        .map_err(step_failed)?;
                    Ok(Outcome::Done(Value::Null))
                }
                (0, Some(old)) => {
                    let seats = self.licensing.seats(old).await?;
                    let rooms = seats
                        .iter()
                        .filter(|pool| pool.license_type == pb::LicenseType::Rooms as i32)
                        .map(|pool| pool.capacity)
                        .sum::<u32>();
                    if rooms > 0 {
                        return Err(refused(&DomainError::AccountHasRooms { rooms }));
                    }
                    Ok(Outcome::Done(json!({ "rooms": 0 })))
                }
                (_, Some(old)) => {
                    let mut refunds = Vec::new();
                    for subscription in self.licensing.subscriptions(old).await? {
                        let was_active = subscription.status() == pb::SubscriptionStatus::Active;
                        // A subscription this step already refunded (before a crash) has ended
                        // by now; the same request id returns that refund again. One that ended
                        // otherwise is refused, and owes nothing.
                        let refund = match self
                            .licensing
                            .refund(ctx.request_id_for(&subscription.id), old, &subscription.id, &input.user_id)
                            .await
                        {
                            Ok(refund) => refund,
                            Err(roster_workflow::StepError::Refused(_)) if !was_active => continue,
                            Err(error) => return Err(error),
                        };
                        refunds.push(json!({
                            "refund_id": refund.id,
                            "subscription_id": refund.subscription_id,
                            "amount_minor": refund.amount_minor,
                            "currency": refund.currency,
                        }));
                    }
                    Ok(Outcome::Done(json!(refunds)))
                }
            }
        })
    }

    fn compensate<'a>(&'a self, _step: usize, _ctx: &'a mut StepCtx) -> StepFuture<'a> {
        // Only the room check precedes the pivot, and it changes nothing.
        Box::pin(async { Ok(Outcome::Done(Value::Null)) })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        let joined: Value = ctx.output(1).ok().flatten().unwrap_or(Value::Null);
        let refunds: Value = ctx.output(2).ok().flatten().filter(|r: &Value| !r.is_null()).unwrap_or(json!([]));
        json!({ "user_id": joined["user_id"], "account_id": joined["account_id"], "refunds": refunds })
    }
}
