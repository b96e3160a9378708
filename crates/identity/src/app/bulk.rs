//! Bulk removal use cases (SPEC R14, R16, R25): starting one on a list or a file; each row's
//! start, which is the single-user use case (same checks, same saga) run under the starter's
//! name in a transaction that also claims the row; cancelling; and reading the rows.

use std::collections::HashMap;

use roster_platform::db::Database;
use roster_workflow::{Engine, Instance, NotCancellable, Started};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{self, Checked};
use super::users::{self, TransferRequest};
use super::{Ctx, Result, audit, load_caller, lock_and_load_caller, start_operation};
use crate::domain::DomainError;
use crate::domain::bulk::{BulkAction, BulkInput, BulkRow, TRANSFER_KINDS, UserRef};
use crate::domain::model::User;
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::sagas::Origin;
use crate::sagas::removal::Mode;
use crate::store::bulk::{self as rows, BulkOperation, NewRow, RowState, StoredRow};
use crate::store::{self, Conn};

/// What the bulk workflow reads: where it acts, what it does, and whose name each row's
/// single-user operation carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkRun {
    pub account_id: String,
    pub action: String,
    pub origin: Origin,
    /// A dry run: rows are checked and previewed, never started.
    #[serde(default)]
    pub validate_only: bool,
}

/// A row's transfer as stored: whom (an id or an e-mail) and which kinds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTransfer {
    to: String,
    kinds: Vec<String>,
}

/// SPEC R16: the owner, or a custom role with bulk removal and user management, may start
/// one; anyone else is refused before anything is stored. The rows are stored with the
/// operation, those that could not be read already failed with their problem. A dry run
/// (`validate_only`) is stored the same way, so it is followed, listed and downloaded like a
/// real one, but under a subject of its own: it never holds up a real run, nor waits for one.
pub async fn start(
    tx: &mut Conn,
    ctx: &Ctx,
    engine: &Engine,
    account: &AccountId,
    action: BulkAction,
    input: BulkInput,
    validate_only: bool,
) -> Result<Started> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    rules::check_bulk_removal(caller.member()?)?;
    let run = BulkRun {
        account_id: account.to_string(),
        action: action.as_str().to_owned(),
        origin: Origin::of(ctx),
        validate_only,
    };
    let subject = if validate_only { format!("bulk-dry-run:{account}") } else { format!("bulk:{account}") };
    let started = start_operation(tx, engine, ctx, action.operation_kind(), account, &subject, &run).await?;
    let id = started.instance().id.clone();
    let new_rows: Vec<NewRow> = input.rows.iter().map(new_row).collect();
    let unreadable = new_rows.iter().filter(|row| row.problem.is_some()).count();
    let operation = BulkOperation {
        id: id.clone(),
        account_id: account.to_string(),
        action: action.as_str().to_owned(),
        header: csv_line(&input.header),
        total: i64::try_from(new_rows.len()).unwrap_or(i64::MAX),
        validate_only,
        cancel_requested_by: None,
        created_at_ms: ctx.now_ms,
    };
    rows::insert(tx, &operation, &new_rows).await?;
    let details = json!({
        "operation": id,
        "action": action.as_str(),
        "rows": new_rows.len(),
        "unreadable": unreadable,
        "validate_only": validate_only,
    });
    audit(tx, ctx, Some(account), super::actions::BULK_STARTED, format!("operation:{id}"), details).await?;
    Ok(started)
}

fn new_row(row: &BulkRow) -> NewRow {
    let (user_ref, transfer, problem) = match &row.entry {
        Ok(entry) => {
            let transfer = entry.transfer.as_ref().map(|t| {
                let kinds = t.kinds.iter().map(|k| (*k).to_owned()).collect();
                serde_json::to_string(&StoredTransfer { to: t.to.as_str().to_owned(), kinds }).unwrap_or_default()
            });
            (entry.user.as_str().to_owned(), transfer, None)
        }
        Err(problem) => {
            let named = row.fields.first().cloned().unwrap_or_default();
            (named, None, Some((problem.column.clone(), problem.reason.clone())))
        }
    };
    NewRow {
        line: i64::try_from(row.line).unwrap_or(i64::MAX),
        fields: csv_line(&row.fields),
        user_ref,
        transfer,
        problem,
    }
}

