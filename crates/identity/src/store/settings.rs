//! The `user_settings` table: one row per user who has set anything, written under the
//! account's lock (so a version check and its write see no change in between).

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Conn, corrupt};
use crate::domain::settings::{StoredSettings, UserSettings};
use crate::domain::values::UserId;

pub async fn get(conn: &mut Conn, user: &UserId) -> Result<Option<StoredSettings>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT time_zone, language, entries, version, updated_at_ms FROM user_settings WHERE user_id = $1",
    )
    .bind(user.as_str())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let entries: String = row.try_get("entries")?;
    let entries: BTreeMap<String, String> =
        serde_json::from_str(&entries).map_err(|_| corrupt("user settings", &entries))?;
    Ok(Some(StoredSettings {
        settings: UserSettings { time_zone: row.try_get("time_zone")?, language: row.try_get("language")?, entries },
        version: row.try_get("version")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    }))
}

/// Writes `settings` as version `version`.
pub async fn put(
    tx: &mut Conn,
    user: &UserId,
    settings: &UserSettings,
    version: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let entries = serde_json::to_string(&settings.entries).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    sqlx::query(
        "INSERT INTO user_settings (user_id, time_zone, language, entries, version, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET time_zone = $2, language = $3, \
         entries = $4, version = $5, updated_at_ms = $6",
    )
    .bind(user.as_str())
    .bind(&settings.time_zone)
    .bind(&settings.language)
    .bind(entries)
    .bind(version)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes a user's settings, before the user row goes (SPEC R22).
pub async fn forget(tx: &mut Conn, user: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_settings WHERE user_id = $1").bind(user.as_str()).execute(&mut *tx).await?;
    Ok(())
}
