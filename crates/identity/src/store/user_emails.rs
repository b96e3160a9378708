//! The `user_emails` table (SPEC R12): a user's addresses besides the primary one, verified or
//! claimed; and `email_code_sends`, the verification codes sent, which the rate limits count.
//!
//! A claim (unverified, its code unexpired) reserves nothing: several users may claim one
//! address, and only a verified address is unique (a partial unique index). Changes that
//! decide who holds an address (verifying it, inviting it, creating an owner with it) take
//! [`lock_address`] after their account's lock, so two of them in different accounts cannot
//! both succeed.

use roster_platform::db::Backend;
use roster_platform::folded::Folded;
use sqlx::Row;

use super::Conn;
use crate::domain::addresses::Sent;
use crate::domain::values::{Email, UserId};

/// An address besides the primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    pub email: Email,
    pub verified_at_ms: Option<i64>,
    /// For a claim: when its code (and the claim) expires.
    pub code_expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// Serialises, until commit, the changes that decide who holds `email`. PostgreSQL: a
/// transaction-scoped advisory lock on the address's hash; SQLite has one writer already.
pub async fn lock_address(tx: &mut Conn, email: &Email) -> Result<(), sqlx::Error> {
    if Backend::of(tx) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("email:{}", email.as_str()))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Whether `email` belongs to a user other than `except`: someone's primary address (an
/// invited, pending user's included) or verified other address.
pub async fn taken(tx: &mut Conn, email: &Email, except: Option<&UserId>) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1 AND id <> $2 \
         UNION ALL SELECT user_id FROM user_emails WHERE email = $1 AND verified_at_ms IS NOT NULL AND user_id <> $2 \
         LIMIT 1",
    )
    .bind(email.as_str())
    .bind(except.map_or("", UserId::as_str))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(found.is_some())
}

/// Whether `email` is some user's verified other (not primary) address. Claims do not count.
pub async fn is_verified_address(tx: &mut Conn, email: &Email) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1 AND verified_at_ms IS NOT NULL")
            .bind(email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(found.is_some())
}

/// Claims `email` for `user` with a new code, or gives their unverified claim a new code.
pub async fn claim(
    tx: &mut Conn,
    user: &UserId,
    email: &Email,
    code_hash: &str,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_emails (email, user_id, code_hash, code_expires_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email, user_id) DO UPDATE SET \
         code_hash = excluded.code_hash, code_expires_at_ms = excluded.code_expires_at_ms \
         WHERE user_emails.verified_at_ms IS NULL",
    )
    .bind(email.as_str())
    .bind(user.as_str())
    .bind(code_hash)
    .bind(expires_at_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The user's claims whose code still works, besides the one for `except`.
pub async fn pending_claims(tx: &mut Conn, user: &UserId, except: &Email, now_ms: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_emails WHERE user_id = $1 AND email <> $2 AND verified_at_ms IS NULL \
         AND code_expires_at_ms > $3",
    )
    .bind(user.as_str())
    .bind(except.as_str())
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await
}

/// Notes a code sent to `email` at `user`'s request.
pub async fn record_send(tx: &mut Conn, email: &Email, user: &UserId, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO email_code_sends (email, user_id, sent_at_ms) VALUES ($1, $2, $3)")
        .bind(email.as_str())
        .bind(user.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Codes sent to `email`, and codes sent by `user`, since `since_ms`.
pub async fn sends_since(
    tx: &mut Conn,
    email: &Email,
    user: &UserId,
    since_ms: i64,
) -> Result<(Sent, Sent), sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
         (SELECT COUNT(*) FROM email_code_sends WHERE email = $1 AND sent_at_ms > $3) AS to_address, \
         (SELECT MIN(sent_at_ms) FROM email_code_sends WHERE email = $1 AND sent_at_ms > $3) AS to_address_oldest, \
         (SELECT COUNT(*) FROM email_code_sends WHERE user_id = $2 AND sent_at_ms > $3) AS by_user, \
         (SELECT MIN(sent_at_ms) FROM email_code_sends WHERE user_id = $2 AND sent_at_ms > $3) AS by_user_oldest",
    )
    .bind(email.as_str())
    .bind(user.as_str())
    .bind(since_ms)
    .fetch_one(&mut *tx)
    .await?;
    let to_address = Sent { count: row.try_get("to_address")?, oldest_at_ms: row.try_get("to_address_oldest")? };
    let by_user = Sent { count: row.try_get("by_user")?, oldest_at_ms: row.try_get("by_user_oldest")? };
    Ok((to_address, by_user))
}

