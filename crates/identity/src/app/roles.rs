//! Role use cases: list built-in and custom roles, define custom roles (SPEC R16), assign a
//! role to a user (R2, R17).

use std::collections::{BTreeSet, HashMap};

use serde_json::json;

use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{CustomRole, Privilege, Role, RoleView, User};
use crate::domain::privileges::built_in;
use crate::domain::rules;
use crate::domain::values::{AccountId, RoleId, UserId};
use crate::effects::{Ctx, Result, audit, load_caller, lock_and_load_caller, user_target};
use crate::store::{self, Conn};

const BUILT_IN_NAMES: [&str; 3] = ["owner", "admin", "member"];

pub async fn list(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Vec<RoleView>> {
    load_caller(tx, ctx, account).await?.may_read(None)?;
    let counts: HashMap<String, u32> = store::roles::holder_counts(tx, account).await?.into_iter().collect();
    let count = |key: &str| counts.get(key).copied().unwrap_or(0);
    let mut roles: Vec<RoleView> = [Role::Owner, Role::Admin, Role::Member]
        .into_iter()
        .map(|role| RoleView {
            id: role.kind_str().to_owned(),
            name: role.kind_str().to_owned(),
            privileges: built_in(&role),
            user_count: count(role.kind_str()),
            role,
        })
        .collect();
    for custom in store::roles::list(tx, account).await? {
        roles.push(custom_view(&custom, count(custom.id.as_str())));
    }
    Ok(roles)
}

fn custom_view(role: &CustomRole, user_count: u32) -> RoleView {
    RoleView {
        id: role.id.to_string(),
        name: role.name.clone(),
        role: Role::Custom(role.id.clone()),
        privileges: role.privileges.clone(),
        user_count,
    }
}

async fn check_name_free(tx: &mut Conn, account: &AccountId, name: &str, except: Option<&RoleId>) -> Result<()> {
    if BUILT_IN_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(DomainError::RoleNameTaken.into());
    }
    let taken = store::roles::list(tx, account)
        .await?
        .iter()
        .any(|r| r.name.eq_ignore_ascii_case(name) && Some(&r.id) != except);
    if taken { Err(DomainError::RoleNameTaken.into()) } else { Ok(()) }
}

pub async fn create(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    name: String,
    privileges: BTreeSet<Privilege>,
) -> Result<RoleView> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    rules::check_grant(caller.member()?, &privileges)?;
    check_name_free(tx, account, &name, None).await?;
    let role = CustomRole { id: RoleId::generate(), account_id: account.clone(), name, privileges };
    store::roles::insert(tx, &role, ctx.now_ms).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::ROLE_CREATED,
        format!("role:{}", role.id),
        json!({"name": role.name}),
    )
    .await?;
    Ok(custom_view(&role, 0))
}

pub async fn update(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    id: &RoleId,
    name: String,
    privileges: BTreeSet<Privilege>,
) -> Result<RoleView> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    rules::check_grant(caller.member()?, &privileges)?;
    let mut role = store::roles::get(tx, account, id).await?.ok_or(DomainError::RoleNotFound)?;
    check_name_free(tx, account, &name, Some(id)).await?;
    role.name = name;
    role.privileges = privileges;
    store::roles::update(tx, &role).await?;
    let holders = store::roles::holder_counts(tx, account).await?;
    let count = holders.iter().find(|(key, _)| key == id.as_str()).map_or(0, |(_, n)| *n);
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::ROLE_UPDATED,
        format!("role:{id}"),
        json!({"name": role.name}),
    )
    .await?;
    Ok(custom_view(&role, count))
}

pub async fn delete(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &RoleId) -> Result<RoleView> {
    lock_and_load_caller(tx, ctx, account).await?.member_with(Privilege::ManageRoles)?;
    let role = store::roles::get(tx, account, id).await?.ok_or(DomainError::RoleNotFound)?;
    let holders = store::roles::holder_counts(tx, account).await?;
    if holders.iter().any(|(key, n)| key == id.as_str() && *n > 0) {
        return Err(DomainError::RoleInUse.into());
    }
    store::roles::delete(tx, account, id).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::ROLE_DELETED,
        format!("role:{id}"),
        json!({"name": role.name}),
    )
    .await?;
    Ok(custom_view(&role, 0))
}

/// SPEC R2, R16, R17: changes a user's role. Ownership never moves here.
pub async fn assign(tx: &mut Conn, ctx: &Ctx, account: &AccountId, user: &UserId, role: Role) -> Result<User> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.member()?;
    let mut target = store::users::get_in_account(tx, account, user).await?.ok_or(DomainError::UserNotFound)?;
    let custom_role_name = match &role {
        Role::Custom(role_id) => {
            let custom = store::roles::get(tx, account, role_id).await?.ok_or(DomainError::RoleNotFound)?;
            rules::check_grant(actor, &custom.privileges)?;
            Some(custom.name)
        }
        _ => None,
    };
    rules::check_role_change(actor, &target, &role)?;
    store::users::set_role(tx, &target.id, &role).await?;
    let previous = target.role.kind_str();
    target.role = role;
    target.custom_role_name = custom_role_name;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::USER_ROLE_CHANGED,
        user_target(&target.id),
        json!({"from": previous, "to": target.role.kind_str(), "custom_role": target.role.custom_id().map(RoleId::as_str)}),
    )
    .await?;
    let change = Change::RoleChanged {
        user_id: target.id.to_string(),
        role: target.role.kind_str().to_owned(),
        custom_role_id: target.role.custom_id().map(|id| id.to_string()),
    };
    crate::effects::emit(tx, ctx, account, change).await?;
    Ok(target)
}
