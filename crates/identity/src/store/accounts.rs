//! The `accounts` table.

use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::members::{MEMBER_COLUMNS, MemberRows, decode_member, member_joins};
use super::{Conn, corrupt, flag, stored_flag};
use crate::domain::model::{Account, AccountSettings, Plan, User};
use crate::domain::values::{AccountId, Domain, UserId};

const COLUMNS: &str =
    "id, name, plan, csm_eligible, managed_domains, auto_delete_days, notify_before_auto_delete, created_at_ms";

fn decode(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let plan: String = row.try_get("plan")?;
    let domains: String = row.try_get("managed_domains")?;
    let auto_delete_days: i64 = row.try_get("auto_delete_days")?;
    Ok(Account {
        id: AccountId::from_stored(row.try_get("id")?),
        name: row.try_get("name")?,
        plan: Plan::from_str_opt(&plan).ok_or_else(|| corrupt("plan", &plan))?,
        csm_eligible: flag(row.try_get("csm_eligible")?),
        managed_domains: domains
            .split_whitespace()
            .map(|d| Domain::parse(d).map_err(|_| corrupt("managed domain", d)))
            .collect::<Result<_, _>>()?,
        settings: AccountSettings {
            auto_delete_deactivated_after_days: u32::try_from(auto_delete_days)
                .map_err(|_| corrupt("auto_delete_days", &auto_delete_days.to_string()))?,
            notify_admins_before_auto_delete: flag(row.try_get("notify_before_auto_delete")?),
        },
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn domains_text(domains: &[Domain]) -> String {
    domains.iter().map(Domain::as_str).collect::<Vec<_>>().join(" ")
}

pub async fn insert(tx: &mut Conn, account: &Account) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (id, name, plan, csm_eligible, managed_domains, auto_delete_days, notify_before_auto_delete, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(account.id.as_str())
    .bind(&account.name)
    .bind(account.plan.as_str())
    .bind(stored_flag(account.csm_eligible))
    .bind(domains_text(&account.managed_domains))
    .bind(i64::from(account.settings.auto_delete_deactivated_after_days))
    .bind(stored_flag(account.settings.notify_admins_before_auto_delete))
    .bind(account.created_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the account's write lock for the rest of the transaction; false if there is no such
/// open account. Every other write transaction on an account starts here (see the module
/// docs).
pub async fn lock(tx: &mut Conn, id: &AccountId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE accounts SET version = version + 1 WHERE id = $1 AND closed_at_ms IS NULL")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An open account.
pub async fn get(tx: &mut Conn, id: &AccountId) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1 AND closed_at_ms IS NULL"))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// An open account with its owner and, when `caller` names one, the calling user and their
/// custom role's privileges: all a read of the account needs, in one query.
#[derive(Debug)]
pub struct AccountRows {
    pub account: Account,
    pub owner: Option<User>,
    pub caller: MemberRows,
}

/// [`AccountRows`] for `id`, `None` if it is not an open account.
pub async fn with_owner(
    tx: &mut Conn,
    id: &AccountId,
    caller: Option<&UserId>,
) -> Result<Option<AccountRows>, sqlx::Error> {
    let sql = format!(
        "SELECT l.id, l.name, l.plan, l.csm_eligible, l.managed_domains, l.auto_delete_days, \
         l.notify_before_auto_delete, l.created_at_ms, o.id AS owner_id, o.account_id AS owner_account_id, \
         o.email AS owner_email, o.display_name AS owner_display_name, o.status AS owner_status, \
         o.role AS owner_role, o.custom_role_id AS owner_custom_role_id, o.external AS owner_external, \
         o.created_at_ms AS owner_created_at_ms, o.deactivated_at_ms AS owner_deactivated_at_ms, \
         NULL AS owner_custom_role_name, {MEMBER_COLUMNS} \
         FROM accounts l LEFT JOIN users o ON o.account_id = l.id AND o.role = 'owner' {} \
         WHERE l.id = $1 AND l.closed_at_ms IS NULL",
        member_joins("u.id = $2")
    );
    let row =
        sqlx::query(&sql).bind(id.as_str()).bind(caller.map_or("", UserId::as_str)).fetch_optional(&mut *tx).await?;
    let Some(row) = row else { return Ok(None) };
    let owner_id: Option<String> = row.try_get("owner_id")?;
    let owner = owner_id.map(|_| super::users::decode_columns(&row, &super::users::UserColumns::OWNER)).transpose()?;
    Ok(Some(AccountRows { account: decode(&row)?, owner, caller: decode_member(&row)? }))
}

pub async fn update_profile(tx: &mut Conn, account: &Account) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET managed_domains = $2, auto_delete_days = $3, notify_before_auto_delete = $4 WHERE id = $1",
    )
    .bind(account.id.as_str())
    .bind(domains_text(&account.managed_domains))
    .bind(i64::from(account.settings.auto_delete_deactivated_after_days))
    .bind(stored_flag(account.settings.notify_admins_before_auto_delete))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Whether an account exists at all: `Some(true)` when it is closed, `None` when unknown.
pub async fn is_closed(tx: &mut Conn, id: &AccountId) -> Result<Option<bool>, sqlx::Error> {
    let closed_at: Option<Option<i64>> = sqlx::query_scalar("SELECT closed_at_ms FROM accounts WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(closed_at.map(|at| at.is_some()))
}

/// Closes an account that its last user left (SPEC R27: an invitee joins another account).
pub async fn close(tx: &mut Conn, id: &AccountId, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET closed_at_ms = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
