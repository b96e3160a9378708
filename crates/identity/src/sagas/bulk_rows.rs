//! A bulk removal's rows, one batch at a time, for the bulk workflow's passes: each row's start
//! is the single-user call's (same checks, same saga: `lifecycle::deactivate_as`,
//! `removal::remove_as`) under the starter's name, in a transaction that also claims the row;
//! a dry run's rows are checked as their start would check them (`dry_run::check_as`).

use std::collections::HashMap;

use roster_platform::db::Database;
use roster_workflow::{Engine, Started};

use super::dry_run::{Checked, check_as};
use super::removal::{Mode, TransferRequest};
use super::{lifecycle, removal};
use crate::domain::DomainError;
use crate::domain::bulk::{BulkAction, TRANSFER_KINDS, UserRef};
use crate::domain::model::User;
use crate::domain::privileges::Actor;
use crate::domain::values::{AccountId, UserId};
use crate::effects::{self, Ctx, load_caller, lock_and_load_caller};
use crate::store::bulk::{self as rows, StoredRow, StoredTransfer};
use crate::store::{self, Conn};

/// How a row's start went.
#[derive(Debug)]
pub enum RowStart {
    /// Its single-user operation started, in the commit that claimed the row.
    Started,
    /// The single-user use case refused it; nothing was changed, and the row is pending for
    /// its refusal to be recorded.
    Refused(DomainError),
    /// Not pending any more (another worker took it): nothing to do.
    Taken,
}

/// Claims pending rows and runs the single-user use case for each, as `ctx` (the starter, at
/// the rows' time; each row gets a request id of its own), all in one transaction: a row is
/// running exactly when its operation exists, and the batch costs one commit. A refusal
/// writes nothing of its row (the use cases check before they write), so the others go on.
pub async fn start_rows(
    db: &Database,
    engine: &Engine,
    ctx: &Ctx,
    account: &AccountId,
    action: BulkAction,
    operation_id: &str,
    batch: &[StoredRow],
) -> effects::Result<Vec<(i64, RowStart)>> {
    let mut tx = db.begin().await?;
    let lines: Vec<i64> = batch.iter().map(|row| row.line).collect();
    let claimed = rows::claim(&mut tx, operation_id, &lines, ctx.now_ms).await?;
    // The starter as the single-user call would load them, once for the batch: the account's
    // lock is held until the commit, so they cannot change in between.
    // A refusal of the starter (demoted, account closed) is every row's, as each single call
    // would get it; any other failure ends the batch.
    let caller = match lock_and_load_caller(&mut tx, ctx, account).await {
        Ok(caller) => Ok(caller),
        Err(effects::Error::Domain(refusal)) => Err(refusal),
        Err(other) => return Err(other),
    };
    let mut named = Named::load(&mut tx, account, batch.iter().filter(|row| claimed.contains(&row.line))).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut started = Vec::new();
    let mut recorded = Vec::new();
    for row in batch {
        if !claimed.contains(&row.line) {
            outcomes.push((row.line, RowStart::Taken));
            continue;
        }
        let row_ctx = Ctx { request_id: format!("bulk:{operation_id}:{}", row.line), ..ctx.clone() };
        let start = match caller.as_ref().map_err(Clone::clone).and_then(|caller| caller.member()) {
            Ok(actor) => start_single(&mut tx, engine, &row_ctx, action, actor, account, row, &mut named).await,
            Err(refusal) => Err(refusal.into()),
        };
        match start {
            Ok((user, operation)) => {
                recorded.push((row.line, user.to_string(), operation.instance().id.clone()));
                started.push(operation);
                outcomes.push((row.line, RowStart::Started));
            }
            Err(effects::Error::Domain(refusal)) => {
                rows::release(&mut tx, operation_id, row.line).await?;
                outcomes.push((row.line, RowStart::Refused(refusal)));
            }
            Err(other) => return Err(other),
        }
    }
    rows::started(&mut tx, operation_id, &recorded).await?;
    tx.commit().await?;
    for operation in started {
        engine.drive_started(operation);
    }
    Ok(outcomes)
}

/// One row: the single-user use case's checks and saga, by `actor`.
#[allow(clippy::too_many_arguments)]
async fn start_single(
    tx: &mut Conn,
    engine: &Engine,
    ctx: &Ctx,
    action: BulkAction,
    actor: &Actor,
    account: &AccountId,
    row: &StoredRow,
    named: &mut Named,
) -> effects::Result<(UserId, Started)> {
    let (user, transfer) = named.resolve(tx, account, row).await?;
    let started = match action {
        BulkAction::Deactivate => lifecycle::deactivate_as(tx, ctx, engine, actor, account, &user).await?,
        BulkAction::Unlink => {
            removal::remove_as(tx, ctx, engine, Mode::Unlink, actor, account, &user, transfer).await?
        }
        BulkAction::Delete => {
            removal::remove_as(tx, ctx, engine, Mode::Delete, actor, account, &user, transfer).await?
        }
    };
    // Its row changed: a later row naming this user reads them afresh.
    named.forget(&user);
    Ok((user.id, started))
}

