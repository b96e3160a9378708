//! A change's first statement: its account's lock and, read under it, the calling user and
//! their custom role's privileges (SPEC R34: a change is decided from current data). One round
//! trip on PostgreSQL where three were (lock, caller, role); SQLite, which has no round trips
//! to save and no `UPDATE` inside a `WITH`, takes the lock and then reads.
//!
//! What [`super::invite_locks`] shares with it: the caller's columns and joins, and reading
//! under a lock the statement itself waited for ([`read_under_lock`]).

use std::collections::BTreeSet;

use roster_platform::db::Backend;
use sqlx::Row;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;

use super::Conn;
use super::roles::decode_privileges;
use super::users::decode_columns;
use crate::domain::model::{Privilege, User};
use crate::domain::values::{AccountId, UserId};

/// The calling user (any account's; `None` for operators, services and unknown ids) and the
/// privileges of their custom role if it is one of the locked account's.
#[derive(Debug)]
pub struct CallerRows {
    pub user: Option<User>,
    pub privileges: Option<BTreeSet<Privilege>>,
}

/// The calling user's columns, named `caller_*`, from the joins of [`caller_joins`].
pub(super) const CALLER_COLUMNS: &str = "u.id AS caller_id, u.account_id AS caller_account_id, \
     u.email AS caller_email, u.display_name AS caller_display_name, u.status AS caller_status, \
     u.role AS caller_role, u.custom_role_id AS caller_custom_role_id, u.external AS caller_external, \
     u.created_at_ms AS caller_created_at_ms, u.deactivated_at_ms AS caller_deactivated_at_ms, \
     cr.name AS caller_custom_role_name, cr.privileges AS caller_privileges";

/// Joins the user whose id is bound as `caller` to the locked account's row `l`, and their
/// custom role if it is one of that account's.
pub(super) fn caller_joins(caller: &str) -> String {
    format!(
        "LEFT JOIN users u ON u.id = {caller} \
         LEFT JOIN custom_roles cr ON cr.id = u.custom_role_id AND cr.account_id = l.id"
    )
}

/// Reads [`CALLER_COLUMNS`] off `row`.
pub(super) fn decode_caller(row: &AnyRow) -> Result<CallerRows, sqlx::Error> {
    let user = match row.try_get::<Option<String>, _>("caller_id")? {
        Some(_) => Some(decode_columns(row, "caller_")?),
        None => None,
    };
    let privileges = row.try_get::<Option<String>, _>("caller_privileges")?;
    Ok(CallerRows { user, privileges: privileges.map(|text| decode_privileges(&text)).transpose()? })
}

/// Runs a statement that waits for its account's lock and reads under it, and returns its row
/// (`None`: no such open account). The statement reads the account's version twice:
/// `locked_version`, the newest committed one as the lock found it, and `seen_version`, from
/// the statement's snapshot. PostgreSQL takes that snapshot before the statement waits, so a
/// writer that held the lock and committed during the wait is missing from the reads; when
/// the two differ the statement runs again, now already holding the lock, and sees it.
pub(super) async fn read_under_lock<'q>(
    tx: &mut Conn,
    account: &AccountId,
    statement: impl Fn() -> Query<'q, Any, AnyArguments<'q>>,
) -> Result<Option<AnyRow>, sqlx::Error> {
    for _ in 0..2 {
        let Some(row) = statement().fetch_optional(&mut *tx).await? else { return Ok(None) };
        if row.try_get::<i64, _>("locked_version")? == row.try_get::<i64, _>("seen_version")? {
            return Ok(Some(row));
        }
    }
    // The second run held the lock throughout, so no other holder could have committed.
    Err(sqlx::Error::Protocol(format!("account {account}'s version moved while its lock was held")))
}

/// Takes `account`'s lock (as [`super::accounts::lock`]: exclusive, to commit) and reads the
/// caller under it; `None` if there is no such open account.
pub async fn lock_and_read_caller(
    tx: &mut Conn,
    account: &AccountId,
    caller: Option<&UserId>,
) -> Result<Option<CallerRows>, sqlx::Error> {
    let caller_id = caller.map_or("", UserId::as_str);
    let row = match Backend::of(tx) {
        Backend::Postgres => {
            // The update's own change is invisible to the rest of the statement: `version - 1`
            // is the newest committed version, `seen_version` the snapshot's.
            let sql = format!(
                "WITH l AS (UPDATE accounts SET version = version + 1 WHERE id = $1 AND closed_at_ms IS NULL \
                 RETURNING id, version) \
                 SELECT l.version - 1 AS locked_version, (SELECT version FROM accounts WHERE id = $1) AS seen_version, \
                 {CALLER_COLUMNS} FROM l {}",
                caller_joins("$2")
            );
            read_under_lock(tx, account, || sqlx::query(&sql).bind(account.as_str()).bind(caller_id)).await?
        }
        Backend::Sqlite => {
            if !super::accounts::lock(tx, account).await? {
                return Ok(None);
            }
            let sql = format!("SELECT {CALLER_COLUMNS} FROM accounts l {} WHERE l.id = $1", caller_joins("$2"));
            sqlx::query(&sql).bind(account.as_str()).bind(caller_id).fetch_optional(&mut *tx).await?
        }
    };
    row.map(|row| decode_caller(&row)).transpose()
}
