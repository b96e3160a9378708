//! Workflow persistence. Every write after the claim is fenced: it names the lease token it
//! claimed with and matches no row once another worker has claimed the instance since.
//!
//! On PostgreSQL the fenced `UPDATE` takes the row lock first, so a competing claim either
//! committed before it (the token moved: no row matches) or waits for it (and then sees a
//! renewed lease: nothing to claim). SQLite's single writer gives the same order.

use roster_platform::db::{Backend, Conn, MigrationSql, params};
use roster_platform::stored_text::StoredText;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::{Direction, Failure, Instance, ListFilter, NewWorkflow, State};

/// The engine's tables, applied in order by the service that embeds the engine.
pub const MIGRATIONS: [MigrationSql; 3] = [TABLES, OPERATOR_CONTROL, TRACE_CONTEXT];

const TABLES: MigrationSql = MigrationSql {
    version: 100,
    description: "workflows",
    sql: r"
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    started_by TEXT NOT NULL,
    state TEXT NOT NULL,
    input TEXT NOT NULL,
    step_cursor BIGINT NOT NULL,
    steps_total BIGINT NOT NULL,
    current_step TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    last_error TEXT,
    due_at_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    lease_token BIGINT NOT NULL,
    result TEXT,
    failure TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX workflows_due ON workflows (due_at_ms) WHERE state IN ('running', 'compensating');
CREATE INDEX workflows_by_account ON workflows (account_id, id);
CREATE UNIQUE INDEX workflows_one_unfinished_per_subject ON workflows (subject)
    WHERE state IN ('running', 'compensating');

CREATE TABLE workflow_steps (
    workflow_id TEXT NOT NULL,
    step BIGINT NOT NULL,
    direction TEXT NOT NULL,
    name TEXT NOT NULL,
    output TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    lease_token BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, step, direction)
);
",
};

/// What operators' retry, resolve and cancel need (see `crate::control`).
const OPERATOR_CONTROL: MigrationSql = MigrationSql {
    version: 101,
    description: "workflow operator control",
    sql: r#"
ALTER TABLE workflows ADD COLUMN step_started_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN retried_at_ms BIGINT;
ALTER TABLE workflows ADD COLUMN failed_from TEXT;
ALTER TABLE workflows ADD COLUMN cancel_requested_by TEXT;
ALTER TABLE workflows ADD COLUMN resolution TEXT;
UPDATE workflows SET step_started_at_ms = updated_at_ms;
UPDATE workflows SET failed_from = CASE WHEN failure LIKE '%"message":"undoing step%' THEN 'compensating'
    ELSE 'running' END WHERE state = 'failed';
"#,
};

/// The trace the workflow's steps belong to: the `traceparent` of the RPC that started it.
const TRACE_CONTEXT: MigrationSql = MigrationSql {
    version: 102,
    description: "workflow trace context",
    sql: "ALTER TABLE workflows ADD COLUMN trace_parent TEXT;",
};

/// The PostgreSQL channel that wakes other replicas' workers.
pub(crate) const CHANNEL: &str = "roster_workflows";

pub(crate) const COLUMNS: &str = "id, kind, account_id, subject, started_by, state, input, step_cursor, steps_total, \
    current_step, attempt, last_error, due_at_ms, lease_token, result, failure, step_started_at_ms, retried_at_ms, \
    failed_from, cancel_requested_by, resolution, created_at_ms, updated_at_ms, finished_at_ms, trace_parent";

const RUNNABLE: &str = "state IN ('running', 'compensating') AND due_at_ms <= $3 \
    AND (lease_until_ms IS NULL OR lease_until_ms <= $3)";

pub(crate) struct Start<'a> {
    pub id: &'a str,
    pub new: &'a NewWorkflow,
    pub steps_total: i64,
    pub first_step: &'a str,
    pub now_ms: i64,
    /// Set when the starting worker drives the workflow itself (no claim needed).
    pub lease: Option<Lease<'a>>,
    pub trace_parent: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease<'a> {
    pub owner: &'a str,
    pub until_ms: i64,
}

/// The token of a workflow leased as it starts: what the first claim would have set.
pub(crate) const FIRST_LEASE_TOKEN: i64 = 1;

