//! The `audit_events` table (SPEC R33): append-only, read newest first.

use roster_platform::folded::Folded;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Conn;
use crate::domain::model::AuditEvent;
use crate::domain::values::AccountId;

const COLUMNS: &str = "id, account_id, principal, action, target, outcome, request_id, details, at_ms";

fn decode(row: &AnyRow) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        account_id: row.try_get::<Option<String>, _>("account_id")?.map(AccountId::from_stored),
        principal: row.try_get("principal")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        request_id: row.try_get("request_id")?,
        details_json: row.try_get("details")?,
        at_ms: row.try_get("at_ms")?,
    })
}

pub async fn insert(tx: &mut Conn, event: &AuditEvent) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    insert_into(&mut write, event);
    write.run(tx).await?;
    Ok(())
}

/// [`insert`] as one of a change's folded writes.
pub fn insert_into(write: &mut Folded, event: &AuditEvent) {
    write.write(|args| {
        format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
            args.bind(event.id.clone()),
            args.bind(event.account_id.as_ref().map(|a| a.as_str().to_owned())),
            args.bind(event.principal.clone()),
            args.bind(event.action.clone()),
            args.bind(event.target.clone()),
            args.bind(event.outcome.clone()),
            args.bind(event.request_id.clone()),
            args.bind(event.details_json.clone()),
            args.bind(event.at_ms),
        )
    });
}

/// Newest first; `before` is the id of the last event of the previous page.
pub async fn list(
    tx: &mut Conn,
    account: &AccountId,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    // UUIDv7 ids are ASCII and start with the timestamp, so "~" sorts after every one of them.
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_events WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    ))
    .bind(account.as_str())
    .bind(before.unwrap_or("~"))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}
