//! Subscriptions, billing views and refunds (SPEC R5, R28). Views are the current owner's
//! (and support's); the refund step is identity's (the accept-invitation saga), and a
//! refunded user sees their own refunds wherever they went.

use serde_json::json;

use super::{Ctx, Result, audit, emit};
use crate::domain::DomainError;
use crate::domain::access::Caller;
use crate::domain::events::Change;
use crate::domain::model::{Currency, Id, Invoice, PaymentMethod, Refund, Subscription, SubscriptionStatus};
use crate::domain::proration::{self, Proration};
use crate::store::{self, Conn, lock_account};

#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub plan_name: String,
    pub price_minor: i64,
    pub currency: Currency,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
}

/// Starts a subscription and invoices its first period.
pub async fn create_subscription(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    new: NewSubscription,
) -> Result<Subscription> {
    caller.owner_or_operator()?;
    proration::validate(new.price_minor, new.period_start_ms, new.period_end_ms)?;
    lock_account(tx, account).await?;
    let subscription = Subscription {
        id: Id::generate(),
        account_id: account.clone(),
        plan_name: new.plan_name,
        price_minor: new.price_minor,
        currency: new.currency,
        period_start_ms: new.period_start_ms,
        period_end_ms: new.period_end_ms,
        status: SubscriptionStatus::Active,
        ended_at_ms: None,
    };
    store::billing::insert_subscription(tx, &subscription, ctx.now_ms).await?;
    let invoice = Invoice {
        id: Id::generate(),
        account_id: account.clone(),
        subscription_id: subscription.id.clone(),
        amount_minor: subscription.price_minor,
        currency: subscription.currency.clone(),
        issued_at_ms: ctx.now_ms,
    };
    store::billing::insert_invoice(tx, &invoice).await?;
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::SUBSCRIPTION_CREATED,
        &format!("subscription:{}", subscription.id),
        json!({ "price_minor": subscription.price_minor, "currency": subscription.currency.as_str() }),
    )
    .await?;
    Ok(subscription)
}

pub async fn overview(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
) -> Result<(Vec<Subscription>, Option<PaymentMethod>)> {
    caller.billing_reader()?;
    Ok((store::billing::subscriptions(tx, account).await?, store::billing::payment_method(tx, account).await?))
}

pub async fn invoices(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Invoice>> {
    caller.owner()?;
    Ok(store::billing::invoices(tx, account, after, limit).await?)
}

pub async fn refunds(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Refund>> {
    caller.billing_reader()?;
    Ok(store::billing::refunds(tx, account, after, limit).await?)
}

/// The refunds made to `user` themselves, whatever became of the account they were made in
/// (SPEC R28: an invitee's old account closes as they join another, yet the refund is theirs).
pub async fn refunds_to(tx: &mut Conn, user: &Id, after: Option<&str>, limit: i64) -> Result<Vec<Refund>> {
    Ok(store::billing::refunds_to(tx, user, after, limit).await?)
}

/// What a refund would pay now: the owner asks, or identity before it refunds.
pub async fn quote(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    subscription: &Id,
) -> Result<(Subscription, Proration)> {
    if caller.identity().is_err() {
        caller.owner()?;
    }
    let subscription = active_subscription(tx, account, subscription).await?;
    let proration = proration::refund(
        subscription.price_minor,
        subscription.period_start_ms,
        subscription.period_end_ms,
        ctx.now_ms,
    );
    Ok((subscription, proration))
}

async fn active_subscription(tx: &mut Conn, account: &Id, id: &Id) -> Result<Subscription> {
    let subscription =
        store::billing::subscription_of(tx, account, id).await?.ok_or(DomainError::SubscriptionNotFound)?;
    if subscription.status == SubscriptionStatus::Ended {
        let refunded = store::billing::is_refunded(tx, id).await?;
        return Err(if refunded { DomainError::AlreadyRefunded } else { DomainError::SubscriptionNotActive }.into());
    }
    Ok(subscription)
}

/// Saga step (SPEC R28): refunds the unused remainder once and ends the subscription;
/// `beneficiary` is the user refunded, who keeps seeing it ([`refunds_to`]).
pub async fn refund(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    subscription: &Id,
    beneficiary: Option<Id>,
) -> Result<Refund> {
    caller.identity()?;
    lock_account(tx, account).await?;
    let subscription = active_subscription(tx, account, subscription).await?;
    let proration = proration::refund(
        subscription.price_minor,
        subscription.period_start_ms,
        subscription.period_end_ms,
        ctx.now_ms,
    );
    let refund = Refund {
        id: Id::generate(),
        account_id: account.clone(),
        subscription_id: subscription.id.clone(),
        amount_minor: proration.amount_minor,
        currency: subscription.currency.clone(),
        unused_seconds: proration.unused_seconds,
        period_seconds: proration.period_seconds,
        refunded_at_ms: ctx.now_ms,
        refunded_user_id: beneficiary,
    };
    if !store::billing::insert_refund(tx, &refund).await? {
        return Err(DomainError::AlreadyRefunded.into());
    }
    store::billing::end_subscription(tx, &subscription.id, ctx.now_ms).await?;
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::SUBSCRIPTION_REFUNDED,
        &format!("subscription:{}", subscription.id),
        json!({ "amount_minor": refund.amount_minor, "currency": refund.currency.as_str(),
                "unused_seconds": refund.unused_seconds, "period_seconds": refund.period_seconds }),
    )
    .await?;
    let change = Change::RefundMade {
        refund_id: refund.id.to_string(),
        amount_minor: refund.amount_minor,
        currency: refund.currency.as_str().to_owned(),
    };
    emit(tx, ctx, account, change).await?;
    // The account's billing ends with its last running subscription.
    if store::billing::subscriptions(tx, account).await?.iter().all(|s| s.ended_at_ms.is_some()) {
        emit(tx, ctx, account, Change::AccountClosed).await?;
    }
    Ok(refund)
}
