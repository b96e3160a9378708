//! The `integrations` table: a minimal record of who authorised which integration (SPEC R6).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, flag, stored_flag};
use crate::domain::model::Integration;
use crate::domain::values::{AccountId, IntegrationId, UserId};

const COLUMNS: &str = "id, account_id, name, authorized_by, needs_reauthorization, created_at_ms";

fn decode(row: &AnyRow) -> Result<Integration, sqlx::Error> {
    Ok(Integration {
        id: IntegrationId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        name: row.try_get("name")?,
        authorized_by: UserId::from_stored(row.try_get("authorized_by")?),
        needs_reauthorization: flag(row.try_get("needs_reauthorization")?),
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

pub async fn insert(tx: &mut Conn, integration: &Integration) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("INSERT INTO integrations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(integration.id.as_str())
        .bind(integration.account_id.as_str())
        .bind(&integration.name)
        .bind(integration.authorized_by.as_str())
        .bind(stored_flag(integration.needs_reauthorization))
        .bind(integration.created_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn list(tx: &mut Conn, account: &AccountId) -> Result<Vec<Integration>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM integrations WHERE account_id = $1 ORDER BY id"))
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// Flags every integration `user` authorised in `account` and returns them.
pub async fn flag_for_reauthorization(
    tx: &mut Conn,
    account: &AccountId,
    user: &UserId,
) -> Result<Vec<Integration>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE integrations SET needs_reauthorization = 1 WHERE account_id = $1 AND authorized_by = $2 RETURNING {COLUMNS}"
    ))
    .bind(account.as_str())
    .bind(user.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}
