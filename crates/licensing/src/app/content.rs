//! Licensed data (SPEC R21-R23): registering and listing it, the transfer, undo and delete
//! steps identity's unlink and delete sagas call, and the preview of a removal (dry run).

use roster_platform::stored_text::StoredText;
use std::collections::BTreeSet;

use serde_json::json;

use super::{Ctx, Result, audit, emit};
use crate::domain::DomainError;
use crate::domain::access::{Caller, Member, Privilege};
use crate::domain::events::{self, Change};
use crate::domain::model::{ContentCounts, ContentItem, ContentKind, Id, LicenseSet, LicenseType};
use crate::domain::transfer;
use crate::store::{self, Conn, lock_account};

/// What a new item is.
#[derive(Debug, Clone)]
pub struct NewContent {
    pub kind: ContentKind,
    pub title: String,
    pub uses_pmi: bool,
}

/// Registers an item for `owner`: the caller themselves, or anyone active when the caller
/// manages users.
pub async fn register(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    owner: &Member,
    new: NewContent,
) -> Result<ContentItem> {
    let acting = caller.active_member()?;
    if acting.user_id != owner.user_id {
        caller.member_with(Privilege::ManageUsers)?;
    }
    if !owner.is_active() {
        return Err(DomainError::UserNotActive.into());
    }
    if new.uses_pmi && new.kind != ContentKind::Meeting {
        return Err(DomainError::invalid("uses_pmi", "only meetings are scheduled on a personal meeting id").into());
    }
    lock_account(tx, &owner.account_id).await?;
    let item = ContentItem {
        id: Id::generate(),
        account_id: owner.account_id.clone(),
        owner_user_id: owner.user_id.clone(),
        kind: new.kind,
        title: new.title,
        uses_pmi: new.uses_pmi,
        created_at_ms: ctx.now_ms,
    };
    store::content::insert(tx, &item).await?;
    audit(
        tx,
        ctx,
        &item.account_id,
        crate::app::actions::CONTENT_REGISTERED,
        &format!("content:{}", item.id),
        json!({ "owner": item.owner_user_id.as_str(), "kind": item.kind.as_str() }),
    )
    .await?;
    Ok(item)
}

pub async fn list(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
    owner: &Id,
    kind: Option<ContentKind>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ContentItem>> {
    caller.reader_of(owner, Privilege::ManageUsers)?;
    Ok(store::content::list(tx, account, owner, kind, after, limit).await?)
}

/// The outcome of a transfer.
#[derive(Debug, Clone)]
pub struct Transferred {
    pub transfer_id: Id,
    pub moved: ContentCounts,
    pub kept: ContentCounts,
}

/// Saga step (SPEC R23): moves the chosen kinds from `from` to `target`, all or nothing.
/// `target` is `None` when identity does not know them in this account.
pub async fn transfer(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    from: &Id,
    target: Option<&Member>,
    kinds: &BTreeSet<ContentKind>,
) -> Result<Transferred> {
    caller.identity()?;
    lock_account(tx, account).await?;
    let (target, licenses) = receiving_licenses(tx, account, from, target).await?;
    let items = store::content::of_owner(tx, account, from).await?;
    let plan = transfer::plan(items, kinds, &licenses)?;
    for item in &plan.moving {
        store::content::set_owner(tx, &item.id, &target.user_id).await?;
    }
    let transfer_id = Id::generate();
    store::content::record_transfer(tx, &transfer_id, account, from, &target.user_id, &plan.moving, ctx.now_ms).await?;
    let done = Transferred { transfer_id, moved: ContentCounts::of(&plan.moving), kept: ContentCounts::of(&plan.kept) };
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::CONTENT_TRANSFERRED,
        &format!("user:{from}"),
        json!({ "to": target.user_id.as_str(), "transfer": done.transfer_id.as_str(), "moved": counts_json(&done.moved) }),
    )
    .await?;
    let change = Change::ContentTransferred {
        from_user_id: from.to_string(),
        to_user_id: target.user_id.to_string(),
        items: events::items(&done.moved),
    };
    emit(tx, ctx, account, change).await?;
    Ok(done)
}

/// The target of a transfer from `from` and its licenses, which decide what it may receive
/// (SPEC R23): only another user of the account (1001), active and not having licenses
/// reclaimed, receives anything.
async fn receiving_licenses<'m>(
    conn: &mut Conn,
    account: &Id,
    from: &Id,
    target: Option<&'m Member>,
) -> Result<(&'m Member, BTreeSet<LicenseType>)> {
    let target = target.ok_or(DomainError::TargetNotInAccount)?;
    if target.user_id == *from {
        return Err(DomainError::invalid("to_user_id", "must differ from the user whose content moves").into());
    }
    if !target.is_active() || store::seats::is_held(conn, account, &target.user_id).await? {
        return Err(DomainError::UserNotActive.into());
    }
    let licenses =
        store::seats::of_user(conn, account, &target.user_id).await?.iter().map(|a| a.license_type).collect();
    Ok((target, licenses))
}

