//! Invitations (SPEC R26, R27, R29): invite, list, resend, revoke, accept.
//!
//! Inviting adds a pending user that stands for the invitee, and queues an e-mail with a
//! one-time code; only the code's SHA-256 is stored. Accepting needs both the code (control
//! of the mailbox) and a token for a user with the invited e-mail (the invitee themselves).

use serde_json::json;

use roster_platform::db::is_unique_violation;
use roster_platform::folded::Folded;
use roster_workflow::{Engine, Started};

use super::secrets;
use crate::domain::DomainError;
use crate::domain::events::Change;
use crate::domain::model::{Invitation, InvitationStatus, Privilege, Role, User, UserStatus};
use crate::domain::rules::{self, INVITATION_TTL_MS};
use crate::domain::values::{AccountId, Email, InvitationId, UserId};
use crate::effects::Origin;
use crate::effects::invitations::lock_and_check;
use crate::effects::{
    Ctx, Error, Result, actions, audit, audit_into, caller_of, calling_user_id, emit_into, load_caller,
    lock_and_load_caller, start_operation, user_target,
};
use crate::sagas::accept;
use crate::store::{self, Conn, outbox};

#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub email: Email,
    pub display_name: String,
    pub role: Role,
    pub external: bool,
}

/// An invitation and the code that went out in its e-mail.
#[derive(Debug, Clone)]
pub struct Sent {
    pub invitation: Invitation,
    pub code: String,
}

fn invitation_email(account_name: &str, invitation: &Invitation, code: &str) -> outbox::Email {
    outbox::Email {
        account_id: Some(invitation.account_id.clone()),
        kind: "invitation",
        recipient: invitation.email.to_string(),
        subject: format!("You are invited to join {account_name} on Roster"),
        body: format!(
            "You have been invited to join the Roster account {account_name}.\n\nInvitation code: {code}\n\n\
             Accept it with UserService/AcceptInvitation while signed in as {}. The code works until {} (ms since epoch).",
            invitation.email, invitation.expires_at_ms
        ),
    }
}

async fn queue_invitation_email(tx: &mut Conn, ctx: &Ctx, invitation: &Invitation, code: &str) -> Result<()> {
    let account = store::accounts::get(tx, &invitation.account_id).await?.ok_or(DomainError::AccountNotFound)?;
    outbox::enqueue(tx, &invitation_email(&account.name, invitation, code), ctx.now_ms).await?;
    Ok(())
}

/// Invites `new` (SPEC R26, R12) in two statements after BEGIN: one takes the locks and reads
/// what the rules need (`store::invite_locks`), one makes every write. `fold` adds the
/// caller's own writes to that statement (the API's idempotency record of its answer) and
/// returns what the caller keeps of them.
pub async fn invite<T>(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    new: NewInvitation,
    fold: impl FnOnce(&Invitation, &mut Folded) -> T,
) -> Result<(Sent, T)> {
    let caller_id = calling_user_id(&ctx.principal);
    let locked = store::invite_locks::lock_and_read(tx, account, caller_id.as_ref(), &new.email, new.role.custom_id())
        .await?
        .ok_or(DomainError::AccountNotFound)?;
    let caller = caller_of(ctx, account, locked.caller, locked.caller_privileges)?;
    let actor = caller.member()?;
    rules::check_invitation(actor, &new.role)?;
    if let Role::Custom(_) = &new.role {
        rules::check_grant(actor, &locked.role_privileges.ok_or(DomainError::RoleNotFound)?)?;
    }
    let display_name = if new.display_name.is_empty() { new.email.local_part().to_owned() } else { new.display_name };
    let pending = User {
        id: UserId::generate(),
        account_id: account.clone(),
        email: new.email.clone(),
        display_name,
        status: UserStatus::Pending,
        role: new.role.clone(),
        external: new.external,
        created_at_ms: ctx.now_ms,
        deactivated_at_ms: None,
        custom_role_name: None,
    };
    let (code, hash) = secrets::new_secret(secrets::CODE_BYTES);
    let invitation = Invitation {
        id: InvitationId::generate(),
        account_id: account.clone(),
        email: new.email,
        user_id: pending.id.clone(),
        status: InvitationStatus::Pending,
        invited_by: actor.user.id.clone(),
        role: new.role,
        created_at_ms: ctx.now_ms,
        expires_at_ms: ctx.now_ms + INVITATION_TTL_MS,
        send_count: 1,
    };
    let mut write = Folded::on(tx);
    // R12: a mere claim of the address reserves nothing, and lapses with this invitation.
    store::user_emails::lapse_claims_into(&mut write, &invitation.email, None);
    store::users::insert_into(&mut write, &pending);
    store::invitations::insert_into(&mut write, &invitation, &hash);
    outbox::enqueue_into(&mut write, &invitation_email(&locked.account_name, &invitation, &code), ctx.now_ms);
    let details = json!({"invitation": invitation.id.as_str(), "email": invitation.email.as_str()});
    audit_into(&mut write, ctx, Some(account), actions::USER_INVITED, user_target(&pending.id), details);
    let change = Change::UserInvited {
        user_id: pending.id.to_string(),
        email: invitation.email.to_string(),
        role: invitation.role.kind_str().to_owned(),
    };
    emit_into(&mut write, ctx, account, change)?;
    let folded = fold(&invitation, &mut write);
    // R12: a verified address on someone's profile besides their primary one is theirs alone.
    // A user of this address in this account, even one invited a moment ago by a call that
    // shares the lock, fails the unique e-mail index.
    match store::user_emails::write_unless_verified(tx, write, &invitation.email).await {
        Ok(true) => Ok((Sent { invitation, code }, folded)),
        Ok(false) => Err(DomainError::EmailInUse.into()),
        Err(error) if is_unique_violation(&error) => Err(DomainError::EmailInUse.into()),
        Err(error) => Err(Error::Db(error)),
    }
}

