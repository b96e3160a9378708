//! The licenses a deactivation reclaimed, remembered per user until a reactivation uses or
//! drops them (SPEC R19). Written by saga steps in their fenced transaction.

use serde_json::Value;

use super::{Conn, corrupt};
use crate::domain::values::{AccountId, UserId};

pub async fn remember(
    tx: &mut Conn,
    user: &UserId,
    account: &AccountId,
    licenses: &Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reclaimed_licenses (user_id, account_id, licenses, reclaimed_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET account_id = $2, licenses = $3, reclaimed_at_ms = $4",
    )
    .bind(user.as_str())
    .bind(account.as_str())
    .bind(licenses.to_string())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The remembered set of a user of `account`, if any.
pub async fn get(tx: &mut Conn, user: &UserId, account: &AccountId) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT licenses FROM reclaimed_licenses WHERE user_id = $1 AND account_id = $2")
            .bind(user.as_str())
            .bind(account.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("reclaimed licenses", &t))).transpose()
}

pub async fn forget(tx: &mut Conn, user: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM reclaimed_licenses WHERE user_id = $1").bind(user.as_str()).execute(&mut *tx).await?;
    Ok(())
}
