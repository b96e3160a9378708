//! Account use cases: creation by operators, reading (SPEC R7), settings, ownership transfer
//! (R1-R3, R5, R6), the caller's access, integrations and the audit trail.

use roster_platform::stored_text::StoredText;
use serde_json::json;

use roster_workflow::{Engine, Started};

use crate::domain::DomainError;
use crate::domain::model::{
    Account, AccountSettings, AccountView, AuditEvent, Integration, Plan, Privilege, Role, User, UserStatus,
};
use crate::domain::privileges::{Actor, Need};
use crate::domain::rules;
use crate::domain::rules::PhoneHoldings;
use crate::domain::values::{AccountId, Domain, Email, IntegrationId, UserId};
use crate::effects::Origin;
use crate::effects::{
    Ctx, Result, audit, caller_of, calling_user_id, load_caller, lock_and_load_caller, owner, start_operation,
    user_target,
};
use crate::sagas::ownership;
use crate::store::{self, Conn, outbox};

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub plan: Plan,
    pub csm_eligible: bool,
    pub owner_email: Email,
    pub owner_display_name: String,
    pub managed_domains: Vec<Domain>,
}

/// Creates an account with its owner, active. Operators only.
pub async fn create(tx: &mut Conn, ctx: &Ctx, new: NewAccount) -> Result<AccountView> {
    if !matches!(ctx.principal, roster_platform::auth::Principal::Operator { .. }) {
        return Err(DomainError::OperatorOnly.into());
    }
    store::user_emails::lock_address(tx, &new.owner_email).await?;
    let existing = store::users::find_by_email(tx, &new.owner_email).await?;
    if existing.iter().any(|u| u.status != UserStatus::Pending)
        || store::user_emails::is_verified_address(tx, &new.owner_email).await?
    {
        return Err(DomainError::EmailInUse.into());
    }
    // R12: claims of the address reserve nothing; they lapse now it has an owner.
    store::user_emails::lapse_claims(tx, &new.owner_email, None).await?;
    let account = Account {
        id: AccountId::generate(),
        name: new.name,
        plan: new.plan,
        csm_eligible: new.csm_eligible,
        managed_domains: new.managed_domains,
        settings: AccountSettings::default(),
        created_at_ms: ctx.now_ms,
    };
    store::accounts::insert(tx, &account).await?;
    let display_name = if new.owner_display_name.is_empty() {
        new.owner_email.local_part().to_owned()
    } else {
        new.owner_display_name
    };
    let owner = User {
        id: UserId::generate(),
        account_id: account.id.clone(),
        email: new.owner_email,
        display_name,
        status: UserStatus::Active,
        role: Role::Owner,
        external: false,
        created_at_ms: ctx.now_ms,
        deactivated_at_ms: None,
        custom_role_name: None,
    };
    store::users::insert(tx, &owner).await?;
    audit(
        tx,
        ctx,
        Some(&account.id),
        crate::effects::actions::ACCOUNT_CREATED,
        format!("account:{}", account.id),
        json!({"owner": owner.id.as_str(), "plan": account.plan.as_str()}),
    )
    .await?;
    // The new account's owner is its first active user.
    let change = crate::domain::events::Change::UserActivated { user_id: owner.id.to_string() };
    crate::effects::emit(tx, ctx, &account.id, change).await?;
    Ok(AccountView { account, owner: Some(owner) })
}

async fn view(tx: &mut Conn, id: &AccountId) -> Result<AccountView> {
    let read = store::accounts::with_owner(tx, id, None).await?.ok_or(DomainError::AccountNotFound)?;
    Ok(AccountView { account: read.account, owner: read.owner })
}

/// Any member sees the account and its owner (SPEC R7); operators too. The caller is read with
/// the account, in one query; an unknown or closed account is not found whoever asks.
pub async fn get(tx: &mut Conn, ctx: &Ctx, id: &AccountId) -> Result<AccountView> {
    let caller_id = calling_user_id(&ctx.principal);
    let read = store::accounts::with_owner(tx, id, caller_id.as_ref()).await?.ok_or(DomainError::AccountNotFound)?;
    caller_of(ctx, id, read.caller.user, read.caller.privileges)?.may_read(None)?;
    Ok(AccountView { account: read.account, owner: read.owner })
}

#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    pub managed_domains: Option<Vec<Domain>>,
    pub settings: Option<AccountSettings>,
}

pub async fn update(tx: &mut Conn, ctx: &Ctx, id: &AccountId, changes: AccountChanges) -> Result<AccountView> {
    lock_and_load_caller(tx, ctx, id).await?.member_with(Privilege::ManageUsers)?;
    let mut current = view(tx, id).await?;
    if let Some(domains) = changes.managed_domains {
        current.account.managed_domains = domains;
    }
    if let Some(settings) = changes.settings {
        // R20: a changed auto-delete period deletes nobody sooner than a week from now.
        if settings.auto_delete_deactivated_after_days != current.account.settings.auto_delete_deactivated_after_days {
            store::auto_delete::setting_changed(tx, id, ctx.now_ms).await?;
        }
        current.account.settings = settings;
    }
    store::accounts::update_profile(tx, &current.account).await?;
    let details = json!({
        "managed_domains": current.account.managed_domains.iter().map(Domain::as_str).collect::<Vec<_>>(),
        "auto_delete_days": current.account.settings.auto_delete_deactivated_after_days,
    });
    audit(tx, ctx, Some(id), crate::effects::actions::ACCOUNT_UPDATED, format!("account:{id}"), details).await?;
    Ok(current)
}