/// What removing `user` would do, read without a lock and changing nothing (the dry run):
/// the licenses and numbers a reclaim would take, what a transfer to `target` would move,
/// and what would stay with the user. Refused as [`transfer`] would refuse.
pub async fn preview_removal(
    conn: &mut Conn,
    caller: &Caller,
    account: &Id,
    user: &Id,
    transfer_to: Option<(Option<&Member>, &BTreeSet<ContentKind>)>,
) -> Result<RemovalPreview> {
    caller.identity()?;
    let held = store::seats::of_user(conn, account, user).await?;
    let numbers = store::phones::of_user(conn, account, user).await?;
    let licenses = LicenseSet::new(held.iter().map(|a| a.license_type).collect(), numbers);
    let items = store::content::of_owner(conn, account, user).await?;
    let moving = match transfer_to {
        Some((target, kinds)) => {
            let (_, receiving) = receiving_licenses(conn, account, user, target).await?;
            transfer::plan(items.clone(), kinds, &receiving)?.moving
        }
        None => Vec::new(),
    };
    // What stays is everything that does not move: the kinds not asked for as well as the
    // PMI meetings the plan keeps.
    let remaining: Vec<ContentItem> =
        items.into_iter().filter(|item| !moving.iter().any(|m| m.id == item.id)).collect();
    Ok(RemovalPreview { licenses, transferred: ContentCounts::of(&moving), remaining: ContentCounts::of(&remaining) })
}

/// See [`preview_removal`].
#[derive(Debug, Clone)]
pub struct RemovalPreview {
    pub licenses: LicenseSet,
    pub transferred: ContentCounts,
    pub remaining: ContentCounts,
}

/// Compensation of [`transfer`]: items the target still owns go back to their previous owner.
/// Undoing twice returns nothing the second time.
pub async fn undo_transfer(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    transfer_id: &Id,
) -> Result<ContentCounts> {
    caller.identity()?;
    lock_account(tx, account).await?;
    let record = store::content::transfer(tx, account, transfer_id).await?.ok_or(DomainError::TransferNotFound)?;
    let mut returned = ContentCounts::default();
    if !record.undone {
        for item in store::content::transferred_items(tx, transfer_id).await? {
            if item.owner_user_id == record.to_user_id {
                store::content::set_owner(tx, &item.id, &record.from_user_id).await?;
                returned.add(item.kind);
            }
        }
        store::content::mark_undone(tx, transfer_id, ctx.now_ms).await?;
    }
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::CONTENT_TRANSFER_UNDONE,
        &format!("transfer:{transfer_id}"),
        json!({ "returned": counts_json(&returned) }),
    )
    .await?;
    Ok(returned)
}

/// Saga step (SPEC R22): deletes what the user still owns. The user may already be gone from
/// identity, so they are not looked up there: the hold their removal's reclaim left in this
/// account is licensing's own proof that they belonged to it (R34).
pub async fn delete_user_content(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    user: &Id,
) -> Result<ContentCounts> {
    caller.identity()?;
    lock_account(tx, account).await?;
    ensure_being_removed(tx, account, user).await?;
    let items = store::content::of_owner(tx, account, user).await?;
    for item in &items {
        store::content::delete(tx, &item.id).await?;
    }
    // The user is gone: the hold their reclaim left has nothing left to guard.
    store::seats::release_hold(tx, account, user).await?;
    let deleted = ContentCounts::of(&items);
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::CONTENT_DELETED,
        &format!("user:{user}"),
        json!({ "deleted": counts_json(&deleted) }),
    )
    .await?;
    emit(tx, ctx, account, Change::ContentDeleted { user_id: user.to_string(), items: events::items(&deleted) })
        .await?;
    Ok(deleted)
}

/// Content leaves an account with its user only after the removal saga reclaimed that user's
/// licenses here; anyone else (a user of another account) reads as missing.
async fn ensure_being_removed(tx: &mut Conn, account: &Id, user: &Id) -> Result<()> {
    if store::seats::is_held(tx, account, user).await? { Ok(()) } else { Err(DomainError::UserNotFound.into()) }
}

fn counts_json(counts: &ContentCounts) -> serde_json::Value {
    json!({
        "meetings": counts.meetings,
        "webinars": counts.webinars,
        "events": counts.events,
        "recordings": counts.recordings,
    })
}

/// SPEC R21: an unlinked user keeps what was not transferred. Their items move to the account
/// they now own (the handler checked with identity that they are in it), and the hold their
/// reclaim left in the old account is lifted.
pub async fn rehome_user_content(
    tx: &mut Conn,
    ctx: &Ctx,
    caller: &Caller,
    account: &Id,
    user: &Id,
    new_account: &Id,
) -> Result<ContentCounts> {
    caller.identity()?;
    if new_account == account {
        return Err(DomainError::invalid("new_account_id", "must differ from account_id").into());
    }
    lock_account(tx, account).await?;
    ensure_being_removed(tx, account, user).await?;
    let items = store::content::of_owner(tx, account, user).await?;
    store::content::rehome(tx, account, user, new_account).await?;
    store::seats::release_hold(tx, account, user).await?;
    let moved = ContentCounts::of(&items);
    audit(
        tx,
        ctx,
        account,
        crate::app::actions::CONTENT_REHOMED,
        &format!("user:{user}"),
        json!({ "moved": counts_json(&moved), "new_account_id": new_account.as_str() }),
    )
    .await?;
    Ok(moved)
}
