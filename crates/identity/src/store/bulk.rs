//! Bulk operations and their rows (SPEC R14, R25). Every change of a row's state is a guarded
//! update from the state it must be in, so two workers that both think they run a bulk
//! operation (one paused past its lease) never start a row twice or overwrite an outcome.

use std::collections::HashSet;

use roster_platform::db::params;
use sqlx::Row;

use super::Conn;

/// A row's transfer as stored: whom (an id or an e-mail) and which kinds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredTransfer {
    pub to: String,
    pub kinds: Vec<String>,
}

/// A bulk operation as stored beside its workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOperation {
    pub id: String,
    pub account_id: String,
    pub action: String,
    /// The file's header, as CSV.
    pub header: String,
    pub total: i64,
    /// A dry run: rows are checked and previewed, never started.
    pub validate_only: bool,
    pub cancel_requested_by: Option<String>,
    pub created_at_ms: i64,
}

/// A row to store: its line, its fields as CSV, whom it names, and either what to move
/// (JSON) or, for a row that could not be read, its problem (column, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow {
    pub line: i64,
    pub fields: String,
    pub user_ref: String,
    pub transfer: Option<String>,
    pub problem: Option<(String, String)>,
}

/// A row's state; the last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum RowState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A row as listed and written to the results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub line: i64,
    pub fields: String,
    pub user_ref: String,
    pub transfer: Option<String>,
    pub state: RowState,
    pub user_id: Option<String>,
    pub child_id: Option<String>,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub column: Option<String>,
    /// A dry run's row that would go ahead: what it would do (JSON).
    pub preview: Option<String>,
}

/// How a finished row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: RowState,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    /// A dry run's preview (JSON).
    pub preview: Option<String>,
}

/// Rows per INSERT, of [`ROW_PARAMS`] parameters each: well under SQLite's limit of 32,766.
const INSERT_BATCH: usize = 500;
const ROW_PARAMS: usize = 10;

pub async fn insert(tx: &mut Conn, operation: &BulkOperation, rows: &[NewRow]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bulk_operations (id, account_id, action, header, total, validate_only, failed, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&operation.id)
    .bind(&operation.account_id)
    .bind(&operation.action)
    .bind(&operation.header)
    .bind(operation.total)
    .bind(super::stored_flag(operation.validate_only))
    // Rows that could not be read are failed from the start.
    .bind(i64::try_from(rows.iter().filter(|row| row.problem.is_some()).count()).unwrap_or(i64::MAX))
    .bind(operation.created_at_ms)
    .execute(&mut *tx)
    .await?;
    for batch in rows.chunks(INSERT_BATCH) {
        let values: Vec<String> =
            (0..batch.len()).map(|row| format!("({})", params(row * ROW_PARAMS + 1, ROW_PARAMS))).collect();
        let sql = format!(
            "INSERT INTO bulk_rows (operation_id, line, fields, user_ref, transfer, state, reason, message, col, \
             updated_at_ms) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in batch {
            let (state, reason, column, message) = match &row.problem {
                Some((column, message)) => {
                    (RowState::Failed, Some("INVALID_ROW"), Some(column.as_str()), Some(message.as_str()))
                }
                None => (RowState::Pending, None, None, None),
            };
            query = query
                .bind(&operation.id)
                .bind(row.line)
                .bind(&row.fields)
                .bind(&row.user_ref)
                .bind(row.transfer.as_deref())
                .bind(state.as_str())
                .bind(reason)
                .bind(message)
                .bind(column)
                .bind(operation.created_at_ms);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<BulkOperation>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, account_id, action, header, total, validate_only, cancel_requested_by, created_at_ms \
         FROM bulk_operations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(BulkOperation {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            action: row.try_get("action")?,
            header: row.try_get("header")?,
            total: row.try_get("total")?,
            validate_only: super::flag(row.try_get("validate_only")?),
            cancel_requested_by: row.try_get("cancel_requested_by")?,
            created_at_ms: row.try_get("created_at_ms")?,
        })
    })
    .transpose()
}

