//! What an invitation takes and reads before it writes (SPEC R26, R12, R34), in one
//! statement: the account's lock in shared mode, the invited address's lock, and, under them,
//! the account's name, the calling user and the custom roles involved. With the writes folded
//! into one more statement (`app::invitations`), an invitation is four round trips on
//! PostgreSQL: BEGIN, this, the writes, COMMIT.

use std::collections::BTreeSet;

use roster_platform::db::Backend;
use sqlx::Row;

use super::Conn;
use super::account_locks::read_under_lock;
use super::members::{MEMBER_COLUMNS, decode_member, member_joins};
use super::roles::decode_privileges;
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
/// The reads see every writer that held the lock before it ([`read_under_lock`]).
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
         {MEMBER_COLUMNS}, nr.privileges AS role_privileges \
         FROM (SELECT id, name, version FROM accounts WHERE id = $1 AND closed_at_ms IS NULL {lock}) l \
         {} LEFT JOIN custom_roles nr ON nr.id = $4 AND nr.account_id = l.id",
        member_joins("u.id = $3")
    );
    let address = format!("email:{}", email.as_str());
    let statement = || {
        sqlx::query(&sql)
            .bind(account.as_str())
            .bind(&address)
            .bind(caller.map_or("", UserId::as_str))
            .bind(role.map_or("", RoleId::as_str))
    };
    let Some(row) = read_under_lock(tx, account, statement).await? else { return Ok(None) };
    let caller = decode_member(&row)?;
    let role_privileges = row.try_get::<Option<String>, _>("role_privileges")?;
    Ok(Some(Locked {
        account_name: row.try_get("account_name")?,
        caller: caller.user,
        caller_privileges: caller.privileges,
        role_privileges: role_privileges.map(|text| decode_privileges(&text)).transpose()?,
    }))
}
