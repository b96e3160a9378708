//! Seats, assignments, phone numbers (SPEC R4, R30, R31) and the reclaim, restore and
//! phone-move steps identity's sagas call (R18, R19, R21, R32).

use roster_platform::stored_text::StoredText;
use serde_json::json;

use super::{Ctx, Result, audit, emit};
use crate::domain::DomainError;
use crate::domain::access::{Caller, Member, Privilege};
use crate::domain::events::Change;
use crate::domain::model::{Assignment, Id, LicenseSet, LicenseType, PhoneLine, PhoneNumber, SeatPool};
use crate::domain::seats;
use crate::store::{self, Conn, lock_account};

pub async fn set_seats(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    license_type: LicenseType,
    capacity: u32,
) -> Result<SeatPool> {
    caller.owner_or_operator()?;
    lock_account(tx, account).await?;
    let pool = store::seats::pool(tx, account, license_type).await?;
    seats::check_capacity(license_type, capacity, pool.assigned)?;
    store::seats::set_capacity(tx, account, license_type, capacity, ctx.now_ms).await?;
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::SEATS_SET,
        &format!("seats:{}", license_type.as_str()),
        json!({ "from": pool.capacity, "to": capacity }),
    )
    .await?;
    Ok(SeatPool { capacity, ..pool })
}

pub async fn list_seats(tx: &mut Conn, caller: &Caller, account: &Id) -> Result<Vec<SeatPool>> {
    caller.any_reader()?;
    Ok(store::seats::pools(tx, account).await?)
}

/// Gives `assignee` a seat: they must be active (R31) and not under a reclaim hold, and a
/// purchased seat must be free (R30); the account lock makes the count exact.
pub async fn assign(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    assignee: &Member,
    license_type: LicenseType,
) -> Result<Assignment> {
    caller.member_with(Privilege::ManageLicenses)?;
    let account = &assignee.account_id;
    lock_account(tx, account).await?;
    let seat = store::seats::seat_for(tx, account, &assignee.user_id, license_type).await?;
    may_hold(assignee, seat.user_held)?;
    let assignment = give_from(tx, ctx, &seat, account, &assignee.user_id).await?;
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::LICENSE_ASSIGNED,
        &user_target(&assignee.user_id),
        json!({ "license": license_type.as_str() }),
    )
    .await?;
    let change =
        Change::LicenseAssigned { user_id: assignee.user_id.to_string(), license_type: license_type.as_str().into() };
    emit(tx, ctx, account, change).await?;
    Ok(assignment)
}

async fn ensure_may_hold(tx: &mut Conn, member: &Member) -> Result<()> {
    let held = store::seats::is_held(tx, &member.account_id, &member.user_id).await?;
    may_hold(member, held)
}

/// Only an active user whose licenses no reclaim holds may be given one; `held` is read under
/// the account lock.
fn may_hold(member: &Member, held: bool) -> Result<()> {
    if !member.is_active() || held {
        return Err(DomainError::UserNotActive.into());
    }
    Ok(())
}

/// Takes a free seat for the user, under the account lock.
async fn give(tx: &mut Conn, ctx: &Ctx, account: &Id, user: &Id, license_type: LicenseType) -> Result<Assignment> {
    let seat = store::seats::seat_for(tx, account, user, license_type).await?;
    give_from(tx, ctx, &seat, account, user).await
}

/// [`give`], deciding on what `seat` read under the account lock.
async fn give_from(
    tx: &mut Conn,
    ctx: &Ctx,
    seat: &store::seats::SeatFor,
    account: &Id,
    user: &Id,
) -> Result<Assignment> {
    let license_type = seat.pool.license_type;
    if seat.user_has_it {
        return Err(DomainError::AlreadyAssigned.into());
    }
    seats::check_assign(license_type, seat.pool.capacity, seat.pool.assigned)?;
    let assignment =
        Assignment { account_id: account.clone(), user_id: user.clone(), license_type, assigned_at_ms: ctx.now_ms };
    store::seats::assign(tx, &assignment).await?;
    Ok(assignment)
}

/// Takes a seat back; a phone license takes its numbers with it (they stay in the pool).
pub async fn unassign(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    user: &Id,
    license_type: LicenseType,
) -> Result<(Assignment, Vec<PhoneNumber>)> {
    caller.member_with(Privilege::ManageLicenses)?;
    lock_account(tx, account).await?;
    let assignment = store::seats::unassign(tx, account, user, license_type).await?.ok_or(DomainError::NotAssigned)?;
    let detached = if license_type == LicenseType::Phone { detach_all(tx, account, user).await? } else { Vec::new() };
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::LICENSE_UNASSIGNED,
        &user_target(user),
        json!({ "license": license_type.as_str(), "detached_numbers": numbers_json(&detached) }),
    )
    .await?;
    let taken = LicenseSet::new(vec![license_type], detached.clone());
    emit(tx, ctx, account, Change::LicensesReclaimed { user_id: user.to_string(), licenses: (&taken).into() }).await?;
    Ok((assignment, detached))
}

