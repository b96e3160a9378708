//! The `audit_events` table (SPEC R33): append-only.

use super::Conn;

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
    sqlx::query(
        "INSERT INTO audit_events (id, account_id, principal, action, target, outcome, request_id, details, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(event.account_id)
    .bind(event.principal)
    .bind(event.action)
    .bind(event.target)
    .bind(event.outcome)
    .bind(event.request_id)
    .bind(event.details_json)
    .bind(event.at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
