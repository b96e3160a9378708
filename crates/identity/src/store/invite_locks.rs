//! What an invitation takes and reads before it writes (SPEC R26, R12, R34), in one
//! statement: the account's lock in shared mode, the invited address's lock, and, under them,
//! the account's name, the calling user and the custom roles involved. With the writes folded
//! into one more statement (`app::invitations`), an invitation is four round trips on
//! PostgreSQL: BEGIN, this, the writes, COMMIT.

use std::collections::BTreeSet;

use roster_platform::db::Backend;
use sqlx::Row;

use super::Conn;
use super::roles::decode_privileges;
use super::users::decode_columns;
use crate::domain::model::{Privilege, User};
use crate::domain::values::{AccountId, Email, RoleId, UserId};

/// What an invitation decides on, read under its locks.
#[derive(Debug)]
pub struct Locked {
    pub account_name: String,
    /// The calling user, whichever account they are in; `None` for operators and services.
    pub caller: Option<User>,
    /// The privileges of the calling user's custom role, if they hold one of this account's.
    pub caller_privileges: Option<BTreeSet<Privilege>>,
    /// The privileges of the custom role to invite with, if it is one of this account's.
    pub role_privileges: Option<BTreeSet<Privilege>>,
}

/// Takes the account's lock in shared mode, then the address's (as
/// [`super::user_emails::lock_address`]), and reads what [`Locked`] holds; `None` if there is
/// no such open account.
///
/// The shared lock waits for, and keeps out, every holder of [`super::accounts::lock`] (role,
/// status, ownership, settings and membership changes), but not other invitations: they only
/// add rows the account's unique e-mail index guards, so a busy account takes them side by
/// side. SQLite's single writer serialises them anyway.
///
/// The reads share the statement's snapshot, which PostgreSQL takes before the statement
/// waits for the account's lock. A writer that held the lock exclusively and committed during
/// that wait would be missing from them, so the statement also reads the account's version
/// twice: as locked (the newest, which every exclusive holder raises) and as the snapshot had
/// it. If they differ the statement runs again, now holding the lock, and sees everything.
pub async fn lock_and_read(
    tx: &mut Conn,
    account: &AccountId,
    caller: Option<&UserId>,
    email: &Email,
    role: Option<&RoleId>,
) -> Result<Option<Locked>, sqlx::Error> {
    let (lock, address_lock) = match Backend::of(tx) {
        // The address lock is taken in the outer query's projection, after the subquery's
        // row lock: the order every change that decides an address's holder keeps.
        Backend::Postgres => ("FOR SHARE", "pg_advisory_xact_lock(hashtextextended($2, 7))::text"),
        // One writer: the transaction already excludes every other change.
        Backend::Sqlite => ("", "$2"),
    };
    let sql = format!(
        "SELECT l.name AS account_name, l.version AS locked_version, \
         (SELECT version FROM accounts WHERE id = $1) AS seen_version, {address_lock} AS address_lock, \
         u.id AS caller_id, u.account_id AS caller_account_id, u.email AS caller_email, \
         u.display_name AS caller_display_name, u.status AS caller_status, u.role AS caller_role, \
         u.custom_role_id AS caller_custom_role_id, u.external AS caller_external, \
         u.created_at_ms AS caller_created_at_ms, u.deactivated_at_ms AS caller_deactivated_at_ms, \
         NULL AS caller_custom_role_name, cr.privileges AS caller_privileges, nr.privileges AS role_privileges \
         FROM (SELECT id, name, version FROM accounts WHERE id = $1 AND closed_at_ms IS NULL {lock}) l \
         LEFT JOIN users u ON u.id = $3 \
         LEFT JOIN custom_roles cr ON cr.id = u.custom_role_id AND cr.account_id = l.id \
         LEFT JOIN custom_roles nr ON nr.id = $4 AND nr.account_id = l.id"
    );
    let address = format!("email:{}", email.as_str());
    for _ in 0..2 {
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(&address)
            .bind(caller.map_or("", UserId::as_str))
            .bind(role.map_or("", RoleId::as_str))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let locked: i64 = row.try_get("locked_version")?;
        let seen: i64 = row.try_get("seen_version")?;
        if locked != seen {
            continue;
        }
        let caller = match row.try_get::<Option<String>, _>("caller_id")? {
            Some(_) => Some(decode_columns(&row, "caller_")?),
            None => None,
        };
        let privileges = |column: &str| -> Result<Option<BTreeSet<Privilege>>, sqlx::Error> {
            row.try_get::<Option<String>, _>(column)?.map(|text| decode_privileges(&text)).transpose()
        };
        return Ok(Some(Locked {
            account_name: row.try_get("account_name")?,
            caller,
            caller_privileges: privileges("caller_privileges")?,
            role_privileges: privileges("role_privileges")?,
        }));
    }
    // The second run held the lock throughout, so no exclusive holder could have committed.
    Err(sqlx::Error::Protocol(format!("account {account}'s version moved while its lock was held")))
}