/// Asks the operation to start no new rows; the first asker is kept.
pub async fn request_cancel(tx: &mut Conn, id: &str, by: &str) -> Result<bool, sqlx::Error> {
    let updated =
        sqlx::query("UPDATE bulk_operations SET cancel_requested_by = COALESCE(cancel_requested_by, $2) WHERE id = $1")
            .bind(id)
            .bind(by)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    Ok(updated == 1)
}

/// How many rows have ended in each final state, and how many have not (as pending): read
/// from the operation's counters, which every change of a row's state keeps in its own
/// commit, so progress costs one row however large the file.
pub async fn counts(conn: &mut Conn, id: &str) -> Result<Vec<(RowState, i64)>, sqlx::Error> {
    let row = sqlx::query("SELECT total, succeeded, failed, skipped FROM bulk_operations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    let (total, succeeded, failed, skipped): (i64, i64, i64, i64) =
        (row.try_get("total")?, row.try_get("succeeded")?, row.try_get("failed")?, row.try_get("skipped")?);
    Ok(vec![
        (RowState::Succeeded, succeeded),
        (RowState::Failed, failed),
        (RowState::Skipped, skipped),
        (RowState::Pending, total - succeeded - failed - skipped),
    ])
}

/// Adds rows that just ended to the operation's counters.
async fn count_ended(tx: &mut Conn, id: &str, succeeded: i64, failed: i64, skipped: i64) -> Result<(), sqlx::Error> {
    if succeeded + failed + skipped == 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE bulk_operations SET succeeded = succeeded + $2, failed = failed + $3, skipped = skipped + $4 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(succeeded)
    .bind(failed)
    .bind(skipped)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const COLUMNS: &str = "line, fields, user_ref, transfer, state, user_id, child_id, reason, code, message, col, preview";

/// Rows in line order after `after_line`, in `state` if given.
pub async fn list(
    conn: &mut Conn,
    id: &str,
    state: Option<RowState>,
    after_line: i64,
    limit: i64,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    let filter = if state.is_some() { "AND state = $4" } else { "" };
    let sql = format!(
        "SELECT {COLUMNS} FROM bulk_rows WHERE operation_id = $1 AND line > $2 {filter} ORDER BY line LIMIT $3"
    );
    let mut query = sqlx::query(&sql).bind(id).bind(after_line).bind(limit);
    if let Some(state) = state {
        query = query.bind(state.as_str());
    }
    query.fetch_all(&mut *conn).await?.iter().map(decode).collect()
}

/// Makes those of `lines` that are pending running, in one statement, and returns them; a row
/// not returned is not pending (another worker took it, or the operation was cancelled), and
/// nothing is to be done with it.
pub async fn claim(tx: &mut Conn, id: &str, lines: &[i64], now_ms: i64) -> Result<HashSet<i64>, sqlx::Error> {
    if lines.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "UPDATE bulk_rows SET state = 'running', updated_at_ms = $2 WHERE operation_id = $1 AND state = 'pending' \
         AND line IN ({}) RETURNING line",
        params(3, lines.len())
    );
    let query = sqlx::query(&sql).bind(id).bind(now_ms);
    let claimed = lines.iter().fold(query, |query, line| query.bind(*line)).fetch_all(&mut *tx).await?;
    claimed.iter().map(|row| row.try_get::<i64, _>("line")).collect()
}

/// Gives a claimed row back (its use case refused it), for the refusal to be recorded.
pub async fn release(tx: &mut Conn, id: &str, line: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE bulk_rows SET state = 'pending' WHERE operation_id = $1 AND line = $2 AND state = 'running'")
        .bind(id)
        .bind(line)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Records, for each claimed row, the user it found and the operation it started, in the
/// claim's commit: one statement for the batch.
pub async fn started(tx: &mut Conn, id: &str, rows: &[(i64, String, String)]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    // A VALUES list's columns are column1, column2, ... in PostgreSQL and SQLite alike.
    let values: Vec<String> =
        (0..rows.len()).map(|i| format!("(CAST(${} AS BIGINT), ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
    let sql = format!(
        "UPDATE bulk_rows SET user_id = v.column2, child_id = v.column3 FROM (VALUES {}) AS v \
         WHERE bulk_rows.operation_id = $1 AND bulk_rows.line = v.column1",
        values.join(", ")
    );
    let query = rows.iter().fold(sqlx::query(&sql).bind(id), |query, (line, user, child)| {
        query.bind(*line).bind(user.as_str()).bind(child.as_str())
    });
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Rows per UPDATE in [`finish`], of 7 parameters each: well under SQLite's 32,766.
const FINISH_BATCH: usize = 500;

/// Ends each `(line, from, outcome)` row that is still in `from` (pending: refused before it
/// started; running: its operation ended), a statement per few hundred rows; a row that had
/// already ended is left as it was.
pub async fn finish(
    tx: &mut Conn,
    id: &str,
    outcomes: &[(i64, RowState, Outcome)],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for batch in outcomes.chunks(FINISH_BATCH) {
        // A VALUES list's columns are column1, column2, ... in PostgreSQL and SQLite alike.
        let values: Vec<String> = (0..batch.len())
            .map(|i| {
                let first = 3 + i * 7;
                format!("(CAST(${first} AS BIGINT), {})", params(first + 1, 6))
            })
            .collect();
        let sql = format!(
            "UPDATE bulk_rows SET state = v.column3, reason = v.column4, code = v.column5, message = v.column6, \
             preview = v.column7, updated_at_ms = $2 FROM (VALUES {}) AS v \
             WHERE bulk_rows.operation_id = $1 AND bulk_rows.line = v.column1 AND bulk_rows.state = v.column2 \
             RETURNING bulk_rows.state",
            values.join(", ")
        );
        let query = batch.iter().fold(sqlx::query(&sql).bind(id).bind(now_ms), |query, (line, from, outcome)| {
            query
                .bind(*line)
                .bind(from.as_str())
                .bind(outcome.state.as_str())
                .bind(outcome.reason.as_deref())
                .bind(outcome.code.as_deref())
                .bind(outcome.message.as_deref())
                .bind(outcome.preview.as_deref())
        });
        let ended = query.fetch_all(&mut *tx).await?;
        let (mut succeeded, mut failed) = (0, 0);
        for row in &ended {
            match decode_state(&row.try_get::<String, _>("state")?)? {
                RowState::Succeeded => succeeded += 1,
                _ => failed += 1,
            }
        }
        count_ended(tx, id, succeeded, failed, 0).await?;
    }
    Ok(())
}

/// After a cancel: every row not yet started is skipped.
pub async fn skip_pending(tx: &mut Conn, id: &str, now_ms: i64) -> Result<u64, sqlx::Error> {
    let skipped = sqlx::query(
        "UPDATE bulk_rows SET state = 'skipped', reason = 'OPERATION_CANCELLED', \
         message = 'not started: the bulk operation was cancelled', updated_at_ms = $2 \
         WHERE operation_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    count_ended(tx, id, 0, 0, i64::try_from(skipped).unwrap_or(i64::MAX)).await?;
    Ok(skipped)
}

fn decode_state(state: &str) -> Result<RowState, sqlx::Error> {
    state.parse().map_err(|_| super::corrupt("bulk row state", state))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<StoredRow, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(StoredRow {
        line: row.try_get("line")?,
        fields: row.try_get("fields")?,
        user_ref: row.try_get("user_ref")?,
        transfer: row.try_get("transfer")?,
        state: decode_state(&state)?,
        user_id: row.try_get("user_id")?,
        child_id: row.try_get("child_id")?,
        reason: row.try_get("reason")?,
        code: row.try_get("code")?,
        message: row.try_get("message")?,
        column: row.try_get("col")?,
        preview: row.try_get("preview")?,
    })
}
