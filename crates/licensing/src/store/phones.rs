//! Phone numbers of an account and the user each is attached to.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Conn;
use crate::domain::model::{Id, PhoneLine, PhoneNumber};

fn decode(row: &AnyRow) -> Result<PhoneLine, sqlx::Error> {
    Ok(PhoneLine {
        account_id: Id::from_stored(row.try_get("account_id")?),
        number: PhoneNumber::from_stored(row.try_get("number")?),
        user_id: row.try_get::<Option<String>, _>("user_id")?.map(Id::from_stored),
    })
}

/// Adds a number to the account's pool; false when the number exists (in any account).
pub async fn add(tx: &mut Conn, account: &Id, number: &PhoneNumber, now_ms: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO phone_numbers (number, account_id, user_id, added_at_ms) VALUES ($1, $2, NULL, $3) \
         ON CONFLICT (number) DO NOTHING",
    )
    .bind(number.as_str())
    .bind(account.as_str())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A number of this account (numbers of other accounts read as missing).
pub async fn get(tx: &mut Conn, account: &Id, number: &PhoneNumber) -> Result<Option<PhoneLine>, sqlx::Error> {
    sqlx::query("SELECT number, account_id, user_id FROM phone_numbers WHERE account_id = $1 AND number = $2")
        .bind(account.as_str())
        .bind(number.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// Attaches (`Some`) or detaches (`None`) a number of this account.
pub async fn set_user(tx: &mut Conn, account: &Id, number: &PhoneNumber, user: Option<&Id>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE phone_numbers SET user_id = $3 WHERE account_id = $1 AND number = $2")
        .bind(account.as_str())
        .bind(number.as_str())
        .bind(user.map(|u| u.as_str().to_owned()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn of_user(tx: &mut Conn, account: &Id, user: &Id) -> Result<Vec<PhoneNumber>, sqlx::Error> {
    let numbers: Vec<String> =
        sqlx::query_scalar("SELECT number FROM phone_numbers WHERE account_id = $1 AND user_id = $2 ORDER BY number")
            .bind(account.as_str())
            .bind(user.as_str())
            .fetch_all(&mut *tx)
            .await?;
    Ok(numbers.into_iter().map(PhoneNumber::from_stored).collect())
}

pub async fn list(tx: &mut Conn, account: &Id) -> Result<Vec<PhoneLine>, sqlx::Error> {
    sqlx::query("SELECT number, account_id, user_id FROM phone_numbers WHERE account_id = $1 ORDER BY number")
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decode)
        .collect()
}
