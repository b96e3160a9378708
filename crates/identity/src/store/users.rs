//! The `users` table.

use roster_platform::db::params;
use roster_platform::folded::Folded;
use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, corrupt, flag, stored_flag};
use crate::domain::model::{Role, User, UserStatus};
use crate::domain::values::{AccountId, Email, RoleId, UserId};

const COLUMNS: &str =
    "id, account_id, email, display_name, status, role, custom_role_id, external, created_at_ms, deactivated_at_ms";

/// Users with the name of their custom role, if they hold one (for display).
const SELECT: &str = "SELECT u.id, u.account_id, u.email, u.display_name, u.status, u.role, u.custom_role_id, \
     u.external, u.created_at_ms, u.deactivated_at_ms, r.name AS custom_role_name \
     FROM users u LEFT JOIN custom_roles r ON r.id = u.custom_role_id";

pub(super) fn decode_role(kind: &str, custom_role_id: Option<String>) -> Result<Role, sqlx::Error> {
    Ok(match (kind, custom_role_id) {
        ("owner", _) => Role::Owner,
        ("admin", _) => Role::Admin,
        ("member", _) => Role::Member,
        ("custom", Some(id)) => Role::Custom(RoleId::from_stored(id)),
        (other, _) => return Err(corrupt("role", other)),
    })
}

fn decode(row: &AnyRow) -> Result<User, sqlx::Error> {
    decode_columns(row, &UserColumns::PLAIN)
}

/// The names a query gives a user's columns: as they are, or with a prefix where it reads a
/// user beside other rows. Spelled out at compile time: building each name per row (eleven
/// `format!`s a row) was 7 % of a `GetUser`'s instructions.
pub(super) struct UserColumns {
    id: &'static str,
    account_id: &'static str,
    email: &'static str,
    display_name: &'static str,
    status: &'static str,
    role: &'static str,
    custom_role_id: &'static str,
    external: &'static str,
    created_at_ms: &'static str,
    deactivated_at_ms: &'static str,
    custom_role_name: &'static str,
}

macro_rules! user_columns {
    ($prefix:literal) => {
        UserColumns {
            id: concat!($prefix, "id"),
            account_id: concat!($prefix, "account_id"),
            email: concat!($prefix, "email"),
            display_name: concat!($prefix, "display_name"),
            status: concat!($prefix, "status"),
            role: concat!($prefix, "role"),
            custom_role_id: concat!($prefix, "custom_role_id"),
            external: concat!($prefix, "external"),
            created_at_ms: concat!($prefix, "created_at_ms"),
            deactivated_at_ms: concat!($prefix, "deactivated_at_ms"),
            custom_role_name: concat!($prefix, "custom_role_name"),
        }
    };
}

impl UserColumns {
    const PLAIN: Self = user_columns!("");
    /// A caller or member beside their account's row (`store::members`).
    pub(super) const MEMBER: Self = user_columns!("member_");
    /// An account's owner beside it (`store::accounts::with_owner`).
    pub(super) const OWNER: Self = user_columns!("owner_");
}

/// A user from the columns named by `names`.
pub(super) fn decode_columns(row: &AnyRow, names: &UserColumns) -> Result<User, sqlx::Error> {
    let status: String = row.try_get(names.status)?;
    let role: String = row.try_get(names.role)?;
    Ok(User {
        id: UserId::from_stored(row.try_get(names.id)?),
        account_id: AccountId::from_stored(row.try_get(names.account_id)?),
        email: Email::from_stored(row.try_get(names.email)?),
        display_name: row.try_get(names.display_name)?,
        status: UserStatus::from_str_opt(&status).ok_or_else(|| corrupt("status", &status))?,
        role: decode_role(&role, row.try_get(names.custom_role_id)?)?,
        external: flag(row.try_get(names.external)?),
        created_at_ms: row.try_get(names.created_at_ms)?,
        deactivated_at_ms: row.try_get(names.deactivated_at_ms)?,
        custom_role_name: row.try_get(names.custom_role_name)?,
    })
}

pub async fn insert(tx: &mut Conn, user: &User) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    insert_into(&mut write, user);
    write.run(tx).await?;
    Ok(())
}

/// [`insert`] as one of a change's folded writes.
pub fn insert_into(write: &mut Folded, user: &User) {
    write.write(|args| {
        format!(
            "INSERT INTO users ({COLUMNS}) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            args.bind(user.id.to_string()),
            args.bind(user.account_id.to_string()),
            args.bind(user.email.to_string()),
            args.bind(user.display_name.clone()),
            args.bind(user.status.as_str()),
            args.bind(user.role.kind_str()),
            args.bind(user.role.custom_id().map(|id| id.as_str().to_owned())),
            args.bind(stored_flag(user.external)),
            args.bind(user.created_at_ms),
            args.bind(user.deactivated_at_ms),
        )
    });
}