pub(crate) async fn insert(tx: &mut Conn, backend: Backend, start: Start<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workflows (id, kind, account_id, subject, started_by, state, input, step_cursor, steps_total, \
         current_step, attempt, due_at_ms, lease_owner, lease_until_ms, lease_token, step_started_at_ms, \
         created_at_ms, updated_at_ms, trace_parent) VALUES ($1, $2, $3, $4, $5, 'running', $6, 0, $7, $8, 0, $9, \
         $10, $11, $12, $9, $9, $9, $13)",
    )
    .bind(start.id)
    .bind(start.new.kind)
    .bind(&start.new.account_id)
    .bind(&start.new.subject)
    .bind(&start.new.started_by)
    .bind(start.new.input.to_string())
    .bind(start.steps_total)
    .bind(start.first_step)
    .bind(start.now_ms)
    .bind(start.lease.map(|lease| lease.owner))
    .bind(start.lease.map(|lease| lease.until_ms))
    .bind(if start.lease.is_some() { FIRST_LEASE_TOKEN } else { 0 })
    .bind(start.trace_parent)
    .execute(&mut *tx)
    .await?;
    // A leased start is this worker's to drive: no other replica needs waking.
    if backend == Backend::Postgres && start.lease.is_none() {
        // Delivered at commit, so other replicas never wake for a rolled-back start.
        sqlx::query(&format!("NOTIFY {CHANNEL}")).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Brings an unfinished workflow's due time forward to `now_ms` (see `Engine::due_now`).
pub(crate) async fn due_now(tx: &mut Conn, backend: Backend, id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE workflows SET due_at_ms = $1 WHERE id = $2 AND state IN ('running', 'compensating') \
         AND due_at_ms > $1",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {CHANNEL}")).execute(&mut *tx).await?;
    }
    Ok(())
}

/// The unfinished workflow working on `subject`, if there is one.
pub(crate) async fn unfinished_on(tx: &mut Conn, subject: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM workflows WHERE subject = $1 AND state IN ('running', 'compensating') LIMIT 1")
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await
}

/// Claims one runnable instance: due, unfinished, and not leased (or its lease expired).
pub(crate) async fn claim<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    backend: Backend,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<Instance>, sqlx::Error> {
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE workflows SET lease_owner = $1, lease_until_ms = $2, lease_token = lease_token + 1, \
         updated_at_ms = $3 \
         WHERE id = (SELECT id FROM workflows WHERE {RUNNABLE} ORDER BY due_at_ms, id LIMIT 1 {skip_locked}) \
         AND {RUNNABLE} RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql).bind(worker).bind(lease_until_ms).bind(now_ms).fetch_optional(writer).await?;
    row.map(|row| instance(&row)).transpose()
}

/// The earliest instant something becomes runnable, for the worker's sleep.
pub(crate) async fn next_due<'e>(
    reader: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(CASE WHEN lease_until_ms IS NULL OR lease_until_ms < due_at_ms THEN due_at_ms \
         ELSE lease_until_ms END) FROM workflows WHERE state IN ('running', 'compensating')",
    )
    .fetch_one(reader)
    .await
}

pub(crate) async fn get<'e>(
    reader: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1")).bind(id).fetch_optional(reader).await?;
    row.map(|row| instance(&row)).transpose()
}

/// Those of `ids` that exist, in no particular order; one query for all.
pub(crate) async fn get_many<'e>(
    reader: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ids: &[String],
) -> Result<Vec<Instance>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} FROM workflows WHERE id IN ({})", params(1, ids.len()));
    let rows = ids.iter().fold(sqlx::query(&sql), |query, id| query.bind(id)).fetch_all(reader).await?;
    rows.iter().map(instance).collect()
}

/// Newest first; `before` is the last id of the previous page.
pub(crate) async fn list<'e>(
    reader: impl sqlx::Executor<'e, Database = sqlx::Any>,
    filter: &ListFilter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Instance>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM workflows WHERE ($1 = '' OR account_id = $1) AND ($2 = '' OR kind = $2) \
         AND ($3 = '' OR state = $3) AND ($4 = '' OR id < $4) ORDER BY id DESC LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(filter.account_id.clone().unwrap_or_default())
        .bind(filter.kind.clone().unwrap_or_default())
        .bind(filter.state.map(State::as_str).unwrap_or_default())
        .bind(before.unwrap_or_default())
        .bind(limit)
        .fetch_all(reader)
        .await?;
    rows.iter().map(instance).collect()
}