async fn detach_all(tx: &mut Conn, account: &Id, user: &Id) -> Result<Vec<PhoneNumber>> {
    let numbers = store::phones::of_user(tx, account, user).await?;
    for number in &numbers {
        store::phones::set_user(tx, account, number, None).await?;
    }
    Ok(numbers)
}

/// Assignments, optionally of one user or type. Listing someone else's needs manage-licenses.
pub async fn list_assignments(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
    user: Option<&Id>,
    license_type: Option<LicenseType>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Assignment>> {
    match user {
        Some(user) => caller.reader_of(user, Privilege::ManageLicenses)?,
        None => caller.reader_with(Privilege::ManageLicenses)?,
    }
    Ok(store::seats::list(tx, account, user, license_type, after, limit).await?)
}

pub async fn add_phone_number(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    number: PhoneNumber,
) -> Result<PhoneLine> {
    caller.member_with(Privilege::ManageLicenses)?;
    lock_account(tx, account).await?;
    if !store::phones::add(tx, account, &number, ctx.now_ms).await? {
        return Err(DomainError::PhoneNumberTaken.into());
    }
    audit(tx, ctx, account, crate::app::actions::PHONE_NUMBER_ADDED, &format!("phone:{}", number.as_str()), json!({}))
        .await?;
    Ok(PhoneLine { account_id: account.clone(), number, user_id: None })
}

/// Attaches a pool number to a user holding a phone license (SPEC R31).
pub async fn attach_phone_number(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    holder: &Member,
    number: PhoneNumber,
) -> Result<PhoneLine> {
    caller.member_with(Privilege::ManageLicenses)?;
    let account = &holder.account_id;
    lock_account(tx, account).await?;
    ensure_may_hold(tx, holder).await?;
    let line = store::phones::get(tx, account, &number).await?.ok_or(DomainError::PhoneNumberNotFound)?;
    if line.user_id.as_ref().is_some_and(|current| *current != holder.user_id) {
        return Err(DomainError::PhoneNumberAttached.into());
    }
    let licenses = store::seats::of_user(tx, account, &holder.user_id).await?;
    if !licenses.iter().any(|a| a.license_type == LicenseType::Phone) {
        return Err(DomainError::PhoneLicenseRequired.into());
    }
    store::phones::set_user(tx, account, &number, Some(&holder.user_id)).await?;
    if line.user_id.is_none() {
        let change = Change::PhoneNumberMoved {
            number: number.as_str().to_owned(),
            from_user_id: None,
            to_user_id: Some(holder.user_id.to_string()),
        };
        emit(tx, ctx, account, change).await?;
    }
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::PHONE_NUMBER_ATTACHED,
        &user_target(&holder.user_id),
        json!({ "number": number.as_str() }),
    )
    .await?;
    Ok(PhoneLine { user_id: Some(holder.user_id.clone()), ..line })
}

pub async fn detach_phone_number(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    number: PhoneNumber,
) -> Result<PhoneLine> {
    caller.member_with(Privilege::ManageLicenses)?;
    lock_account(tx, account).await?;
    let line = store::phones::get(tx, account, &number).await?.ok_or(DomainError::PhoneNumberNotFound)?;
    store::phones::set_user(tx, account, &number, None).await?;
    if let Some(from) = &line.user_id {
        let change = Change::PhoneNumberMoved {
            number: number.as_str().to_owned(),
            from_user_id: Some(from.to_string()),
            to_user_id: None,
        };
        emit(tx, ctx, account, change).await?;
    }
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::PHONE_NUMBER_DETACHED,
        &format!("phone:{}", number.as_str()),
        json!({}),
    )
    .await?;
    Ok(PhoneLine { user_id: None, ..line })
}

pub async fn list_phone_numbers(tx: &mut Conn, caller: &Caller, account: &Id) -> Result<Vec<PhoneLine>> {
    caller.reader_with(Privilege::ManageLicenses)?;
    Ok(store::phones::list(tx, account).await?)
}

/// Saga step (SPEC R18, R21): takes every license and number from the user, holds them
/// against new assignments, and returns exactly what was taken.
pub async fn reclaim(tx: &mut Conn, ctx: &Ctx, caller: &Caller, account: &Id, user: &Id) -> Result<LicenseSet> {
    caller.identity()?;
    lock_account(tx, account).await?;
    reclaim_locked(tx, ctx, account, user).await
}

