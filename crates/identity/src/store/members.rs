//! A user read with what their role grants, beside their account's row: the user and their
//! custom role's privileges if it is one of that account's. Shared by the statements that read
//! a caller under their account's lock ([`super::account_locks`], [`super::invite_locks`]) or
//! beside the account they read ([`super::accounts::with_owner`]), and by the directory's
//! lookups for other services.

use std::collections::BTreeSet;

use roster_platform::db::params;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Conn;
use super::roles::decode_privileges;
use super::users::{UserColumns, decode_columns};
use crate::domain::model::{Privilege, User};
use crate::domain::values::{AccountId, UserId};

/// A user (`None` when no row matched) and the privileges of their custom role, if they hold
/// one of the account's.
#[derive(Debug)]
pub struct MemberRows {
    pub user: Option<User>,
    pub privileges: Option<BTreeSet<Privilege>>,
}

/// The user's columns, named `member_*`, from the joins of [`member_joins`].
pub(super) const MEMBER_COLUMNS: &str = "u.id AS member_id, u.account_id AS member_account_id, \
     u.email AS member_email, u.display_name AS member_display_name, u.status AS member_status, \
     u.role AS member_role, u.custom_role_id AS member_custom_role_id, u.external AS member_external, \
     u.created_at_ms AS member_created_at_ms, u.deactivated_at_ms AS member_deactivated_at_ms, \
     cr.name AS member_custom_role_name, cr.privileges AS member_privileges";

/// Joins the users `matching` (a condition on `u`) to the account's row `l`, each with their
/// custom role if it is one of that account's.
pub(super) fn member_joins(matching: &str) -> String {
    format!(
        "LEFT JOIN users u ON {matching} \
         LEFT JOIN custom_roles cr ON cr.id = u.custom_role_id AND cr.account_id = l.id"
    )
}

/// Reads [`MEMBER_COLUMNS`] off `row`.
pub(super) fn decode_member(row: &AnyRow) -> Result<MemberRows, sqlx::Error> {
    let user = match row.try_get::<Option<String>, _>("member_id")? {
        Some(_) => Some(decode_columns(row, &UserColumns::MEMBER)?),
        None => None,
    };
    let privileges = row.try_get::<Option<String>, _>("member_privileges")?;
    Ok(MemberRows { user, privileges: privileges.map(|text| decode_privileges(&text)).transpose()? })
}

/// An account's users among `ids` with their custom roles' privileges, and whether the
/// account is closed, in one query; `None` if there is no such account.
pub async fn of_account(
    tx: &mut Conn,
    account: &AccountId,
    ids: &[UserId],
) -> Result<Option<(bool, Vec<MemberRows>)>, sqlx::Error> {
    let matching = format!("u.account_id = l.id AND u.id IN ({})", params(2, ids.len()));
    let sql =
        format!("SELECT l.closed_at_ms, {MEMBER_COLUMNS} FROM accounts l {} WHERE l.id = $1", member_joins(&matching));
    let mut query = sqlx::query(&sql).bind(account.as_str());
    for id in ids {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(&mut *tx).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let closed = first.try_get::<Option<i64>, _>("closed_at_ms")?.is_some();
    let mut members = Vec::with_capacity(rows.len());
    for row in &rows {
        let member = decode_member(row)?;
        if member.user.is_some() {
            members.push(member);
        }
    }
    Ok(Some((closed, members)))
}
