//! The `custom_roles` table.

use roster_platform::stored_text::StoredText;
use std::collections::BTreeSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, corrupt};
use crate::domain::model::{CustomRole, Privilege};
use crate::domain::values::{AccountId, RoleId};

fn decode(row: &AnyRow) -> Result<CustomRole, sqlx::Error> {
    let privileges: String = row.try_get("privileges")?;
    Ok(CustomRole {
        id: RoleId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        name: row.try_get("name")?,
        privileges: decode_privileges(&privileges)?,
    })
}

/// A role's stored privileges: their names, separated by spaces.
pub(super) fn decode_privileges(text: &str) -> Result<BTreeSet<Privilege>, sqlx::Error> {
    text.split_whitespace().map(|p| Privilege::from_str_opt(p).ok_or_else(|| corrupt("privilege", p))).collect()
}

fn privileges_text(privileges: &BTreeSet<Privilege>) -> String {
    privileges.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ")
}

pub async fn insert(tx: &mut Conn, role: &CustomRole, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO custom_roles (id, account_id, name, privileges, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(role.id.as_str())
    .bind(role.account_id.as_str())
    .bind(&role.name)
    .bind(privileges_text(&role.privileges))
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn get(tx: &mut Conn, account: &AccountId, id: &RoleId) -> Result<Option<CustomRole>, sqlx::Error> {
    sqlx::query("SELECT id, account_id, name, privileges FROM custom_roles WHERE account_id = $1 AND id = $2")
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub async fn list(tx: &mut Conn, account: &AccountId) -> Result<Vec<CustomRole>, sqlx::Error> {
    sqlx::query("SELECT id, account_id, name, privileges FROM custom_roles WHERE account_id = $1 ORDER BY id")
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decode)
        .collect()
}

pub async fn update(tx: &mut Conn, role: &CustomRole) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE custom_roles SET name = $3, privileges = $4 WHERE account_id = $1 AND id = $2")
        .bind(role.account_id.as_str())
        .bind(role.id.as_str())
        .bind(&role.name)
        .bind(privileges_text(&role.privileges))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut Conn, account: &AccountId, id: &RoleId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM custom_roles WHERE account_id = $1 AND id = $2")
        .bind(account.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How many users hold each role kind ("owner", "admin", "member") or custom role id.
pub async fn holder_counts(tx: &mut Conn, account: &AccountId) -> Result<Vec<(String, u32)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT CASE WHEN role = 'custom' THEN custom_role_id ELSE role END AS role_key, COUNT(*) AS holders \
         FROM users WHERE account_id = $1 GROUP BY CASE WHEN role = 'custom' THEN custom_role_id ELSE role END",
    )
    .bind(account.as_str())
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let key: String = row.try_get("role_key")?;
            let holders: i64 = row.try_get("holders")?;
            Ok((key, u32::try_from(holders).unwrap_or(u32::MAX)))
        })
        .collect()
}