/// The checks of SPEC R1-R2 alone, for the API to know whose phone holdings to ask licensing
/// about before it opens the request's transaction. Returns the current owner.
pub async fn ownership_precheck(tx: &mut Conn, ctx: &Ctx, id: &AccountId, new_owner: &UserId) -> Result<UserId> {
    let caller = load_caller(tx, ctx, id).await?;
    let actor = owner(&caller)?;
    let target = store::users::get_in_account(tx, id, new_owner).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_ownership_transfer(actor, &target)?;
    Ok(actor.user.id.clone())
}

/// SPEC R1-R4: the owner hands ownership to an active admin. When the owner's phone licenses
/// or numbers would move (the new owner holds no phone license), the caller must have
/// confirmed it; they then move in the same saga, before ownership, and move back if the
/// transfer is refused at its last check.
pub async fn transfer_ownership(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    id: &AccountId,
    new_owner: &UserId,
    phone: &PhoneHoldings,
    confirmed: bool,
) -> Result<Started> {
    let caller = lock_and_load_caller(tx, ctx, id).await?;
    let actor = owner(&caller)?;
    let target = store::users::get_in_account(tx, id, new_owner).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_ownership_transfer(actor, &target)?;
    let would_move = phone.would_move();
    if !would_move.is_empty() && !confirmed {
        return Err(DomainError::PhoneTransferUnconfirmed { would_move }.into());
    }
    let input = ownership::OwnershipInput {
        account_id: id.to_string(),
        previous_owner_user_id: actor.user.id.to_string(),
        new_owner_user_id: target.id.to_string(),
        move_phone: !would_move.is_empty(),
        origin: Origin::of(ctx),
    };
    start_operation(tx, engine, ctx, ownership::TRANSFER_OWNERSHIP, id, id.as_str(), input).await
}

/// What support checked before reassigning ownership (SPEC R11).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupportVerification {
    pub ticket_reference: String,
    pub identity_check: String,
    pub relationship_check: String,
    pub billing_check: String,
}

/// SPEC R11: platform support makes an active user of the account its owner, with the
/// verification it performed kept in the audit trail. The previous owner becomes an admin.
pub async fn reassign_ownership(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    new_owner: &UserId,
    verification: &SupportVerification,
) -> Result<AccountView> {
    lock_and_load_caller(tx, ctx, id).await?.satisfies(Need::Operator)?;
    let target = store::users::get_in_account(tx, id, new_owner).await?.ok_or(DomainError::UserNotFound)?;
    rules::check_support_reassignment(&target)?;
    let previous = store::users::owner_of(tx, id).await?.ok_or(DomainError::AccountNotFound)?;
    let cause = crate::domain::events::OwnershipCause::Support;
    crate::effects::accounts::hand_over(tx, ctx, id, &previous, &target, None, cause).await?;
    let details = json!({"previous_owner": previous.id.as_str(), "new_owner": target.id.as_str(),
                         "verification": verification});
    audit(tx, ctx, Some(id), crate::effects::actions::OWNERSHIP_REASSIGNED, user_target(&target.id), details).await?;
    view(tx, id).await
}

/// E-mails of the account a mail server refused for good (SPEC R35); operators only.
pub async fn undeliverable_emails(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<outbox::Undeliverable>> {
    load_caller(tx, ctx, id).await?.satisfies(Need::Operator)?;
    Ok(outbox::undeliverable(tx, id, before, limit).await?)
}

/// The caller's own role and privileges, from current data.
pub async fn my_access(tx: &mut Conn, ctx: &Ctx, id: &AccountId) -> Result<Actor> {
    Ok(load_caller(tx, ctx, id).await?.acting_user()?.clone())
}

/// Any active member may authorise an integration for themselves.
pub async fn authorize_integration(tx: &mut Conn, ctx: &Ctx, id: &AccountId, name: String) -> Result<Integration> {
    let caller = lock_and_load_caller(tx, ctx, id).await?;
    let actor = caller.member()?;
    let integration = Integration {
        id: IntegrationId::generate(),
        account_id: id.clone(),
        name,
        authorized_by: actor.user.id.clone(),
        needs_reauthorization: false,
        created_at_ms: ctx.now_ms,
    };
    store::integrations::insert(tx, &integration).await?;
    audit(
        tx,
        ctx,
        Some(id),
        crate::effects::actions::INTEGRATION_AUTHORIZED,
        format!("integration:{}", integration.id),
        json!({"name": integration.name}),
    )
    .await?;
    Ok(integration)
}

pub async fn list_integrations(tx: &mut Conn, ctx: &Ctx, id: &AccountId) -> Result<Vec<Integration>> {
    load_caller(tx, ctx, id).await?.may_read(None)?;
    Ok(store::integrations::list(tx, id).await?)
}

/// Newest first; the owner, holders of the view-audit privilege, and operators (SPEC R33).
pub async fn list_audit(
    tx: &mut Conn,
    ctx: &Ctx,
    id: &AccountId,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    load_caller(tx, ctx, id).await?.may_read(Some(Privilege::ViewAudit))?;
    Ok(store::audit::list(tx, id, before, limit).await?)
}
