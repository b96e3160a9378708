//! Bulk removal use cases (SPEC R14, R16, R25): starting one on a list or a file; each row's
//! start, which is the single-user use case (same checks, same saga) run under the starter's
//! name in a transaction that also claims the row; cancelling; and reading the rows.

use roster_workflow::{Engine, Instance, NotCancellable, Started};
use serde_json::json;

use crate::domain::DomainError;
use crate::domain::bulk::{BulkAction, BulkInput, BulkRow, TRANSFER_KINDS};
use crate::domain::rules;
use crate::domain::values::AccountId;
use crate::effects::Origin;
use crate::effects::{Ctx, Result, audit, lock_and_load_caller, start_operation};
use crate::sagas::bulk::BulkRun;
use crate::store::Conn;
use crate::store::bulk::{self as rows, BulkOperation, NewRow, RowState, StoredRow, StoredTransfer};

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
    audit(tx, ctx, Some(account), crate::effects::actions::BULK_STARTED, format!("operation:{id}"), details).await?;
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
