//! Licensing persistence: sqlx queries that take `&mut Conn`. Changes pass their transaction,
//! so a change, its audit record and its idempotency record commit together; reads pass a
//! pooled connection and need no BEGIN or ROLLBACK. Queries return domain types.
//!
//! Isolation: every write transaction first takes its account's lock ([`lock_account`]), an
//! upsert that serialises writers of one account on PostgreSQL (row lock, held to commit) and
//! on SQLite (single connection). Counts read after the lock (assigned seats, refunds) see
//! every earlier committed write, which is what makes capacity hold under concurrency.

pub mod audit;
pub mod billing;
pub mod content;
pub mod phones;
pub mod seats;

use roster_platform::db::MigrationSql;

pub use roster_platform::db::{Conn, Tx};

use crate::domain::model::Id;

/// Embedded migrations, applied in order at start-up.
pub const MIGRATIONS: &[MigrationSql] = &[
    MigrationSql { version: 1, description: "licensing", sql: include_str!("../../migrations/0001_licensing.sql") },
    MigrationSql {
        version: 2,
        description: "refund beneficiary",
        sql: include_str!("../../migrations/0002_refund_beneficiary.sql"),
    },
    roster_platform::event_log::store::migration(3),
];

/// Takes the account's write lock for the rest of the transaction.
pub async fn lock_account(tx: &mut Conn, account: &Id) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO license_accounts (account_id, version) VALUES ($1, 1) \
         ON CONFLICT (account_id) DO UPDATE SET version = license_accounts.version + 1",
    )
    .bind(account.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A stored value that no longer parses: the database was changed outside this service.
fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("corrupt {what} in the licensing database: {value:?}").into())
}

fn parse<T: Copy>(what: &str, raw: &str, from: fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
    from(raw).ok_or_else(|| corrupt(what, raw))
}

fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