/// Forward outputs by step number (compensation outputs are kept but not read back).
pub(crate) async fn outputs<'e>(
    reader: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
    steps: usize,
) -> Result<Vec<Option<Value>>, sqlx::Error> {
    let rows = sqlx::query("SELECT step, output FROM workflow_steps WHERE workflow_id = $1 AND direction = 'forward'")
        .bind(id)
        .fetch_all(reader)
        .await?;
    let mut outputs = vec![None; steps];
    for row in rows {
        let step: i64 = row.try_get("step")?;
        let text: String = row.try_get("output")?;
        if let Some(slot) = usize::try_from(step).ok().and_then(|s| outputs.get_mut(s)) {
            *slot = Some(serde_json::from_str(&text).map_err(|e| corrupt("step output", &e.to_string()))?);
        }
    }
    Ok(outputs)
}

/// A completed step's record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub step: i64,
    pub direction: Direction,
    pub name: &'static str,
    pub output: Value,
}

/// Where the instance goes after steps complete.
pub(crate) struct Advance<'a> {
    pub id: &'a str,
    pub token: i64,
    /// The steps completed since the last write, oldest first.
    pub records: &'a [Record],
    pub next_state: State,
    pub next_cursor: i64,
    pub next_step_name: &'a str,
    /// When the step at the new cursor began (its retry window starts there).
    pub step_started_at_ms: i64,
    pub now_ms: i64,
    pub lease_until_ms: i64,
}

/// What a fenced write found.
pub(crate) enum Fenced<T> {
    Written(T),
    /// Another worker claimed the instance since: nothing was written.
    Lost,
}

/// Records completed steps and moves the cursor, renewing the lease. Returns who asked to
/// cancel meanwhile, if anyone did.
pub(crate) async fn advance(tx: &mut Conn, a: Advance<'_>) -> Result<Fenced<Option<String>>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE workflows SET state = $1, step_cursor = $2, current_step = $3, attempt = 0, last_error = NULL, \
         lease_until_ms = $4, updated_at_ms = $5, step_started_at_ms = $6 WHERE id = $7 AND lease_token = $8 \
         RETURNING cancel_requested_by",
    )
    .bind(a.next_state.as_str())
    .bind(a.next_cursor)
    .bind(a.next_step_name)
    .bind(a.lease_until_ms)
    .bind(a.now_ms)
    .bind(a.step_started_at_ms)
    .bind(a.id)
    .bind(a.token)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(Fenced::Lost) };
    let cancel_requested_by: Option<String> = row.try_get("cancel_requested_by")?;
    for record in a.records {
        sqlx::query(
            "INSERT INTO workflow_steps (workflow_id, step, direction, name, output, recorded_at_ms, lease_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.id)
        .bind(record.step)
        .bind(record.direction.as_str())
        .bind(record.name)
        .bind(record.output.to_string())
        .bind(a.now_ms)
        .bind(a.token)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Fenced::Written(cancel_requested_by))
}

/// Turns to compensation after a refusal. False when fenced out.
pub(crate) async fn begin_compensation(
    tx: &mut Conn,
    id: &str,
    token: i64,
    failure: &Failure,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE workflows SET state = 'compensating', failure = $1, attempt = 0, last_error = NULL, \
         updated_at_ms = $2, step_started_at_ms = $2 WHERE id = $3 AND lease_token = $4",
    )
    .bind(failure_text(failure))
    .bind(now_ms)
    .bind(id)
    .bind(token)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Gives the lease up until `due_at_ms` (a retry after backoff, or a timer). False when fenced.
pub(crate) async fn park<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
    token: i64,
    due_at_ms: i64,
    attempt: i64,
    last_error: Option<&str>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE workflows SET due_at_ms = $1, attempt = $2, last_error = $3, lease_owner = NULL, \
         lease_until_ms = NULL, updated_at_ms = $4 WHERE id = $5 AND lease_token = $6",
    )
    .bind(due_at_ms)
    .bind(attempt)
    .bind(last_error)
    .bind(now_ms)
    .bind(id)
    .bind(token)
    .execute(executor)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Ends the instance; a failed one remembers the state it failed in. False when fenced out.