/// A dry run's batch: each row checked as [`start_rows`] would start it, by the starter as
/// they are now, on committed data, writing nothing. Rows do not see each other's effects
/// (a row's transfer target deactivated by an earlier row still reads as active). Each row
/// is answered: checked (for licensing's preview), or the refusal its start would get.
pub async fn check_rows(
    db: &Database,
    engine: &Engine,
    ctx: &Ctx,
    account: &AccountId,
    action: BulkAction,
    batch: &[StoredRow],
) -> effects::Result<Vec<(i64, std::result::Result<Checked, DomainError>)>> {
    let mut conn = db.reader().await?;
    let caller = match load_caller(&mut conn, ctx, account).await {
        Ok(caller) => Ok(caller),
        Err(effects::Error::Domain(refusal)) => Err(refusal),
        Err(other) => return Err(other),
    };
    let named = Named::load(&mut conn, account, batch.iter()).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for row in batch {
        let checked = match caller.as_ref().map_err(Clone::clone).and_then(|caller| caller.member()) {
            Ok(actor) => match named.resolve(&mut conn, account, row).await {
                Ok((user, transfer)) => check_as(&mut conn, engine, action, actor, account, &user, transfer).await,
                Err(error) => Err(error),
            },
            Err(refusal) => Err(refusal.into()),
        };
        match checked {
            Ok(checked) => answers.push((row.line, Ok(checked))),
            Err(effects::Error::Domain(refusal)) => answers.push((row.line, Err(refusal))),
            Err(other) => return Err(other),
        }
    }
    Ok(answers)
}

/// The users a batch's rows name (and their transfer targets), read in one query under the
/// account lock, as each row's `find` would read them; a user a row has acted on is read
/// afresh by any later row.
struct Named {
    by_ref: HashMap<String, User>,
}

impl Named {
    async fn load(tx: &mut Conn, account: &AccountId, rows: impl Iterator<Item = &StoredRow>) -> effects::Result<Self> {
        let mut refs = Vec::new();
        for row in rows {
            refs.push(row.user_ref.clone());
            if let Some(transfer) = row.transfer.as_deref().and_then(|t| serde_json::from_str::<StoredTransfer>(t).ok())
            {
                refs.push(transfer.to);
            }
        }
        let parsed: Vec<UserRef> = refs.iter().filter_map(|named| UserRef::parse(named).ok()).collect();
        let ids: Vec<&str> = parsed.iter().filter(|r| matches!(r, UserRef::Id(_))).map(UserRef::as_str).collect();
        let emails: Vec<&str> = parsed.iter().filter(|r| matches!(r, UserRef::Email(_))).map(UserRef::as_str).collect();
        let mut by_ref = HashMap::new();
        for user in store::users::named_in_account(tx, account, &ids, &emails).await? {
            by_ref.insert(user.email.as_str().to_owned(), user.clone());
            by_ref.insert(user.id.as_str().to_owned(), user);
        }
        Ok(Self { by_ref })
    }

    /// The account's user a row names, by id or e-mail; `None` for anyone else.
    async fn find(&self, tx: &mut Conn, account: &AccountId, named: &str) -> effects::Result<Option<User>> {
        let Ok(named) = UserRef::parse(named) else { return Ok(None) };
        if let Some(user) = self.by_ref.get(named.as_str()) {
            return Ok(Some(user.clone()));
        }
        let user = match named {
            UserRef::Id(id) => store::users::get_in_account(tx, account, &id).await?,
            UserRef::Email(email) => store::users::find_by_email_in_account(tx, account, &email).await?,
        };
        Ok(user)
    }

    /// The user a row names and its transfer, as the single-user call would be given them.
    async fn resolve(
        &self,
        conn: &mut Conn,
        account: &AccountId,
        row: &StoredRow,
    ) -> effects::Result<(User, Option<TransferRequest>)> {
        let user = self.find(conn, account, &row.user_ref).await?.ok_or(DomainError::UserNotFound)?;
        let Some(text) = &row.transfer else { return Ok((user, None)) };
        let stored: StoredTransfer =
            serde_json::from_str(text).map_err(|e| effects::Error::Internal(format!("stored transfer: {e}")))?;
        let target = self.find(conn, account, &stored.to).await?.ok_or(DomainError::TargetNotInAccount)?;
        let kinds = TRANSFER_KINDS
            .iter()
            .map(|(_, kind)| *kind)
            .filter(|kind| stored.kinds.iter().any(|k| k == kind))
            .collect();
        Ok((user, Some(TransferRequest { target: target.id, kinds })))
    }

    fn forget(&mut self, user: &User) {
        self.by_ref.remove(user.id.as_str());
        self.by_ref.remove(user.email.as_str());
    }
}