/// Keeps a former primary address as a verified other address, added when it was.
pub async fn insert_verified(
    tx: &mut Conn,
    user: &UserId,
    email: &Email,
    added_at_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_emails (email, user_id, verified_at_ms, created_at_ms) VALUES ($1, $2, $3, $4)")
        .bind(email.as_str())
        .bind(user.as_str())
        .bind(now_ms)
        .bind(added_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Marks the claim verified if `code_hash` is its unexpired code; false otherwise. Fails on
/// the unique index if another user verified the address first.
pub async fn verify(
    tx: &mut Conn,
    user: &UserId,
    email: &Email,
    code_hash: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let verified = sqlx::query(
        "UPDATE user_emails SET verified_at_ms = $4, code_hash = NULL, code_expires_at_ms = NULL \
         WHERE email = $1 AND user_id = $2 AND code_hash = $3 AND code_expires_at_ms > $4",
    )
    .bind(email.as_str())
    .bind(user.as_str())
    .bind(code_hash)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(verified == 1)
}

/// Ends every unverified claim of `email` but `except`'s: the address now belongs to someone.
pub async fn lapse_claims(tx: &mut Conn, email: &Email, except: Option<&UserId>) -> Result<u64, sqlx::Error> {
    let mut write = Folded::on(tx);
    lapse_claims_into(&mut write, email, except);
    write.run(tx).await
}

/// [`lapse_claims`] as one of a change's folded writes.
pub fn lapse_claims_into(write: &mut Folded, email: &Email, except: Option<&UserId>) {
    write.write(|args| {
        format!(
            "DELETE FROM user_emails WHERE email = {} AND verified_at_ms IS NULL AND user_id <> {}",
            args.bind(email.to_string()),
            args.bind(except.map_or("", UserId::as_str).to_owned()),
        )
    });
}

/// Runs `write`, unless `email` is some user's verified other address: then it reports so,
/// and the caller must roll back what `write` did. The check sees the address as it was when
/// the statement began, so [`lock_address`] must have been taken in an earlier statement.
pub async fn write_unless_verified(tx: &mut Conn, write: Folded, email: &Email) -> Result<bool, sqlx::Error> {
    let row = write
        .run_then_check(tx, |args| {
            format!(
                "SELECT COUNT(*) AS holders FROM user_emails WHERE email = {} AND verified_at_ms IS NOT NULL",
                args.bind(email.to_string())
            )
        })
        .await?;
    Ok(row.try_get::<i64, _>("holders")? == 0)
}

pub async fn get(tx: &mut Conn, user: &UserId, email: &Email) -> Result<Option<Secondary>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT email, verified_at_ms, code_expires_at_ms, created_at_ms FROM user_emails \
         WHERE email = $1 AND user_id = $2",
    )
    .bind(email.as_str())
    .bind(user.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| decode(&row)).transpose()
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Secondary, sqlx::Error> {
    Ok(Secondary {
        email: Email::from_stored(row.try_get("email")?),
        verified_at_ms: row.try_get("verified_at_ms")?,
        code_expires_at_ms: row.try_get("code_expires_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// The user's verified addresses and live claims, by address.
pub async fn list(tx: &mut Conn, user: &UserId, now_ms: i64) -> Result<Vec<Secondary>, sqlx::Error> {
    sqlx::query(
        "SELECT email, verified_at_ms, code_expires_at_ms, created_at_ms FROM user_emails \
         WHERE user_id = $1 AND (verified_at_ms IS NOT NULL OR code_expires_at_ms > $2) ORDER BY email",
    )
    .bind(user.as_str())
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub async fn delete(tx: &mut Conn, user: &UserId, email: &Email) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM user_emails WHERE email = $1 AND user_id = $2")
        .bind(email.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

/// Frees every address of a user who is deleted (R22: the addresses may sign up again).
pub async fn forget(tx: &mut Conn, user: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_emails WHERE user_id = $1").bind(user.as_str()).execute(&mut *tx).await?;
    Ok(())
}

/// Housekeeping: claims whose code expired before `now_ms`, and code sends older than
/// `sends_before_ms` (outside every rate window). Returns (claims, sends) removed.
pub async fn prune(conn: &mut Conn, now_ms: i64, sends_before_ms: i64) -> Result<(u64, u64), sqlx::Error> {
    let claims = sqlx::query("DELETE FROM user_emails WHERE verified_at_ms IS NULL AND code_expires_at_ms <= $1")
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let sends = sqlx::query("DELETE FROM email_code_sends WHERE sent_at_ms < $1")
        .bind(sends_before_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok((claims, sends))
}
