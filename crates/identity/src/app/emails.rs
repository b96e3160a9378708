//! A user's e-mail addresses (SPEC R12): claim one, verify it with the code sent to it, make a
//! verified one primary, remove one that is not. Each user manages their own; the primary
//! address is the one sign-in checks and every e-mail uses, step-up codes included. This is
//! how a departing owner's profile is handed over: the successor's address is added and
//! verified, made primary, and the old one removed.
//!
//! A session token alone must not be enough to move a profile to another mailbox (R10 with
//! R12): making an address primary, and removing a verified one, each spend a step-up proof
//! whose code went to the current primary address, and the primary address is told of every
//! address added, made primary or removed. An owner who lost their mailbox goes through
//! support instead (R11).
//!
//! A claim reserves nothing (`store::user_emails`): uniqueness is decided when an address is
//! verified, which lapses the other users' claims of it; the limits on claims and codes are
//! `domain::addresses`.

use serde_json::json;

use crate::domain::DomainError;
use crate::domain::addresses::{CODE_TTL_MS, CODE_WINDOW_MS, check_new_code};
use crate::domain::events::Change;
use crate::domain::model::{StepUpPurpose, User};
use crate::domain::privileges::Actor;
use crate::domain::values::{AccountId, Email};
use crate::effects::{Ctx, Result, audit, lock_and_load_caller, user_target};
use crate::notify::human_time;
use crate::store::user_emails::{self as store, Secondary};
use crate::store::{self as stores, Conn, outbox};

/// One of a user's addresses as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub email: Email,
    pub primary: bool,
    pub verified: bool,
    pub added_at_ms: i64,
    /// A claim's expiry; `None` once verified.
    pub expires_at_ms: Option<i64>,
}

/// The calling user, an active user of `account`; operators and services have no addresses.
async fn me(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Actor> {
    Ok(lock_and_load_caller(tx, ctx, account).await?.acting_user()?.clone())
}

fn secondary(address: Secondary) -> Address {
    Address {
        email: address.email,
        primary: false,
        verified: address.verified_at_ms.is_some(),
        added_at_ms: address.created_at_ms,
        expires_at_ms: address.verified_at_ms.is_none().then_some(address.code_expires_at_ms).flatten(),
    }
}

/// Tells `to` (the primary address, before the change) what happened to the profile, when,
/// and at whose request, so a takeover never goes unnoticed.
async fn tell(tx: &mut Conn, ctx: &Ctx, account: &AccountId, to: &Email, kind: &'static str, what: &str) -> Result<()> {
    let message = outbox::Email {
        account_id: Some(account.clone()),
        kind,
        recipient: to.to_string(),
        subject: "The e-mail addresses of your Roster profile changed".to_owned(),
        body: format!(
            "{what}\n\nWhen: {}\nRequested by: {}\n\nIf this was not you, someone may be using your session: sign \
             out everywhere and contact your administrator or Roster support at once.",
            human_time(ctx.now_ms),
            ctx.principal.audit_name(),
        ),
    };
    outbox::enqueue(tx, &message, ctx.now_ms).await?;
    Ok(())
}

/// Claims an address and e-mails a code to it; a claim the caller already has gets a new code.
pub async fn add(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email) -> Result<Address> {
    let actor = me(tx, ctx, account).await?;
    let user = &actor.user;
    if user.email == *email || store::taken(tx, email, Some(&user.id)).await? {
        return Err(DomainError::EmailInUse.into());
    }
    if let Some(verified) = store::get(tx, &user.id, email).await?.filter(|a| a.verified_at_ms.is_some()) {
        return Ok(secondary(verified));
    }
    let pending = store::pending_claims(tx, &user.id, email, ctx.now_ms).await?;
    let (to_address, by_user) = store::sends_since(tx, email, &user.id, ctx.now_ms - CODE_WINDOW_MS).await?;
    check_new_code(pending, to_address, by_user, ctx.now_ms)?;
    let (code, stored) = super::secrets::new_secret(super::secrets::CODE_BYTES);
    let expires_at_ms = ctx.now_ms + CODE_TTL_MS;
    store::claim(tx, &user.id, email, &stored, expires_at_ms, ctx.now_ms).await?;
    store::record_send(tx, email, &user.id, ctx.now_ms).await?;
    let message = outbox::Email {
        account_id: Some(account.clone()),
        kind: "email_verification",
        recipient: email.to_string(),
        subject: "Confirm your e-mail address for Roster".to_owned(),
        body: format!(
            "{} asked to add this address to their Roster profile.\n\nVerification code: {code}\n\n\
             It works until {}. If this was not you, ignore this e-mail and nothing changes.",
            user.email,
            human_time(expires_at_ms),
        ),
    };
    outbox::enqueue(tx, &message, ctx.now_ms).await?;
    let what = format!("The address {email} was added to your Roster profile (not yet verified).");
    tell(tx, ctx, account, &user.email, "email_address_added", &what).await?;
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::EMAIL_ADDED,
        user_target(&user.id),
        json!({"email": email.as_str()}),
    )
    .await?;
    let added = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    Ok(secondary(added))
}

