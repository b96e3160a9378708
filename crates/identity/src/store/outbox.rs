//! The `outbox` table (SPEC R35): e-mails written with the change that causes them, then
//! delivered by `notify::Dispatcher`, retried until sent, never lost.
//!
//! Delivery is at least once: a sender that crashes after sending but before marking the row
//! sent lets the lease expire and another sender sends again. Replicas never send the same row
//! at the same time: claiming is a conditional update on the lease.

use sqlx::Row;

use super::Conn;
use crate::domain::values::AccountId;

/// An e-mail to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub account_id: Option<AccountId>,
    /// What caused it, e.g. "invitation", "ownership_transferred".
    pub kind: &'static str,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// A queued e-mail claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

pub async fn enqueue(tx: &mut Conn, email: &Email, now_ms: i64) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO outbox (id, account_id, kind, recipient, subject, body, next_attempt_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(email.account_id.as_ref().map(|a| a.as_str().to_owned()))
    .bind(email.kind)
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// Claims up to `limit` due e-mails for `lease_ms`. Each claim is its own conditional update,
/// so two replicas claiming at once never both get a row.
pub async fn claim_due(
    pool: &sqlx::AnyPool,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE sent_at_ms IS NULL AND next_attempt_at_ms <= $1 AND leased_until_ms <= $1 ORDER BY id LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        let row = sqlx::query(
            "UPDATE outbox SET leased_until_ms = $2, attempts = attempts + 1 \
             WHERE id = $1 AND sent_at_ms IS NULL AND leased_until_ms <= $3 \
             RETURNING id, kind, recipient, subject, body, attempts",
        )
        .bind(&id)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
        if let Some(row) = row {
            claimed.push(Claimed {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                recipient: row.try_get("recipient")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
            });
        }
    }
    Ok(claimed)
}

pub async fn mark_sent(pool: &sqlx::AnyPool, id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET sent_at_ms = $2, last_error = NULL WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// Releases the lease and schedules the next attempt.
pub async fn mark_failed(pool: &sqlx::AnyPool, id: &str, error: &str, retry_at_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET last_error = $2, next_attempt_at_ms = $3, leased_until_ms = 0 WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(retry_at_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// E-mails queued for a recipient, oldest first, sent or not. Tests read invitation codes
/// from it the way an invitee reads their mailbox.
pub async fn for_recipient(
    pool: &sqlx::AnyPool,
    recipient: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT kind, subject, body FROM outbox WHERE recipient = $1 ORDER BY id")
        .bind(recipient)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| Ok((row.try_get("kind")?, row.try_get("subject")?, row.try_get("body")?))).collect()
}