/// On the pool, or inside the transaction that records the last step.
pub(crate) async fn finish<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
    token: i64,
    state: State,
    result: Option<&Value>,
    failure: Option<&Failure>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE workflows SET failed_from = CASE WHEN $1 = 'failed' THEN state END, state = $1, result = $2, \
         failure = $3, lease_owner = NULL, lease_until_ms = NULL, last_error = NULL, updated_at_ms = $4, \
         finished_at_ms = $4 WHERE id = $5 AND lease_token = $6",
    )
    .bind(state.as_str())
    .bind(result.map(Value::to_string))
    .bind(failure.map(failure_text))
    .bind(now_ms)
    .bind(id)
    .bind(token)
    .execute(executor)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Hands back every lease this worker holds (graceful shutdown), so another replica can
/// continue at once instead of waiting for expiry.
pub(crate) async fn release_leases<'e>(
    writer: impl sqlx::Executor<'e, Database = sqlx::Any>,
    worker: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1")
        .bind(worker)
        .execute(writer)
        .await?
        .rows_affected())
}

/// Deletes workflows that finished before `before_ms`, with their step records. Unfinished
/// ones are never deleted, however old. Returns how many workflows went.
pub async fn prune_finished(db: &roster_platform::db::Database, before_ms: i64) -> Result<u64, sqlx::Error> {
    // A slice at a time (the oldest first), each in its own short transaction, so a backlog
    // never holds SQLite's single writer for long. The slice is the same in both statements:
    // workflows finished before `before_ms` do not change meanwhile.
    const SLICE: &str = "SELECT id FROM workflows WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1 \
                         ORDER BY id LIMIT $2";
    let slice = roster_platform::db::DELETE_SLICE;
    let mut gone = 0;
    loop {
        let mut tx = db.begin().await?;
        sqlx::query(&format!("DELETE FROM workflow_steps WHERE workflow_id IN ({SLICE})"))
            .bind(before_ms)
            .bind(slice)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query(&format!("DELETE FROM workflows WHERE id IN ({SLICE})"))
            .bind(before_ms)
            .bind(slice)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        gone += removed;
        if removed < slice.unsigned_abs() {
            return Ok(gone);
        }
        tokio::task::yield_now().await;
    }
}

pub(crate) fn failure_text(failure: &Failure) -> String {
    serde_json::to_string(failure).unwrap_or_default()
}

pub(crate) fn corrupt(what: &str, detail: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("corrupt workflow {what}: {detail}").into())
}

pub(crate) fn instance(row: &AnyRow) -> Result<Instance, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let failed_from: Option<String> = row.try_get("failed_from")?;
    let resolution: Option<String> = row.try_get("resolution")?;
    let input: String = row.try_get("input")?;
    let result: Option<String> = row.try_get("result")?;
    let failure: Option<String> = row.try_get("failure")?;
    Ok(Instance {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        account_id: row.try_get("account_id")?,
        subject: row.try_get("subject")?,
        started_by: row.try_get("started_by")?,
        state: State::from_str_opt(&state).ok_or_else(|| corrupt("state", &state))?,
        input: serde_json::from_str(&input).map_err(|e| corrupt("input", &e.to_string()))?,
        cursor: row.try_get("step_cursor")?,
        steps_total: row.try_get("steps_total")?,
        current_step: row.try_get("current_step")?,
        attempt: row.try_get("attempt")?,
        last_error: row.try_get("last_error")?,
        due_at_ms: row.try_get("due_at_ms")?,
        lease_token: row.try_get("lease_token")?,
        result: result.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| corrupt("result", &e.to_string()))?,
        failure: failure
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| corrupt("failure", &e.to_string()))?,
        step_started_at_ms: row.try_get("step_started_at_ms")?,
        retried_at_ms: row.try_get("retried_at_ms")?,
        failed_from: failed_from
            .map(|f| State::from_str_opt(&f).ok_or_else(|| corrupt("failed_from", &f)))
            .transpose()?,
        cancel_requested_by: row.try_get("cancel_requested_by")?,
        resolution: resolution
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("resolution", &e.to_string()))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        trace_parent: row.try_get("trace_parent")?,
    })
}
