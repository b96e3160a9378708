//! The `audit_events` table (SPEC R33): append-only.

use roster_platform::folded::Folded;
use sqlx::Row;

use super::Conn;

/// An audit record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: String,
    pub account_id: String,
    pub principal: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub details_json: String,
    pub at_ms: i64,
}

/// One audit record; `outcome` is `ok` or `refused:<REASON>`.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub account_id: &'a str,
    pub principal: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub request_id: &'a str,
    pub details_json: &'a str,
    pub at_ms: i64,
}

pub async fn insert(tx: &mut Conn, event: &AuditEvent<'_>) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    insert_into(&mut write, event);
    write.run(tx).await.map(drop)
}

/// [`insert`] as one of a change's folded writes.
pub fn insert_into(write: &mut Folded, event: &AuditEvent<'_>) {
    write.write(|args| {
        format!(
            "INSERT INTO audit_events (id, account_id, principal, action, target, outcome, request_id, details, at_ms) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
            // Ordered by the time it shows, so the trail lists newest first without inversions.
            args.bind(roster_platform::ids::at(event.at_ms)),
            args.bind(event.account_id.to_owned()),
            args.bind(event.principal.to_owned()),
            args.bind(event.action.to_owned()),
            args.bind(event.target.to_owned()),
            args.bind(event.outcome.to_owned()),
            args.bind(event.request_id.to_owned()),
            args.bind(event.details_json.to_owned()),
            args.bind(event.at_ms),
        )
    });
}

/// The account's records, newest first; `before` is the last id of the previous page.
pub async fn list(
    tx: &mut Conn,
    account: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, account_id, principal, action, target, outcome, request_id, details, at_ms FROM audit_events \
         WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(account)
    .bind(before.unwrap_or("~"))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                id: row.try_get("id")?,
                account_id: row.try_get::<Option<String>, _>("account_id")?.unwrap_or_default(),
                principal: row.try_get("principal")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                outcome: row.try_get("outcome")?,
                request_id: row.try_get("request_id")?,
                details_json: row.try_get("details")?,
                at_ms: row.try_get("at_ms")?,
            })
        })
        .collect()
}
