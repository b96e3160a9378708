//! Subscriptions, invoices, refunds and the payment method on file.

use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, count, parse};
use crate::domain::model::{Currency, Id, Invoice, PaymentMethod, Refund, Subscription, SubscriptionStatus};

const SUBSCRIPTION_COLUMNS: &str =
    "id, account_id, plan_name, price_minor, currency, period_start_ms, period_end_ms, status, ended_at_ms";

fn subscription(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Subscription {
        id: Id::from_stored(row.try_get("id")?),
        account_id: Id::from_stored(row.try_get("account_id")?),
        plan_name: row.try_get("plan_name")?,
        price_minor: row.try_get("price_minor")?,
        currency: Currency::from_stored(row.try_get("currency")?),
        period_start_ms: row.try_get("period_start_ms")?,
        period_end_ms: row.try_get("period_end_ms")?,
        status: parse("subscription status", &status, SubscriptionStatus::from_str_opt)?,
        ended_at_ms: row.try_get("ended_at_ms")?,
    })
}

pub async fn insert_subscription(tx: &mut Conn, sub: &Subscription, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(sub.id.as_str())
    .bind(sub.account_id.as_str())
    .bind(&sub.plan_name)
    .bind(sub.price_minor)
    .bind(sub.currency.as_str())
    .bind(sub.period_start_ms)
    .bind(sub.period_end_ms)
    .bind(sub.status.as_str())
    .bind(sub.ended_at_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A subscription of this account (others' read as missing).
pub async fn subscription_of(tx: &mut Conn, account: &Id, id: &Id) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = $1 AND id = $2"))
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| subscription(&row))
        .transpose()
}

pub async fn subscriptions(tx: &mut Conn, account: &Id) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = $1 ORDER BY id"))
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(subscription)
        .collect()
}

pub async fn end_subscription(tx: &mut Conn, id: &Id, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscriptions SET status = $2, ended_at_ms = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(SubscriptionStatus::Ended.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn insert_invoice(tx: &mut Conn, invoice: &Invoice) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invoices (id, account_id, subscription_id, amount_minor, currency, issued_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(invoice.id.as_str())
    .bind(invoice.account_id.as_str())
    .bind(invoice.subscription_id.as_str())
    .bind(invoice.amount_minor)
    .bind(invoice.currency.as_str())
    .bind(invoice.issued_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn invoices(
    tx: &mut Conn,
    account: &Id,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Invoice>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, account_id, subscription_id, amount_minor, currency, issued_at_ms FROM invoices \
         WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(account.as_str())
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Invoice {
                id: Id::from_stored(row.try_get("id")?),
                account_id: Id::from_stored(row.try_get("account_id")?),
                subscription_id: Id::from_stored(row.try_get("subscription_id")?),
                amount_minor: row.try_get("amount_minor")?,
                currency: Currency::from_stored(row.try_get("currency")?),
                issued_at_ms: row.try_get("issued_at_ms")?,
            })
        })
        .collect()
}

const REFUND_COLUMNS: &str = "id, account_id, subscription_id, amount_minor, currency, unused_seconds, period_seconds, refunded_at_ms, \
     refunded_user_id";

fn refund(row: &AnyRow) -> Result<Refund, sqlx::Error> {
    Ok(Refund {
        id: Id::from_stored(row.try_get("id")?),
        account_id: Id::from_stored(row.try_get("account_id")?),
        subscription_id: Id::from_stored(row.try_get("subscription_id")?),
        amount_minor: row.try_get("amount_minor")?,
        currency: Currency::from_stored(row.try_get("currency")?),
        unused_seconds: row.try_get("unused_seconds")?,
        period_seconds: row.try_get("period_seconds")?,
        refunded_at_ms: row.try_get("refunded_at_ms")?,
        refunded_user_id: row.try_get::<Option<String>, _>("refunded_user_id")?.map(Id::from_stored),
    })
}

/// Records a refund; false if the subscription was refunded before (the unique index decides,
/// so two racing refunds cannot both land).
pub async fn insert_refund(tx: &mut Conn, refund: &Refund) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (subscription_id) DO NOTHING"
    ))
    .bind(refund.id.as_str())
    .bind(refund.account_id.as_str())
    .bind(refund.subscription_id.as_str())
    .bind(refund.amount_minor)
    .bind(refund.currency.as_str())
    .bind(refund.unused_seconds)
    .bind(refund.period_seconds)
    .bind(refund.refunded_at_ms)
    .bind(refund.refunded_user_id.as_ref().map(Id::as_str))
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn is_refunded(tx: &mut Conn, subscription: &Id) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM refunds WHERE subscription_id = $1")
        .bind(subscription.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(found.is_some())
}

pub async fn refunds(tx: &mut Conn, account: &Id, after: Option<&str>, limit: i64) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query(&format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"))
        .bind(account.as_str())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(refund)
        .collect()
}

/// Refunds made to `user`, in whichever account, oldest first.
pub async fn refunds_to(tx: &mut Conn, user: &Id, after: Option<&str>, limit: i64) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE refunded_user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(user.as_str())
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(refund)
    .collect()
}

pub async fn payment_method(tx: &mut Conn, account: &Id) -> Result<Option<PaymentMethod>, sqlx::Error> {
    let row = sqlx::query("SELECT brand, last4, expiry_month, expiry_year FROM payment_methods WHERE account_id = $1")
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|row| {
        Ok(PaymentMethod {
            brand: row.try_get("brand")?,
            last4: row.try_get("last4")?,
            expiry_month: count(row.try_get("expiry_month")?),
            expiry_year: count(row.try_get("expiry_year")?),
        })
    })
    .transpose()
}

/// Records the card summary a payment provider reported (only brand, last digits, expiry).
pub async fn set_payment_method(tx: &mut Conn, account: &Id, method: &PaymentMethod) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_methods (account_id, brand, last4, expiry_month, expiry_year) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id) DO UPDATE SET brand = $2, last4 = $3, expiry_month = $4, expiry_year = $5",
    )
    .bind(account.as_str())
    .bind(&method.brand)
    .bind(&method.last4)
    .bind(i64::from(method.expiry_month))
    .bind(i64::from(method.expiry_year))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
