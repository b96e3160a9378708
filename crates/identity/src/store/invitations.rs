//! The `invitations` table.

use roster_platform::folded::Folded;
use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::users::decode_role;
use super::{Conn, corrupt};
use crate::domain::model::{Invitation, InvitationStatus};
use crate::domain::values::{AccountId, Email, InvitationId, UserId};

const COLUMNS: &str = "id, account_id, email, user_id, status, invited_by, role, custom_role_id, send_count, created_at_ms, expires_at_ms";

fn decode(row: &AnyRow) -> Result<Invitation, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let role: String = row.try_get("role")?;
    let send_count: i64 = row.try_get("send_count")?;
    Ok(Invitation {
        id: InvitationId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        email: Email::from_stored(row.try_get("email")?),
        user_id: UserId::from_stored(row.try_get("user_id")?),
        status: InvitationStatus::from_str_opt(&status).ok_or_else(|| corrupt("invitation status", &status))?,
        invited_by: UserId::from_stored(row.try_get("invited_by")?),
        role: decode_role(&role, row.try_get("custom_role_id")?)?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        send_count: u32::try_from(send_count).unwrap_or(u32::MAX),
    })
}

pub async fn insert(tx: &mut Conn, invitation: &Invitation, code_hash: &str) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    insert_into(&mut write, invitation, code_hash);
    write.run(tx).await?;
    Ok(())
}

/// [`insert`] as one of a change's folded writes.
pub fn insert_into(write: &mut Folded, invitation: &Invitation, code_hash: &str) {
    write.write(|args| {
        format!(
            "INSERT INTO invitations ({COLUMNS}, code_hash) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            args.bind(invitation.id.to_string()),
            args.bind(invitation.account_id.to_string()),
            args.bind(invitation.email.to_string()),
            args.bind(invitation.user_id.to_string()),
            args.bind(invitation.status.as_str()),
            args.bind(invitation.invited_by.to_string()),
            args.bind(invitation.role.kind_str()),
            args.bind(invitation.role.custom_id().map(|r| r.as_str().to_owned())),
            args.bind(i64::from(invitation.send_count)),
            args.bind(invitation.created_at_ms),
            args.bind(invitation.expires_at_ms),
            args.bind(code_hash.to_owned()),
        )
    });
}

pub async fn get(tx: &mut Conn, account: &AccountId, id: &InvitationId) -> Result<Option<Invitation>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM invitations WHERE account_id = $1 AND id = $2"))
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub async fn find_by_code_hash(tx: &mut Conn, code_hash: &str) -> Result<Option<Invitation>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM invitations WHERE code_hash = $1"))
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// The account's invitations that are still pending, oldest first.
pub async fn list_pending(
    tx: &mut Conn,
    account: &AccountId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invitations WHERE account_id = $1 AND status = 'pending' AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(account.as_str())
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub async fn set_status(tx: &mut Conn, id: &InvitationId, status: InvitationStatus) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invitations SET status = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A resend: a new code (the old link stops working), a fresh expiry, one more send.
pub async fn renew(tx: &mut Conn, id: &InvitationId, code_hash: &str, expires_at_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invitations SET code_hash = $2, expires_at_ms = $3, send_count = send_count + 1 WHERE id = $1")
        .bind(id.as_str())
        .bind(code_hash)
        .bind(expires_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