/// [`reclaim`] in a transaction that already holds the account's lock, for a caller already
/// checked: a batch takes the lock once for all its users.
pub async fn reclaim_locked(tx: &mut Conn, ctx: &Ctx, account: &Id, user: &Id) -> Result<LicenseSet> {
    let held = store::seats::of_user(tx, account, user).await?;
    for assignment in &held {
        store::seats::unassign(tx, account, user, assignment.license_type).await?;
    }
    let numbers = detach_all(tx, account, user).await?;
    store::seats::hold(tx, account, user, ctx.now_ms).await?;
    let reclaimed = LicenseSet::new(held.iter().map(|a| a.license_type).collect(), numbers);
    audit(tx, ctx, account, crate::app::actions::LICENSES_RECLAIMED, &user_target(user), set_json(&reclaimed)).await?;
    let change = Change::LicensesReclaimed { user_id: user.to_string(), licenses: (&reclaimed).into() };
    emit(tx, ctx, account, change).await?;
    Ok(reclaimed)
}

/// Saga step (SPEC R19, compensation of a reclaim): lifts the hold and gives back as much of
/// `set` as seats and numbers allow. Returns (restored, not restored).
pub async fn restore(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    user: &Id,
    set: &LicenseSet,
) -> Result<(LicenseSet, LicenseSet)> {
    caller.identity()?;
    lock_account(tx, account).await?;
    store::seats::release_hold(tx, account, user).await?;
    let (mut restored, mut missed) = (LicenseSet::default(), LicenseSet::default());
    for license_type in &set.license_types {
        match give(tx, ctx, account, user, *license_type).await {
            Ok(_) | Err(super::Error::Domain(DomainError::AlreadyAssigned)) => {
                restored.license_types.push(*license_type)
            }
            Err(super::Error::Domain(DomainError::SeatsExhausted { .. })) => missed.license_types.push(*license_type),
            Err(other) => return Err(other),
        }
    }
    let holds_phone =
        store::seats::of_user(tx, account, user).await?.iter().any(|a| a.license_type == LicenseType::Phone);
    for number in &set.phone_numbers {
        let line = store::phones::get(tx, account, number).await?;
        let free = line.is_some_and(|line| line.user_id.as_ref().is_none_or(|current| current == user));
        if holds_phone && free {
            store::phones::set_user(tx, account, number, Some(user)).await?;
            restored.phone_numbers.push(number.clone());
        } else {
            missed.phone_numbers.push(number.clone());
        }
    }
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::LICENSES_RESTORED,
        &user_target(user),
        json!({ "restored": set_json(&restored), "not_restored": set_json(&missed) }),
    )
    .await?;
    emit(tx, ctx, account, Change::LicensesRestored { user_id: user.to_string(), licenses: (&restored).into() })
        .await?;
    Ok((restored, missed))
}

/// Saga step (SPEC R4): the phone license and numbers of `from` go to `to`, an active member
/// not under a hold. The seat moves with them, so capacity is unaffected. When `to` holds a
/// phone license already, R4 moves nothing: deciding that here, under the account lock, means
/// no caller has to check first and race a change made between the check and the move.
pub async fn move_phone(tx: &mut Conn, ctx: &Ctx, caller: &Caller, from: &Id, to: &Member) -> Result<LicenseSet> {
    caller.identity()?;
    let account = &to.account_id;
    if *from == to.user_id {
        return Err(DomainError::invalid("to_user_id", "must differ from from_user_id").into());
    }
    lock_account(tx, account).await?;
    ensure_may_hold(tx, to).await?;
    let target_has =
        store::seats::of_user(tx, account, &to.user_id).await?.iter().any(|a| a.license_type == LicenseType::Phone);
    let (had_license, numbers) = if target_has {
        (false, Vec::new())
    } else {
        let had_license = store::seats::unassign(tx, account, from, LicenseType::Phone).await?.is_some();
        let numbers = store::phones::of_user(tx, account, from).await?;
        if had_license {
            let moved = Assignment {
                account_id: account.clone(),
                user_id: to.user_id.clone(),
                license_type: LicenseType::Phone,
                assigned_at_ms: ctx.now_ms,
            };
            store::seats::assign(tx, &moved).await?;
        }
        for number in &numbers {
            store::phones::set_user(tx, account, number, Some(&to.user_id)).await?;
        }
        (had_license, numbers)
    };
    let license_types = if had_license { vec![LicenseType::Phone] } else { Vec::new() };
    let moved = LicenseSet::new(license_types, numbers);
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::PHONE_LICENSES_MOVED,
        &user_target(&to.user_id),
        json!({ "from": from.as_str(), "moved": set_json(&moved) }),
    )
    .await?;
    for number in &moved.phone_numbers {
        let change = Change::PhoneNumberMoved {
            number: number.as_str().to_owned(),
            from_user_id: Some(from.to_string()),
            to_user_id: Some(to.user_id.to_string()),
        };
        emit(tx, ctx, account, change).await?;
    }
    Ok(moved)
}

fn user_target(user: &Id) -> String {
    format!("user:{user}")
}

fn numbers_json(numbers: &[PhoneNumber]) -> Vec<&str> {
    numbers.iter().map(PhoneNumber::as_str).collect()
}

fn set_json(set: &LicenseSet) -> serde_json::Value {
    json!({
        "licenses": set.license_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "numbers": numbers_json(&set.phone_numbers),
    })
}
