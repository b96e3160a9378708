//! Seat pools, assignments and license holds.

use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;
use strum::VariantArray;

use super::{Conn, count, parse};
use crate::domain::model::{Assignment, Id, LicenseType, SeatPool};

/// Every license type with its capacity (0 when none were bought) and assigned count.
pub async fn pools(tx: &mut Conn, account: &Id) -> Result<Vec<SeatPool>, sqlx::Error> {
    let mut pools = Vec::with_capacity(LicenseType::VARIANTS.len());
    for license_type in LicenseType::VARIANTS {
        pools.push(pool(tx, account, *license_type).await?);
    }
    Ok(pools)
}

/// A pool's capacity and assigned count, in one query.
const POOL_COLUMNS: &str = "(SELECT capacity FROM seat_pools WHERE account_id = $1 AND license_type = $2) AS capacity, \
     (SELECT COUNT(*) FROM assignments WHERE account_id = $1 AND license_type = $2) AS assigned";

fn decode_pool(row: &AnyRow, license_type: LicenseType) -> Result<SeatPool, sqlx::Error> {
    let capacity: Option<i64> = row.try_get("capacity")?;
    let assigned: i64 = row.try_get("assigned")?;
    Ok(SeatPool { license_type, capacity: count(capacity.unwrap_or(0)), assigned: count(assigned) })
}

pub async fn pool(tx: &mut Conn, account: &Id, license_type: LicenseType) -> Result<SeatPool, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {POOL_COLUMNS}"))
        .bind(account.as_str())
        .bind(license_type.as_str())
        .fetch_one(&mut *tx)
        .await?;
    decode_pool(&row, license_type)
}

/// What giving one user a seat of one type decides on, read in one query.
#[derive(Debug)]
pub struct SeatFor {
    pub pool: SeatPool,
    /// Their licenses are held by a reclaim (a saga is taking them away).
    pub user_held: bool,
    /// They hold a seat of this type already.
    pub user_has_it: bool,
}

pub async fn seat_for(
    tx: &mut Conn,
    account: &Id,
    user: &Id,
    license_type: LicenseType,
) -> Result<SeatFor, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {POOL_COLUMNS}, \
         (SELECT COUNT(*) FROM license_holds WHERE account_id = $1 AND user_id = $3) AS held, \
         (SELECT COUNT(*) FROM assignments WHERE account_id = $1 AND license_type = $2 AND user_id = $3) AS has_it"
    ))
    .bind(account.as_str())
    .bind(license_type.as_str())
    .bind(user.as_str())
    .fetch_one(&mut *tx)
    .await?;
    Ok(SeatFor {
        pool: decode_pool(&row, license_type)?,
        user_held: row.try_get::<i64, _>("held")? > 0,
        user_has_it: row.try_get::<i64, _>("has_it")? > 0,
    })
}

pub async fn set_capacity(
    tx: &mut Conn,
    account: &Id,
    license_type: LicenseType,
    capacity: u32,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO seat_pools (account_id, license_type, capacity, updated_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, license_type) DO UPDATE SET capacity = $3, updated_at_ms = $4",
    )
    .bind(account.as_str())
    .bind(license_type.as_str())
    .bind(i64::from(capacity))
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const COLUMNS: &str = "account_id, user_id, license_type, assigned_at_ms";

fn decode(row: &AnyRow) -> Result<Assignment, sqlx::Error> {
    let license_type: String = row.try_get("license_type")?;
    Ok(Assignment {
        account_id: Id::from_stored(row.try_get("account_id")?),
        user_id: Id::from_stored(row.try_get("user_id")?),
        license_type: parse("license type", &license_type, LicenseType::from_str_opt)?,
        assigned_at_ms: row.try_get("assigned_at_ms")?,
    })
}

/// Inserts an assignment; false when the user already holds that license.
pub async fn assign(tx: &mut Conn, assignment: &Assignment) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "INSERT INTO assignments ({COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, user_id, license_type) DO NOTHING"
    ))
    .bind(assignment.account_id.as_str())
    .bind(assignment.user_id.as_str())
    .bind(assignment.license_type.as_str())
    .bind(assignment.assigned_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes an assignment and returns it, if it existed.
pub async fn unassign(
    tx: &mut Conn,
    account: &Id,
    user: &Id,
    license_type: LicenseType,
) -> Result<Option<Assignment>, sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM assignments WHERE account_id = $1 AND user_id = $2 AND license_type = $3 RETURNING {COLUMNS}"
    ))
    .bind(account.as_str())
    .bind(user.as_str())
    .bind(license_type.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| decode(&row))
    .transpose()
}

/// One user's licenses, by type.
pub async fn of_user(tx: &mut Conn, account: &Id, user: &Id) -> Result<Vec<Assignment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM assignments WHERE account_id = $1 AND user_id = $2 ORDER BY license_type"
    ))
    .bind(account.as_str())
    .bind(user.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// Assignments in (license type, user) order, after the page cursor `after`.
pub async fn list(
    tx: &mut Conn,
    account: &Id,
    user: Option<&Id>,
    license_type: Option<LicenseType>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Assignment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM assignments WHERE account_id = $1 \
         AND ($2 = '' OR user_id = $2) AND ($3 = '' OR license_type = $3) \
         AND (license_type || '/' || user_id) > $4 \
         ORDER BY license_type, user_id LIMIT $5"
    ))
    .bind(account.as_str())
    .bind(user.map_or("", Id::as_str))
    .bind(license_type.map_or("", LicenseType::as_str))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// The page cursor of an assignment, matching [`list`]'s order.
pub fn cursor(assignment: &Assignment) -> String {
    format!("{}/{}", assignment.license_type.as_str(), assignment.user_id)
}

/// Blocks assignments to a user whose licenses a saga reclaimed.
pub async fn hold(tx: &mut Conn, account: &Id, user: &Id, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO license_holds (account_id, user_id, since_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, user_id) DO NOTHING",
    )
    .bind(account.as_str())
    .bind(user.as_str())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn release_hold(tx: &mut Conn, account: &Id, user: &Id) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM license_holds WHERE account_id = $1 AND user_id = $2")
        .bind(account.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn is_held(tx: &mut Conn, account: &Id, user: &Id) -> Result<bool, sqlx::Error> {
    let held: Option<i64> =
        sqlx::query_scalar("SELECT since_ms FROM license_holds WHERE account_id = $1 AND user_id = $2")
            .bind(account.as_str())
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(held.is_some())
}
