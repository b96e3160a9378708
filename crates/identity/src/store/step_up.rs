//! The step-up tables (SPEC R10): challenges, proofs and the wrong-code lock.

use roster_platform::stored_text::StoredText;
use sqlx::Row;

use super::Conn;
use crate::domain::model::StepUpPurpose;
use crate::domain::values::{AccountId, ChallengeId, UserId};

/// A challenge as stored, for verifying a code against it.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: ChallengeId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub purpose: String,
    pub code_hash: String,
}

pub struct NewChallenge<'a> {
    pub id: &'a ChallengeId,
    pub user_id: &'a UserId,
    pub account_id: &'a AccountId,
    pub purpose: StepUpPurpose,
    pub code_hash: &'a str,
    pub expires_at_ms: i64,
}

pub async fn insert_challenge(tx: &mut Conn, new: &NewChallenge<'_>, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO step_up_challenges (id, user_id, account_id, purpose, code_hash, expires_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new.id.as_str())
    .bind(new.user_id.as_str())
    .bind(new.account_id.as_str())
    .bind(new.purpose.as_str())
    .bind(new.code_hash)
    .bind(new.expires_at_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The user's challenge if it is unused and unexpired.
pub async fn usable_challenge(
    tx: &mut Conn,
    id: &ChallengeId,
    user: &UserId,
    now_ms: i64,
) -> Result<Option<Challenge>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, account_id, purpose, code_hash FROM step_up_challenges \
         WHERE id = $1 AND user_id = $2 AND used_at_ms IS NULL AND expires_at_ms > $3",
    )
    .bind(id.as_str())
    .bind(user.as_str())
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        Ok(Challenge {
            id: ChallengeId::from_stored(row.try_get("id")?),
            user_id: UserId::from_stored(row.try_get("user_id")?),
            account_id: AccountId::from_stored(row.try_get("account_id")?),
            purpose: row.try_get("purpose")?,
            code_hash: row.try_get("code_hash")?,
        })
    })
    .transpose()
}

pub async fn use_challenge(tx: &mut Conn, id: &ChallengeId, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE step_up_challenges SET used_at_ms = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn insert_proof(
    tx: &mut Conn,
    proof_hash: &str,
    challenge: &Challenge,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO step_up_proofs (proof_hash, user_id, account_id, purpose, expires_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(proof_hash)
    .bind(challenge.user_id.as_str())
    .bind(challenge.account_id.as_str())
    .bind(&challenge.purpose)
    .bind(expires_at_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Spends a proof: true only for an unused, unexpired proof of this user, account and
/// purpose, which can then never be spent again.
pub async fn spend_proof(
    tx: &mut Conn,
    proof_hash: &str,
    user: &UserId,
    account: &AccountId,
    purpose: StepUpPurpose,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query(
        "UPDATE step_up_proofs SET used_at_ms = $1 WHERE proof_hash = $2 AND user_id = $3 AND account_id = $4 \
         AND purpose = $5 AND used_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(proof_hash)
    .bind(user.as_str())
    .bind(account.as_str())
    .bind(purpose.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(spent == 1)
}

/// Wrong codes in a row and the end of any lock: `(0, 0)` for a user with neither.
pub async fn lock_state(tx: &mut Conn, user: &UserId) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("SELECT wrong_codes, locked_until_ms FROM step_up_locks WHERE user_id = $1")
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        Some(row) => Ok((row.try_get("wrong_codes")?, row.try_get("locked_until_ms")?)),
        None => Ok((0, 0)),
    }
}

pub async fn set_lock_state(
    tx: &mut Conn,
    user: &UserId,
    wrong_codes: i64,
    locked_until_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO step_up_locks (user_id, wrong_codes, locked_until_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET wrong_codes = excluded.wrong_codes, \
         locked_until_ms = excluded.locked_until_ms",
    )
    .bind(user.as_str())
    .bind(wrong_codes)
    .bind(locked_until_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