/// A line of a results file Roster hands out: the stored record (CSV, as uploaded) followed by
/// `more` cells, each cell made safe to open in a spreadsheet ([`spreadsheet_safe`]).
pub fn results_line(stored: &str, more: &[String]) -> String {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(stored.as_bytes());
    let given: Vec<String> = reader
        .records()
        .next()
        .and_then(|record| record.ok())
        .map(|record| record.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let cells: Vec<String> = given.iter().chain(more).map(|cell| spreadsheet_safe(cell)).collect();
    csv_line(&cells)
}

/// A cell a spreadsheet would read as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`, which spreadsheets show as text: an uploaded
/// `=HYPERLINK(...)` must not run when an admin opens the results (CSV injection).
pub fn spreadsheet_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// Fields as one CSV record, quoted where they need it, without the line end.
pub fn csv_line(fields: &[impl AsRef<[u8]>]) -> String {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = writer.write_record(fields);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end_matches('\n').to_owned()
}

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
    run: &BulkRun,
    operation_id: &str,
    batch: &[StoredRow],
) -> Result<Vec<(i64, RowStart)>> {
    let (account, action) = run_target(run)?;
    let mut tx = db.begin().await?;
    let lines: Vec<i64> = batch.iter().map(|row| row.line).collect();
    let claimed = rows::claim(&mut tx, operation_id, &lines, ctx.now_ms).await?;
    // The starter as the single-user call would load them, once for the batch: the account's
    // lock is held until the commit, so they cannot change in between.
    // A refusal of the starter (demoted, account closed) is every row's, as each single call
    // would get it; any other failure ends the batch.
    let caller = match lock_and_load_caller(&mut tx, ctx, &account).await {
        Ok(caller) => Ok(caller),
        Err(super::Error::Domain(refusal)) => Err(refusal),
        Err(other) => return Err(other),
    };
    let mut named = Named::load(&mut tx, &account, batch.iter().filter(|row| claimed.contains(&row.line))).await?;
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
            Ok(actor) => start_single(&mut tx, engine, &row_ctx, action, actor, &account, row, &mut named).await,
            Err(refusal) => Err(refusal.into()),
        };
        match start {
            Ok((user, operation)) => {
                recorded.push((row.line, user.to_string(), operation.instance().id.clone()));
                started.push(operation);
                outcomes.push((row.line, RowStart::Started));
            }
            Err(super::Error::Domain(refusal)) => {
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
) -> Result<(UserId, Started)> {
    let (user, transfer) = named.resolve(tx, account, row).await?;
    let started = match action {
        BulkAction::Deactivate => users::deactivate_as(tx, ctx, engine, actor, account, &user).await?,
        BulkAction::Unlink => users::remove_as(tx, ctx, engine, Mode::Unlink, actor, account, &user, transfer).await?,
        BulkAction::Delete => users::remove_as(tx, ctx, engine, Mode::Delete, actor, account, &user, transfer).await?,
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
    run: &BulkRun,
    batch: &[StoredRow],
) -> Result<Vec<(i64, std::result::Result<Checked, DomainError>)>> {
    let (account, action) = run_target(run)?;
    let mut conn = db.reader().await?;
    let caller = match load_caller(&mut conn, ctx, &account).await {
        Ok(caller) => Ok(caller),
        Err(super::Error::Domain(refusal)) => Err(refusal),
        Err(other) => return Err(other),
    };
    let named = Named::load(&mut conn, &account, batch.iter()).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for row in batch {
        let checked = match caller.as_ref().map_err(Clone::clone).and_then(|caller| caller.member()) {
            Ok(actor) => match named.resolve(&mut conn, &account, row).await {
                Ok((user, transfer)) => {
                    dry_run::check_as(&mut conn, engine, action, actor, &account, &user, transfer).await
                }
                Err(error) => Err(error),
            },
            Err(refusal) => Err(refusal.into()),
        };
        match checked {
            Ok(checked) => answers.push((row.line, Ok(checked))),
            Err(super::Error::Domain(refusal)) => answers.push((row.line, Err(refusal))),
            Err(other) => return Err(other),
        }
    }
    Ok(answers)
}

/// The account and action a bulk workflow's input names.
fn run_target(run: &BulkRun) -> Result<(AccountId, BulkAction)> {
    let account = AccountId::parse(&run.account_id).map_err(|_| DomainError::AccountNotFound)?;
    let action =
        run.action.parse().map_err(|_| super::Error::Internal(format!("unknown bulk action {:?}", run.action)))?;
    Ok((account, action))
}

/// The users a batch's rows name (and their transfer targets), read in one query under the
/// account lock, as each row's `find` would read them; a user a row has acted on is read
/// afresh by any later row.
struct Named {
    by_ref: HashMap<String, User>,
}

impl Named {
    async fn load(tx: &mut Conn, account: &AccountId, rows: impl Iterator<Item = &StoredRow>) -> Result<Self> {
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
    async fn find(&self, tx: &mut Conn, account: &AccountId, named: &str) -> Result<Option<User>> {
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
    ) -> Result<(User, Option<TransferRequest>)> {
        let user = self.find(conn, account, &row.user_ref).await?.ok_or(DomainError::UserNotFound)?;
        let Some(text) = &row.transfer else { return Ok((user, None)) };
        let stored: StoredTransfer =
            serde_json::from_str(text).map_err(|e| super::Error::Internal(format!("stored transfer: {e}")))?;
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

/// Asks a bulk operation to start no more rows; those running finish. Whoever may cancel
/// an operation may cancel this one (see `operations::cancel`).
pub async fn cancel(tx: &mut Conn, ctx: &Ctx, engine: &Engine, instance: Instance) -> Result<Instance> {
    if instance.state.is_final() {
        let why = NotCancellable::Finished(instance.state);
        return Err(DomainError::OperationNotCancellable { why: why.to_string() }.into());
    }
    let by = ctx.principal.audit_name();
    if !rows::request_cancel(tx, &instance.id, &by).await? {
        return Err(DomainError::OperationNotFound.into());
    }
    engine.due_now(tx, &instance.id).await?;
    Ok(instance)
}

/// The bulk operation behind a workflow and how many of its rows are in each state; `None`
/// for any other kind. The caller has checked that it may see the operation.
pub async fn progress(conn: &mut Conn, id: &str) -> Result<Option<(BulkOperation, Vec<(RowState, i64)>)>> {
    let Some(operation) = rows::get(conn, id).await? else { return Ok(None) };
    let counts = rows::counts(conn, id).await?;
    Ok(Some((operation, counts)))
}

/// A page of rows in line order, for listing and for the results file.
pub async fn rows(
    conn: &mut Conn,
    id: &str,
    state: Option<RowState>,
    after_line: i64,
    limit: i64,
) -> Result<Vec<StoredRow>> {
    Ok(rows::list(conn, id, state, after_line, limit).await?)
}

/// What the results file adds after each row's own fields.
pub const RESULT_COLUMNS: [&str; 5] = ["outcome", "reason", "code", "message", "column"];

/// What a dry run's results file adds after [`RESULT_COLUMNS`]: the preview's parts, in
/// words, for each action.
pub fn preview_columns(action: BulkAction) -> &'static [&'static str] {
    match action {
        BulkAction::Deactivate => &["would_reclaim"],
        BulkAction::Unlink => &["would_reclaim", "would_transfer", "would_move_to_own_account"],
        BulkAction::Delete => &["would_reclaim", "would_transfer", "would_delete"],
    }
}

/// A row's [`preview_columns`], from its stored preview; empty for a row without one.
pub fn preview_fields(action: BulkAction, preview: Option<&str>) -> Vec<String> {
    let columns = preview_columns(action);
    let Some(preview) = preview.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()) else {
        return vec![String::new(); columns.len()];
    };
    let reclaimed = &preview["reclaimed"];
    let licenses = reclaimed["license_types"].as_array().into_iter().flatten();
    let numbers = reclaimed["phone_numbers"].as_array().into_iter().flatten().filter_map(|n| n.as_str());
    let licenses: Vec<String> = licenses
        .filter_map(|l| l.as_str())
        .map(str::to_owned)
        .chain(numbers.map(|number| format!("number {number}")))
        .collect();
    let mut fields = vec![if licenses.is_empty() { "nothing".to_owned() } else { licenses.join(", ") }];
    if action != BulkAction::Deactivate {
        let rest = if action == BulkAction::Unlink { "rehomed" } else { "deleted" };
        fields.push(counts_in_words(&preview["transferred"]));
        fields.push(counts_in_words(&preview[rest]));
    }
    fields
}

/// Content counts as "2 meetings, 1 recording"; "nothing" when all are zero or absent.
fn counts_in_words(counts: &serde_json::Value) -> String {
    let words: Vec<String> = TRANSFER_KINDS
        .iter()
        .map(|(_, kind)| *kind)
        .filter_map(|kind| {
            let n = counts[format!("{kind}s")].as_u64().filter(|n| *n > 0)?;
            Some(format!("{n} {kind}{}", if n == 1 { "" } else { "s" }))
        })
        .collect();
    if words.is_empty() { "nothing".to_owned() } else { words.join(", ") }
}
