//! A user's e-mail addresses (SPEC R12): add one, verify it with the code sent to it, make a
//! verified one primary, remove one that is not. Each user manages their own; the primary
//! address is the one sign-in checks and every e-mail use. An address belongs to one user in
//! the whole system (`EMAIL_IN_USE`, 1005). This is how a departing owner's profile is handed
//! over: the successor's address is added and verified, made primary, and the old one removed.

use serde_json::json;

use super::{Ctx, Result, audit, lock_and_load_caller, user_target};
use crate::domain::DomainError;
use crate::domain::model::User;
use crate::domain::values::{AccountId, Email};
use crate::notify::human_time;
use crate::store::user_emails::{self as store, Secondary};
use crate::store::{self as stores, Conn, outbox};

/// How long the code sent to a new address works.
const CODE_TTL_MS: i64 = 24 * 3_600_000;

/// One of a user's addresses as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub email: Email,
    pub primary: bool,
    pub verified: bool,
    pub added_at_ms: i64,
}

/// The calling user, an active user of `account`; operators and services have no addresses.
async fn me(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<User> {
    Ok(lock_and_load_caller(tx, ctx, account).await?.acting_user()?.user.clone())
}

fn secondary(address: Secondary) -> Address {
    Address {
        email: address.email,
        primary: false,
        verified: address.verified_at_ms.is_some(),
        added_at_ms: address.created_at_ms,
    }
}

/// Adds an address and e-mails a code to it.
pub async fn add(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email) -> Result<Address> {
    let user = me(tx, ctx, account).await?;
    if store::in_use(tx, email).await? {
        return Err(DomainError::EmailInUse.into());
    }
    let (code, stored) = super::secrets::new_secret(super::secrets::CODE_BYTES);
    let expires_at_ms = ctx.now_ms + CODE_TTL_MS;
    if !store::insert(tx, &user.id, email, &stored, expires_at_ms, ctx.now_ms).await? {
        return Err(DomainError::EmailInUse.into());
    }
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
    audit(tx, ctx, Some(account), super::actions::EMAIL_ADDED, user_target(&user.id), json!({"email": email.as_str()}))
        .await?;
    Ok(Address { email: email.clone(), primary: false, verified: false, added_at_ms: ctx.now_ms })
}

/// Verifies an address with the code sent to it.
pub async fn verify(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email, code: &str) -> Result<Address> {
    let user = me(tx, ctx, account).await?;
    let address = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    if address.verified_at_ms.is_none()
        && !store::verify(tx, &user.id, email, &super::secrets::digest(code), ctx.now_ms).await?
    {
        return Err(DomainError::EmailVerificationFailed.into());
    }
    audit(
        tx,
        ctx,
        Some(account),
        super::actions::EMAIL_VERIFIED,
        user_target(&user.id),
        json!({"email": email.as_str()}),
    )
    .await?;
    Ok(Address { verified: true, ..secondary(address) })
}

/// Makes a verified address primary; the former primary stays, verified, until removed. The
/// former address is told, so a takeover does not go unnoticed.
pub async fn make_primary(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email) -> Result<User> {
    let user = me(tx, ctx, account).await?;
    if user.email == *email {
        return Ok(user);
    }
    let address = store::get(tx, &user.id, email).await?.ok_or(DomainError::EmailAddressNotFound)?;
    if address.verified_at_ms.is_none() {
        return Err(DomainError::EmailNotVerified.into());
    }
    store::delete(tx, &user.id, email).await?;
    stores::users::set_email(tx, &user.id, email).await?;
    store::insert_verified(tx, &user.id, &user.email, ctx.now_ms).await?;
    let message = outbox::Email {
        account_id: Some(account.clone()),
        kind: "primary_email_changed",
        recipient: user.email.to_string(),
        subject: "Your Roster sign-in address changed".to_owned(),
        body: format!(
            "Your Roster profile now signs in and receives e-mail as {email}. This address ({}) stays on the \
             profile until it is removed.",
            user.email
        ),
    };
    outbox::enqueue(tx, &message, ctx.now_ms).await?;
    let details = json!({"from": user.email.as_str(), "to": email.as_str()});
    audit(tx, ctx, Some(account), super::actions::PRIMARY_EMAIL_CHANGED, user_target(&user.id), details).await?;
    Ok(User { email: email.clone(), ..user })
}

/// Removes an address that is not the primary one.
pub async fn remove(tx: &mut Conn, ctx: &Ctx, account: &AccountId, email: &Email) -> Result<Vec<Address>> {
    let user = me(tx, ctx, account).await?;
    if user.email == *email {
        return Err(DomainError::EmailIsPrimary.into());
    }
    if !store::delete(tx, &user.id, email).await? {
        return Err(DomainError::EmailAddressNotFound.into());
    }
    audit(
        tx,
        ctx,
        Some(account),
        super::actions::EMAIL_REMOVED,
        user_target(&user.id),
        json!({"email": email.as_str()}),
    )
    .await?;
    addresses_of(tx, &user).await
}

/// The caller's addresses, primary first.
pub async fn list(tx: &mut Conn, ctx: &Ctx, account: &AccountId) -> Result<Vec<Address>> {
    let caller = super::load_caller(tx, ctx, account).await?;
    addresses_of(tx, &caller.acting_user()?.user).await
}

async fn addresses_of(tx: &mut Conn, user: &User) -> Result<Vec<Address>> {
    let primary = Address { email: user.email.clone(), primary: true, verified: true, added_at_ms: user.created_at_ms };
    let others = store::list(tx, &user.id).await?.into_iter().map(secondary);
    Ok(std::iter::once(primary).chain(others).collect())
}
