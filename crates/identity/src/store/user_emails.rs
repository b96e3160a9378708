//! The `user_emails` table (SPEC R12): a user's addresses besides the primary one.

use sqlx::Row;

use super::Conn;
use crate::domain::values::{Email, UserId};

/// An address besides the primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    pub email: Email,
    pub verified_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// Whether any user, anywhere, has `email` as their primary or another address.
pub async fn in_use(tx: &mut Conn, email: &Email) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1 UNION ALL SELECT user_id FROM user_emails WHERE email = $1 LIMIT 1",
    )
    .bind(email.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(found.is_some())
}

/// Whether `email` is some user's other (not primary) address.
pub async fn is_other_address(tx: &mut Conn, email: &Email) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(found.is_some())
}

/// Adds an unverified address; false if another user took it meanwhile (the primary key).
pub async fn insert(
    tx: &mut Conn,
    user: &UserId,
    email: &Email,
    code_hash: &str,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO user_emails (email, user_id, code_hash, code_expires_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING",
    )
    .bind(email.as_str())
    .bind(user.as_str())
    .bind(code_hash)
    .bind(expires_at_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(added == 1)
}

/// Keeps a former primary address as a verified other address.
pub async fn insert_verified(tx: &mut Conn, user: &UserId, email: &Email, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_emails (email, user_id, verified_at_ms, created_at_ms) VALUES ($1, $2, $3, $3)")
        .bind(email.as_str())
        .bind(user.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Marks the address verified if `code_hash` is its unexpired code; false otherwise.
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

pub async fn get(tx: &mut Conn, user: &UserId, email: &Email) -> Result<Option<Secondary>, sqlx::Error> {
    let row =
        sqlx::query("SELECT email, verified_at_ms, created_at_ms FROM user_emails WHERE email = $1 AND user_id = $2")
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
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

pub async fn list(tx: &mut Conn, user: &UserId) -> Result<Vec<Secondary>, sqlx::Error> {
    sqlx::query("SELECT email, verified_at_ms, created_at_ms FROM user_emails WHERE user_id = $1 ORDER BY email")
        .bind(user.as_str())
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
