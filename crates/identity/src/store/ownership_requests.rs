//! The `ownership_requests` table (SPEC R8-R10).

use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, corrupt};
use crate::domain::model::{OwnershipRequest, OwnershipRequestState};
use crate::domain::values::{AccountId, OwnershipRequestId, UserId};

const COLUMNS: &str = "id, account_id, requester_user_id, owner_user_id, state, outcome_note, operation_id, \
     reminders_sent, last_reminded_at_ms, created_at_ms, deadline_ms, decided_at_ms";

fn decode(row: &AnyRow) -> Result<OwnershipRequest, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let reminders: i64 = row.try_get("reminders_sent")?;
    Ok(OwnershipRequest {
        id: OwnershipRequestId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        requester_user_id: UserId::from_stored(row.try_get("requester_user_id")?),
        owner_user_id: UserId::from_stored(row.try_get("owner_user_id")?),
        state: OwnershipRequestState::from_str_opt(&state).ok_or_else(|| corrupt("ownership request state", &state))?,
        outcome_note: row.try_get("outcome_note")?,
        operation_id: row.try_get("operation_id")?,
        reminders_sent: u32::try_from(reminders).unwrap_or(u32::MAX),
        last_reminded_at_ms: row.try_get("last_reminded_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        deadline_ms: row.try_get("deadline_ms")?,
        decided_at_ms: row.try_get("decided_at_ms")?,
    })
}

pub async fn insert(tx: &mut Conn, request: &OwnershipRequest) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO ownership_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(request.id.as_str())
    .bind(request.account_id.as_str())
    .bind(request.requester_user_id.as_str())
    .bind(request.owner_user_id.as_str())
    .bind(request.state.as_str())
    .bind(&request.outcome_note)
    .bind(&request.operation_id)
    .bind(i64::from(request.reminders_sent))
    .bind(request.last_reminded_at_ms)
    .bind(request.created_at_ms)
    .bind(request.deadline_ms)
    .bind(request.decided_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn get(
    tx: &mut Conn,
    account: &AccountId,
    id: &OwnershipRequestId,
) -> Result<Option<OwnershipRequest>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM ownership_requests WHERE account_id = $1 AND id = $2"))
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// The account's open request, if there is one.
pub async fn open_in(tx: &mut Conn, account: &AccountId) -> Result<Option<OwnershipRequest>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM ownership_requests WHERE account_id = $1 AND state = 'open'"))
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// Newest first; `requester` narrows the list to one requester's own requests.
pub async fn list(
    tx: &mut Conn,
    account: &AccountId,
    requester: Option<&UserId>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<OwnershipRequest>, sqlx::Error> {
    // "~" sorts after every id; an empty requester matches every request.
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ownership_requests WHERE account_id = $1 AND ($2 = '' OR requester_user_id = $2) \
         AND id < $3 ORDER BY id DESC LIMIT $4"
    ))
    .bind(account.as_str())
    .bind(requester.map_or("", UserId::as_str))
    .bind(before.unwrap_or("~"))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// Moves an open request to its final state. False if it was no longer open: whatever closed
/// it first (approval, denial, the deadline, a cancel) is the one outcome.
pub async fn close(
    tx: &mut Conn,
    id: &OwnershipRequestId,
    state: OwnershipRequestState,
    note: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE ownership_requests SET state = $1, outcome_note = $2, decided_at_ms = $3 \
         WHERE id = $4 AND state = 'open'",
    )
    .bind(state.as_str())
    .bind(note)
    .bind(now_ms)
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Counts a reminder sent at `now_ms`.
pub async fn reminded(tx: &mut Conn, id: &OwnershipRequestId, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ownership_requests SET reminders_sent = reminders_sent + 1, last_reminded_at_ms = $1 \
         WHERE id = $2 AND state = 'open'",
    )
    .bind(now_ms)
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
