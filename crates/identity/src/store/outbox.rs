//! The `outbox` table (SPEC R35): e-mails written with the change that causes them, then
//! delivered by `notify::Dispatcher`, retried until sent, never lost.
//!
//! Delivery is at least once: a sender that crashes after sending but before marking the row
//! sent lets the lease expire and another sender sends again. Replicas never send the same row
//! at the same time: claiming is a conditional update on the lease.

use roster_platform::db::{Backend, params};
use roster_platform::folded::Folded;
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
    pub created_at_ms: i64,
}

/// An e-mail a mail server refused for good, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub attempts: i64,
    pub reason: String,
    pub created_at_ms: i64,
    pub failed_at_ms: i64,
}

pub async fn enqueue(tx: &mut Conn, email: &Email, now_ms: i64) -> Result<String, sqlx::Error> {
    let mut write = Folded::on(tx);
    let id = enqueue_into(&mut write, email, now_ms);
    write.run(tx).await?;
    Ok(id)
}

/// [`enqueue`] as one of a change's folded writes; returns the e-mail's id.
pub fn enqueue_into(write: &mut Folded, email: &Email, now_ms: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    write.write(|args| {
        let due = args.bind(now_ms);
        format!(
            "INSERT INTO outbox (id, account_id, kind, recipient, subject, body, next_attempt_at_ms, created_at_ms) \
             VALUES ({}, {}, {}, {}, {}, {}, {due}, {due})",
            args.bind(id.clone()),
            args.bind(email.account_id.as_ref().map(|a| a.as_str().to_owned())),
            args.bind(email.kind),
            args.bind(email.recipient.clone()),
            args.bind(email.subject.clone()),
            args.bind(email.body.clone()),
        )
    });
    id
}

/// Claims up to `limit` due e-mails for `lease_ms`, in one statement (one commit). A row's
/// lease is re-checked as it is updated, so two replicas claiming at once never both get it;
/// on PostgreSQL they skip each other's rows instead of waiting.
pub async fn claim_due<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    backend: Backend,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET leased_until_ms = $2, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM outbox WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL \
         AND next_attempt_at_ms <= $1 AND leased_until_ms <= $1 ORDER BY id LIMIT $3 {skip_locked}) \
         AND sent_at_ms IS NULL AND leased_until_ms <= $1 \
         RETURNING id, kind, recipient, subject, body, attempts, created_at_ms"
    );
    let rows = sqlx::query(&sql).bind(now_ms).bind(now_ms + lease_ms).bind(limit).fetch_all(writer).await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                recipient: row.try_get("recipient")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // RETURNING follows no order; the oldest goes first.
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(claimed)
}

/// Marks these e-mails sent, in one statement (one commit for a whole batch).
pub async fn mark_sent<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ids: &[&str],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!("UPDATE outbox SET sent_at_ms = $1, last_error = NULL WHERE id IN ({})", params(2, ids.len()));
    let mut query = sqlx::query(&sql).bind(now_ms);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(writer).await?;
    Ok(())
}

/// Releases the lease and schedules the next attempt.
pub async fn mark_failed<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
    error: &str,
    retry_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET last_error = $2, next_attempt_at_ms = $3, leased_until_ms = 0 WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(retry_at_ms)
        .execute(writer)
        .await?;
    Ok(())
}

/// Gives up on an e-mail a mail server refused for good, keeping it with the reason.
pub async fn mark_undeliverable<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET last_error = $2, failed_at_ms = $3, leased_until_ms = 0 WHERE id = $1")
        .bind(id)
        .bind(reason)
        .bind(now_ms)
        .execute(writer)
        .await?;
    Ok(())
}

/// The account's undeliverable e-mails, newest first; `before` is the last id of the
/// previous page.
pub async fn undeliverable(
    tx: &mut Conn,
    account: &AccountId,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Undeliverable>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, recipient, subject, attempts, last_error, created_at_ms, failed_at_ms FROM outbox \
         WHERE account_id = $1 AND failed_at_ms IS NOT NULL AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(account.as_str())
    .bind(before.unwrap_or("~"))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Undeliverable {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                recipient: row.try_get("recipient")?,
                subject: row.try_get("subject")?,
                attempts: row.try_get("attempts")?,
                reason: row.try_get::<Option<String>, _>("last_error")?.unwrap_or_default(),
                created_at_ms: row.try_get("created_at_ms")?,
                failed_at_ms: row.try_get("failed_at_ms")?,
            })
        })
        .collect()
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
