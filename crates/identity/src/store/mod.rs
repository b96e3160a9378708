//! Identity persistence: sqlx queries that take `&mut Conn`. Changes pass their transaction,
//! so a change, its audit record, its outbox e-mails and its idempotency record commit
//! together; reads pass a pooled connection and need no BEGIN or ROLLBACK. Queries return domain types.
//!
//! Isolation: every write transaction first takes its account's lock
//! ([`accounts::lock`]; with the caller, in one statement: [`account_locks`]), a row update
//! that serialises writers of one account on PostgreSQL (row lock, held to commit) and on
//! SQLite (single connection). Checks that read current
//! data after the lock therefore see every earlier committed write to that account.
//! Invitations take the same lock in shared mode ([`invite_locks`]): they still wait
//! for every other writer, but not for each other, and the unique e-mail index settles two
//! invitations of one address.

pub mod account_locks;
pub mod accounts;
pub mod audit;
pub mod auto_delete;
pub mod bulk;
pub mod integrations;
pub mod invitations;
pub mod invite_locks;
pub mod members;
pub mod outbox;
pub mod ownership_requests;
pub mod reclaimed;
pub mod roles;
pub mod settings;
pub mod step_up;
pub mod user_emails;
pub mod users;

use roster_platform::db::MigrationSql;

pub use roster_platform::db::{Conn, Tx};

/// Embedded migrations, applied in order at start-up; the workflow engine's tables included.
pub const MIGRATIONS: &[MigrationSql] = &[
    MigrationSql { version: 1, description: "identity", sql: include_str!("../../migrations/0001_identity.sql") },
    MigrationSql {
        version: 2,
        description: "reclaimed licenses",
        sql: include_str!("../../migrations/0002_reclaimed_licenses.sql"),
    },
    MigrationSql {
        version: 3,
        description: "ownership requests and step-up",
        sql: include_str!("../../migrations/0003_ownership_requests.sql"),
    },
    MigrationSql {
        version: 4,
        description: "undeliverable e-mails",
        sql: include_str!("../../migrations/0004_outbox_undeliverable.sql"),
    },
    MigrationSql { version: 5, description: "auto-delete", sql: include_str!("../../migrations/0005_auto_delete.sql") },
    MigrationSql {
        version: 6,
        description: "user e-mails",
        sql: include_str!("../../migrations/0006_user_emails.sql"),
    },
    MigrationSql { version: 7, description: "bulk removal", sql: include_str!("../../migrations/0007_bulk.sql") },
    MigrationSql {
        version: 8,
        description: "bulk dry runs",
        sql: include_str!("../../migrations/0008_bulk_dry_run.sql"),
    },
    MigrationSql {
        version: 9,
        description: "address claims",
        sql: include_str!("../../migrations/0009_address_claims.sql"),
    },
    roster_platform::event_log::store::migration(10),
    MigrationSql {
        version: 11,
        description: "user settings",
        sql: include_str!("../../migrations/0011_user_settings.sql"),
    },
    roster_workflow::MIGRATIONS[0],
    roster_workflow::MIGRATIONS[1],
    roster_workflow::MIGRATIONS[2],
];

/// A stored value that no longer parses: the database was changed outside this service.
fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("corrupt {what} in the identity database: {value:?}").into())
}

fn flag(value: i64) -> bool {
    value != 0
}

fn stored_flag(value: bool) -> i64 {
    i64::from(value)
}