/// Verifies a claim with the code sent to it. The address then belongs to the caller, unless
/// it became someone else's meanwhile; the other claims of it lapse.
pub async fn verify(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email, code: &str) -> Result<Address> {
    let actor = me(tx, ctx, account).await?;
    let user = &actor.user;
    let address = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    if address.verified_at_ms.is_none() {
        store::lock_address(tx, email).await?;
        if store::taken(tx, email, Some(&user.id)).await? {
            return Err(DomainError::EmailInUse.into());
        }
        let verified = store::verify(tx, &user.id, email, &super::secrets::digest(code), ctx.now_ms).await;
        match verified {
            Ok(true) => {}
            Ok(false) => return Err(DomainError::EmailVerificationFailed.into()),
            // The unique index of verified addresses, should another verification of it ever
            // commit first: the address is someone else's.
            Err(error) if roster_platform::db::is_unique_violation(&error) => {
                return Err(DomainError::EmailInUse.into());
            }
            Err(error) => return Err(error.into()),
        }
        store::lapse_claims(tx, email, Some(&user.id)).await?;
    }
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::EMAIL_VERIFIED,
        user_target(&user.id),
        json!({"email": email.as_str()}),
    )
    .await?;
    Ok(Address { verified: true, expires_at_ms: None, ..secondary(address) })
}

/// Makes a verified address primary, spending a step-up proof whose code went to the current
/// primary address; the former primary stays, verified, until removed, and is told.
pub async fn make_primary(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email, proof: &str) -> Result<User> {
    let actor = me(tx, ctx, account).await?;
    let user = actor.user.clone();
    if user.email == *email {
        return Ok(user);
    }
    let address = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    if address.verified_at_ms.is_none() {
        return Err(DomainError::EmailNotVerified.into());
    }
    super::step_up::spend(tx, ctx, &actor, account, StepUpPurpose::ChangePrimaryEmail, proof).await?;
    let former_added_at_ms = stores::users::primary_added_at(tx, &user).await?;
    store::delete(tx, &user.id, email).await?;
    stores::users::set_email(tx, &user.id, email, address.created_at_ms).await?;
    store::insert_verified(tx, &user.id, &user.email, former_added_at_ms, ctx.now_ms).await?;
    let what = format!(
        "Your Roster profile now signs in and receives e-mail (verification codes included) as {email}. This \
         address ({}) stays on the profile until it is removed.",
        user.email
    );
    tell(tx, ctx, account, &user.email, "primary_email_changed", &what).await?;
    let details = json!({"from": user.email.as_str(), "to": email.as_str()});
    audit(tx, ctx, Some(account), crate::effects::actions::PRIMARY_EMAIL_CHANGED, user_target(&user.id), details)
        .await?;
    let change = Change::EmailChanged { user_id: user.id.to_string(), email: email.to_string() };
    crate::effects::emit(tx, ctx, account, change).await?;
    Ok(User { email: email.clone(), ..user })
}

/// Removes an address that is not the primary one; a verified one only with a step-up proof.
/// The primary address is told, and so is a verified address removed.
pub async fn remove(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email, proof: &str) -> Result<Vec<Address>> {
    let actor = me(tx, ctx, account).await?;
    let user = &actor.user;
    if user.email == *email {
        return Err(DomainError::EmailIsPrimary.into());
    }
    let address = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    let verified = address.verified_at_ms.is_some();
    if verified {
        super::step_up::spend(tx, ctx, &actor, account, StepUpPurpose::RemoveEmailAddress, proof).await?;
    }
    store::delete(tx, &user.id, email).await?;
    let what = format!("The address {email} was removed from your Roster profile.");
    tell(tx, ctx, account, &user.email, "email_address_removed", &what).await?;
    if verified {
        tell(tx, ctx, account, email, "email_address_removed", &what).await?;
    }
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::EMAIL_REMOVED,
        user_target(&user.id),
        json!({"email": email.as_str()}),
    )
    .await?;
    addresses_of(tx, user, ctx.now_ms).await
}

/// The caller's addresses, primary first, then verified ones and claims still pending.
pub async fn list(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Vec<Address>> {
    let caller = crate::effects::load_caller(tx, ctx, account).await?;
    addresses_of(tx, &caller.acting_user()?.user, ctx.now_ms).await
}

async fn addresses_of(tx: &mut Conn, user: &User, now_ms: i64) -> Result<Vec<Address>> {
    let primary = Address {
        email: user.email.clone(),
        primary: true,
        verified: true,
        added_at_ms: stores::users::primary_added_at(tx, user).await?,
        expires_at_ms: None,
    };
    let others = store::list(tx, &user.id, now_ms).await?.into_iter().map(secondary);
    Ok(std::iter::once(primary).chain(others).collect())
}
