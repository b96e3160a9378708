//! A change's first statement: its account's lock and, read under it, the calling user and
//! their custom role's privileges (SPEC R34: a change is decided from current data). One round
//! trip on PostgreSQL where three were (lock, caller, role); SQLite, which has no round trips
//! to save and no `UPDATE` inside a `WITH`, takes the lock and then reads.
//!
//! What [`super::invite_locks`] shares with it: reading under a lock the statement itself
//! waited for ([`read_under_lock`]).

use roster_platform::db::Backend;
use sqlx::Row;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;

use super::Conn;
use super::members::{MEMBER_COLUMNS, MemberRows, decode_member, member_joins};
use crate::domain::values::{AccountId, UserId};

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
) -> Result<Option<MemberRows>, sqlx::Error> {
    let caller_id = caller.map_or("", UserId::as_str);
    let row = match Backend::of(tx) {
        Backend::Postgres => {
            // The update's own change is invisible to the rest of the statement: `version - 1`
            // is the newest committed version, `seen_version` the snapshot's.
            let sql = format!(
                "WITH l AS (UPDATE accounts SET version = version + 1 WHERE id = $1 AND closed_at_ms IS NULL \
                 RETURNING id, version) \
                 SELECT l.version - 1 AS locked_version, (SELECT version FROM accounts WHERE id = $1) AS seen_version, \
                 {MEMBER_COLUMNS} FROM l {}",
                member_joins("u.id = $2")
            );
            read_under_lock(tx, account, || sqlx::query(&sql).bind(account.as_str()).bind(caller_id)).await?
        }
        Backend::Sqlite => {
            if !super::accounts::lock(tx, account).await? {
                return Ok(None);
            }
            let sql = format!("SELECT {MEMBER_COLUMNS} FROM accounts l {} WHERE l.id = $1", member_joins("u.id = $2"));
            sqlx::query(&sql).bind(account.as_str()).bind(caller_id).fetch_optional(&mut *tx).await?
        }
    };
    row.map(|row| decode_member(&row)).transpose()
}