pub async fn list_pending(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Invitation>> {
    load_caller(tx, ctx, account).await?.may_read(Some(Privilege::ManageUsers))?;
    Ok(store::invitations::list_pending(tx, account, after, limit).await?)
}

async fn pending_invitation(tx: &mut Conn, account: &AccountId, id: &InvitationId) -> Result<Invitation> {
    store::invitations::get(tx, account, id)
        .await?
        .filter(|i| i.status == InvitationStatus::Pending)
        .ok_or_else(|| DomainError::InvitationNotFound.into())
}

/// A fresh code and expiry; the previous link stops working.
pub async fn resend(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &InvitationId) -> Result<Sent> {
    lock_and_load_caller(tx, ctx, account).await?.member_with(Privilege::ManageUsers)?;
    let mut invitation = pending_invitation(tx, account, id).await?;
    let (code, hash) = secrets::new_secret(secrets::CODE_BYTES);
    invitation.expires_at_ms = ctx.now_ms + INVITATION_TTL_MS;
    invitation.send_count += 1;
    store::invitations::renew(tx, id, &hash, invitation.expires_at_ms).await?;
    queue_invitation_email(tx, ctx, &invitation, &code).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::INVITATION_RESENT,
        format!("invitation:{id}"),
        json!({"send_count": invitation.send_count}),
    )
    .await?;
    Ok(Sent { invitation, code })
}

/// Revokes the invitation and removes the pending user that stood for the invitee.
pub async fn revoke(tx: &mut Conn, ctx: &Ctx, account: &AccountId, id: &InvitationId) -> Result<Invitation> {
    lock_and_load_caller(tx, ctx, account).await?.member_with(Privilege::ManageUsers)?;
    let mut invitation = pending_invitation(tx, account, id).await?;
    invitation.status = InvitationStatus::Revoked;
    store::invitations::set_status(tx, id, invitation.status).await?;
    if let Some(pending) = store::users::get_in_account(tx, account, &invitation.user_id).await?
        && pending.status == UserStatus::Pending
    {
        store::settings::forget(tx, &pending.id).await?;
        store::users::delete(tx, &pending.id).await?;
        crate::effects::emit(tx, ctx, account, Change::UserDeleted { user_id: pending.id.to_string() }).await?;
    }
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::INVITATION_REVOKED,
        format!("invitation:{id}"),
        json!({"email": invitation.email.as_str()}),
    )
    .await?;
    Ok(invitation)
}

/// SPEC R27-R29: checks the code, the invitee and (for an invitee who owns an account of
/// their own) that nobody else is in that account (1009), then starts the accept saga, which
/// checks rooms, moves the invitee over and refunds their individual subscription.
pub async fn accept(tx: &mut Conn, ctx: &Ctx, engine: &Engine, code: &str) -> Result<Started> {
    let roster_platform::auth::Principal::User { user_id } = &ctx.principal else {
        return Err(DomainError::InvitationNotFound.into());
    };
    let caller_id = UserId::parse(user_id).map_err(|_| DomainError::InvitationNotFound)?;
    let found = store::invitations::find_by_code_hash(tx, &secrets::digest(code))
        .await?
        .ok_or(DomainError::InvitationNotFound)?;
    let caller = store::users::get(tx, &caller_id).await?.ok_or(DomainError::InvitationNotFound)?;
    let invitation = lock_and_check(tx, ctx, &found.account_id, &found.id, &caller).await?;
    let old_account = (caller.id != invitation.user_id).then(|| caller.account_id.to_string());
    let input = accept::AcceptInput {
        invitation_id: invitation.id.to_string(),
        account_id: invitation.account_id.to_string(),
        user_id: caller.id.to_string(),
        old_account_id: old_account,
        origin: Origin::of(ctx),
    };
    start_operation(tx, engine, ctx, accept::ACCEPT, &invitation.account_id, caller.id.as_str(), input).await
}
