//! SPEC R18, R21, R22: reading and replacing a user's settings. The user themselves and user
//! managers of the account may do both; support may read them.

use serde_json::json;

use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::Privilege;
use crate::domain::privileges::{Actor, Caller};
use crate::domain::settings::{StoredSettings, UserSettings};
use crate::domain::values::{AccountId, UserId};
use crate::effects::{Ctx, Result, audit, emit, load_caller, lock_and_load_caller, user_target};
use crate::store::{self, Conn};

/// The settings of `user`, a user of `account`; never set reads as empty, version 0.
pub async fn get(conn: &mut Conn, ctx: &Ctx, account: &AccountId, user: &UserId) -> Result<StoredSettings> {
    match load_caller(conn, ctx, account).await? {
        Caller::Member(actor) => may_handle(&actor, user)?,
        caller => caller.may_read(None)?,
    }
    store::users::get_in_account(conn, account, user).await?.ok_or(DomainError::UserNotFound)?;
    Ok(store::settings::get(conn, user).await?.unwrap_or_default())
}

/// Replaces the settings of `user`; with `expected_version`, only if they are still at it.
pub async fn update(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    user: &UserId,
    settings: UserSettings,
    expected_version: Option<i64>,
) -> Result<StoredSettings> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    may_handle(caller.member()?, user)?;
    store::users::get_in_account(tx, account, user).await?.ok_or(DomainError::UserNotFound)?;
    let current = store::settings::get(tx, user).await?.map_or(0, |stored| stored.version);
    if let Some(expected) = expected_version
        && expected != current
    {
        return Err(DomainError::SettingsVersionMismatch { current }.into());
    }
    let version = current + 1;
    store::settings::put(tx, user, &settings, version, ctx.now_ms).await?;
    let details = json!({"version": version, "keys": settings.entries.len()});
    audit(tx, ctx, Some(account), crate::effects::actions::USER_SETTINGS_CHANGED, user_target(user), details).await?;
    emit(tx, ctx, account, Change::SettingsChanged { user_id: user.to_string() }).await?;
    Ok(StoredSettings { settings, version, updated_at_ms: ctx.now_ms })
}

/// The user themselves, or a user manager.
fn may_handle(actor: &Actor, user: &UserId) -> std::result::Result<(), DomainError> {
    if actor.user.id == *user { Ok(()) } else { actor.require(Privilege::ManageUsers) }
}