pub async fn get(tx: &mut Conn, id: &UserId) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} WHERE u.id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// Two users by id, in one query: (`first`, `second`); the same user twice is both.
pub async fn get_two(
    tx: &mut Conn,
    first: &UserId,
    second: &UserId,
) -> Result<(Option<User>, Option<User>), sqlx::Error> {
    let rows = sqlx::query(&format!("{SELECT} WHERE u.id IN ($1, $2)"))
        .bind(first.as_str())
        .bind(second.as_str())
        .fetch_all(&mut *tx)
        .await?;
    let users = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let find = |id: &UserId| users.iter().find(|user| user.id == *id).cloned();
    Ok((find(first), find(second)))
}

/// A user only if it belongs to `account` (SPEC R34: other accounts' users do not exist here).
pub async fn get_in_account(tx: &mut Conn, account: &AccountId, id: &UserId) -> Result<Option<User>, sqlx::Error> {
    Ok(get(tx, id).await?.filter(|user| user.account_id == *account))
}

pub async fn find_by_email_in_account(
    tx: &mut Conn,
    account: &AccountId,
    email: &Email,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} WHERE u.account_id = $1 AND u.email = $2"))
        .bind(account.as_str())
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// The users of `account` among `ids` and `emails`, in one query (a bulk batch's rows).
pub async fn named_in_account(
    tx: &mut Conn,
    account: &AccountId,
    ids: &[&str],
    emails: &[&str],
) -> Result<Vec<User>, sqlx::Error> {
    if ids.is_empty() && emails.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{SELECT} WHERE u.account_id = $1 AND (u.id IN ({}) OR u.email IN ({}))",
        params(2, ids.len()),
        params(2 + ids.len(), emails.len())
    );
    let query =
        ids.iter().chain(emails).fold(sqlx::query(&sql).bind(account.as_str()), |query, value| query.bind(*value));
    query.fetch_all(&mut *tx).await?.iter().map(decode).collect()
}

/// Every user with this e-mail, in any account, oldest first.
pub async fn find_by_email(tx: &mut Conn, email: &Email) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} WHERE u.email = $1 ORDER BY u.id"))
        .bind(email.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decode)
        .collect()
}

pub async fn owner_of(tx: &mut Conn, account: &AccountId) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} WHERE u.account_id = $1 AND u.role = 'owner'"))
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| decode(&row))
        .transpose()
}

/// Filters for [`list`]. `role_kind` "admin" includes the owner, who is shown as an admin.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<UserStatus>,
    pub role_kind: Option<&'static str>,
}

pub async fn list(
    tx: &mut Conn,
    account: &AccountId,
    filter: &ListFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    // Every parameter appears in the SQL so both backends bind them the same way; an empty
    // string means "no filter". The owner counts as an admin, as lists show it (SPEC R7).
    let sql = format!(
        "{SELECT} WHERE u.account_id = $1 AND u.id > $2 \
         AND ($3 = '' OR u.role = $3 OR ($3 = 'admin' AND u.role = 'owner')) \
         AND ($4 = '' OR u.status = $4) ORDER BY u.id LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(account.as_str())
        .bind(after.unwrap_or(""))
        .bind(filter.role_kind.unwrap_or(""))
        .bind(filter.status.map(UserStatus::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    rows.iter().map(decode).collect()
}

pub async fn set_role(tx: &mut Conn, id: &UserId, role: &Role) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET role = $2, custom_role_id = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(role.kind_str())
        .bind(role.custom_id().map(|r| r.as_str().to_owned()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn set_status(
    tx: &mut Conn,
    id: &UserId,
    status: UserStatus,
    deactivated_at_ms: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET status = $2, deactivated_at_ms = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(deactivated_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Moves a user into another account with a new role, active (SPEC R29).
pub async fn move_to_account(tx: &mut Conn, id: &UserId, account: &AccountId, role: &Role) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET account_id = $2, role = $3, custom_role_id = $4, status = 'active', deactivated_at_ms = NULL WHERE id = $1")
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(role.kind_str())
        .bind(role.custom_id().map(|r| r.as_str().to_owned()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut Conn, id: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
    Ok(())
}

/// Users of the account other than `except` (any status).
pub async fn count_others(tx: &mut Conn, account: &AccountId, except: &UserId) -> Result<u64, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND id <> $2")
        .bind(account.as_str())
        .bind(except.as_str())
        .fetch_one(&mut *tx)
        .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The account's active admins (SPEC R8: members may request ownership only when it has none).
pub async fn count_active_admins(tx: &mut Conn, account: &AccountId) -> Result<u64, sqlx::Error> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'admin' AND status = 'active'")
            .bind(account.as_str())
            .fetch_one(&mut *tx)
            .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Makes `email` the user's primary address (SPEC R12).
/// Makes `email` the user's primary address, added to the profile at `added_at_ms`.
pub async fn set_email(tx: &mut Conn, id: &UserId, email: &Email, added_at_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $2, email_added_at_ms = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(email.as_str())
        .bind(added_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// When the user's primary address was added to their profile: with the user, unless a later
/// address was made primary.
pub async fn primary_added_at(tx: &mut Conn, user: &User) -> Result<i64, sqlx::Error> {
    let added: Option<i64> = sqlx::query_scalar("SELECT email_added_at_ms FROM users WHERE id = $1")
        .bind(user.id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    Ok(added.unwrap_or(user.created_at_ms))
}
