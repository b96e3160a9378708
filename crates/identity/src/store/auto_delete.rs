//! The reads and marks of the auto-delete sweep (SPEC R20).

use sqlx::Row;

use super::Conn;
use crate::domain::values::{AccountId, UserId};

/// A deactivated user in an account with auto-delete on, whose notice or deletion is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub email: String,
    pub deactivated_at_ms: i64,
    /// The deactivation the admins were told about, if any.
    pub noticed_for_ms: Option<i64>,
    pub days: u32,
    pub notify: bool,
    pub changed_at_ms: i64,
}

/// Deactivated users whose notice is due by `now_ms` (the deletion comes a week after it),
/// oldest deactivation first.
pub async fn due(tx: &mut Conn, now_ms: i64, limit: i64) -> Result<Vec<Candidate>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.id, u.account_id, u.email, u.deactivated_at_ms, u.auto_delete_noticed_for_ms, a.auto_delete_days, \
         a.notify_before_auto_delete, a.auto_delete_changed_at_ms FROM users u JOIN accounts a ON a.id = u.account_id \
         WHERE u.status = 'deactivated' AND u.deactivated_at_ms IS NOT NULL AND a.closed_at_ms IS NULL \
         AND a.auto_delete_days > 0 AND u.deactivated_at_ms + a.auto_delete_days * 86400000 - 604800000 <= $1 \
         AND (u.auto_delete_started_for_ms IS NULL OR u.auto_delete_started_for_ms <> u.deactivated_at_ms) \
         ORDER BY u.deactivated_at_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let days: i64 = row.try_get("auto_delete_days")?;
            let notify: i64 = row.try_get("notify_before_auto_delete")?;
            Ok(Candidate {
                user_id: UserId::from_stored(row.try_get("id")?),
                account_id: AccountId::from_stored(row.try_get("account_id")?),
                email: row.try_get("email")?,
                deactivated_at_ms: row.try_get("deactivated_at_ms")?,
                noticed_for_ms: row.try_get("auto_delete_noticed_for_ms")?,
                days: u32::try_from(days).unwrap_or(u32::MAX),
                notify: notify != 0,
                changed_at_ms: row.try_get("auto_delete_changed_at_ms")?,
            })
        })
        .collect()
}

/// What the sweep does once per deactivation of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Once {
    /// The user managers were told of the coming deletion.
    Noticed,
    /// The deletion was started (one that fails is left to an operator).
    Started,
}

/// Records `once` for the deactivation at `deactivated_at_ms`; false if it was recorded
/// before (another replica's sweep, or an earlier pass) or the user is no longer so
/// deactivated, so the caller does nothing.
pub async fn mark(tx: &mut Conn, once: Once, user: &UserId, deactivated_at_ms: i64) -> Result<bool, sqlx::Error> {
    let column = match once {
        Once::Noticed => "auto_delete_noticed_for_ms",
        Once::Started => "auto_delete_started_for_ms",
    };
    let updated = sqlx::query(&format!(
        "UPDATE users SET {column} = $2 WHERE id = $1 AND status = 'deactivated' AND deactivated_at_ms = $2 \
         AND ({column} IS NULL OR {column} <> $2)"
    ))
    .bind(user.as_str())
    .bind(deactivated_at_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// The e-mail addresses of the account's active users who manage users (and so see the
/// setting): the owner, admins, and holders of a custom role with that privilege.
pub async fn user_managers(tx: &mut Conn, account: &AccountId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u.email FROM users u LEFT JOIN custom_roles r ON r.id = u.custom_role_id \
         WHERE u.account_id = $1 AND u.status = 'active' AND (u.role IN ('owner', 'admin') \
         OR (u.role = 'custom' AND (' ' || r.privileges || ' ') LIKE '% manage_users %')) ORDER BY u.email",
    )
    .bind(account.as_str())
    .fetch_all(&mut *tx)
    .await
}

/// Notes that the setting changed now (see `domain::auto_delete::deletion_due`).
pub async fn setting_changed(tx: &mut Conn, account: &AccountId, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET auto_delete_changed_at_ms = $2 WHERE id = $1")
        .bind(account.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
