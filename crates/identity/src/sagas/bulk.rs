//! The bulk removal workflows (SPEC R14, R25): `bulk.deactivate`, `bulk.unlink` and
//! `bulk.delete`. One step, run again and again: each run works for up to [`PASS`], keeping up
//! to [`ROWS_AT_ONCE`] rows' single-user sagas in flight, then records what ended and asks to
//! run again at once. Committing every pass keeps the lease (a pass is a quarter of it at most),
//! lets other workflows have the worker, and shows progress.
//!
//! A row is started by `bulk_rows::start_rows` in a transaction that claims it, so it runs
//! exactly once, even when a crash loses a pass's bookkeeping: the next pass reads the row as
//! running and follows its saga. A row's outcome is its saga's: SUCCEEDED, or the refusal
//! that a single-user call would have got. One row's failure never touches another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use roster_platform::db::Database;
use roster_platform::fair::FairShare;
use roster_platform::stored_text::StoredText;
use roster_workflow::{Engine, Failure, Outcome, State, StepCtx, StepError, StepFuture, Workflow};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use serde::{Deserialize, Serialize};

use super::bulk_rows::{self, RowStart};
use super::{Licensing, dry_run, refused};
use crate::domain::DomainError;
use crate::domain::bulk::BulkAction;
use crate::domain::values::AccountId;
use crate::effects::{self, Ctx, Origin};
use crate::store::bulk::{self as rows, Outcome as RowOutcome, RowState, StoredRow};

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

/// Rows whose sagas are in flight at once, per bulk operation; rows are started in batches of
/// up to this many, one commit each.
pub const ROWS_AT_ONCE: i64 = 64;
/// The same while anyone but the starter is calling: the bulk run then takes a smaller share of
/// the cores and the database (and of SQLite's one writer, in shorter commits), so the other
/// accounts' calls stay fast (issue 23's noisy neighbour); alone it goes at full speed.
pub const ROWS_BESIDE_OTHERS: i64 = 8;
/// How long one run of the step works before it records progress and yields the worker; never
/// more than a quarter of the lease, by the engine's clock as well as the wall's, so the pass
/// records before its lease could run out.
const PASS: Duration = Duration::from_secs(2);
/// How often a pass looks at its rows' sagas when no change is announced (sagas driven by
/// another replica are not announced here).
const POLL: Duration = Duration::from_millis(100);

pub struct BulkRemoval {
    action: BulkAction,
    /// For dry runs' previews.
    licensing: Licensing,
    /// Who else is calling, to give way to.
    fair: Arc<FairShare>,
}

impl BulkRemoval {
    pub fn new(action: BulkAction, licensing: Licensing, fair: Arc<FairShare>) -> Self {
        Self { action, licensing, fair }
    }
}

impl Workflow for BulkRemoval {
    fn kind(&self) -> &'static str {
        self.action.operation_kind()
    }

    fn steps(&self) -> &'static [&'static str] {
        &["run_rows"]
    }

    fn pivot(&self) -> usize {
        0
    }

    fn run<'a>(&'a self, _step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let run: BulkRun = ctx.input()?;
            let pass = Pass::new(ctx, run, self.licensing.clone(), self.fair.clone()).await?;
            pass.work().await?.record(ctx).await
        })
    }

    fn compensate<'a>(&'a self, _step: usize, _ctx: &'a mut StepCtx) -> StepFuture<'a> {
        // Forward only: each row's saga compensates itself.
        Box::pin(async { Ok(Outcome::Done(Value::Null)) })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        ctx.output::<Value>(0).ok().flatten().unwrap_or(Value::Null)
    }
}

/// One run of the step.
struct Pass {
    engine: Engine,
    licensing: Licensing,
    fair: Arc<FairShare>,
    operation_id: String,
    run: BulkRun,
    /// Where the run acts and what it does, as its input names them.
    account: AccountId,
    action: BulkAction,
    row_ctx: Ctx,
    changes: broadcast::Receiver<String>,
}

/// What a pass saw end, to be recorded with its commit.
struct Ended {
    outcomes: Vec<(i64, RowState, RowOutcome)>,
    cancelled: bool,
    finished: bool,
    validate_only: bool,
    now_ms: i64,
    operation_id: String,
}

impl Pass {
    async fn new(ctx: &StepCtx, run: BulkRun, licensing: Licensing, fair: Arc<FairShare>) -> Result<Self, StepError> {
        let row_ctx = run.origin.ctx(ctx)?;
        let (account, action) = run_target(&run).map_err(super::step_failed)?;
        let engine = ctx.engine().clone();
        let changes = engine.subscribe();
        Ok(Self {
            engine,
            licensing,
            fair,
            operation_id: ctx.workflow_id.clone(),
            run,
            account,
            action,
            row_ctx,
            changes,
        })
    }

    async fn work(mut self) -> Result<Ended, StepError> {
        let began = tokio::time::Instant::now();
        let budget = PASS.min(self.engine.lease() / 4);
        let budget_ms = i64::try_from(budget.as_millis()).unwrap_or(i64::MAX);
        let db = self.engine.database().clone();
        let mut ended = Ended {
            outcomes: Vec::new(),
            cancelled: false,
            finished: false,
            validate_only: self.run.validate_only,
            now_ms: self.row_ctx.now_ms,
            operation_id: self.operation_id.clone(),
        };
        // Rows this pass has settled but not yet recorded, and the last line it looked at.
        let mut settled: HashSet<i64> = HashSet::new();
        let mut cursor = 0;
        loop {
            let mut reader = db.reader().await?;
            let running = rows::list(&mut reader, &self.operation_id, Some(RowState::Running), 0, i64::MAX).await?;
            let running: Vec<_> = running.into_iter().filter(|row| !settled.contains(&row.line)).collect();
            let child_ids: Vec<String> = running.iter().filter_map(|row| row.child_id.clone()).collect();
            let children: HashMap<String, roster_workflow::Instance> =
                self.engine.get_many(&child_ids).await?.into_iter().map(|child| (child.id.clone(), child)).collect();
            let mut in_flight: i64 = 0;
            for row in running {
                match row.child_id.as_ref().and_then(|id| children.get(id)) {
                    Some(child) if child.state.is_final() => {
                        settled.insert(row.line);
                        ended.outcomes.push((row.line, RowState::Running, outcome_of(child)));
                    }
                    _ => in_flight += 1,
                }
            }
            let operation = rows::get(&mut reader, &self.operation_id).await?;
            ended.cancelled = operation.is_none_or(|op| op.cancel_requested_by.is_some());
            let mut more = false;
            if !ended.cancelled {
                let starter = self.row_ctx.principal.audit_name();
                let share = if self.fair.activity.others_than(&starter) { ROWS_BESIDE_OTHERS } else { ROWS_AT_ONCE };
                let room = (share - in_flight).max(0);
                let pending =
                    rows::list(&mut reader, &self.operation_id, Some(RowState::Pending), cursor, room + 1).await?;
                drop(reader);
                let room = usize::try_from(room).unwrap_or(0);
                more = pending.len() > room;
                let batch = &pending[..room.min(pending.len())];
                if let Some(last) = batch.last() {
                    cursor = last.line;
                    if self.run.validate_only {
                        ended.outcomes.extend(self.preview(&db, batch).await?);
                    } else {
                        in_flight += self.start(&db, batch, &mut ended).await?;
                    }
                }
            }
            if in_flight == 0 && !more {
                ended.finished = true;
                return Ok(ended);
            }
            if began.elapsed() >= budget || self.engine.now_ms() - self.row_ctx.now_ms >= budget_ms {
                return Ok(ended);
            }
            self.wait_for_a_change().await;
        }
    }

    /// Starts a batch of rows; returns how many started. Refusals are outcomes to record.
    async fn start(&self, db: &Database, batch: &[StoredRow], ended: &mut Ended) -> Result<i64, StepError> {
        let starts = bulk_rows::start_rows(
            db,
            &self.engine,
            &self.row_ctx,
            &self.account,
            self.action,
            &self.operation_id,
            batch,
        )
        .await
        .map_err(super::step_failed)?;
        let mut started = 0;
        for (line, start) in starts {
            match start {
                RowStart::Started => started += 1,
                RowStart::Refused(refusal) => ended.outcomes.push((line, RowState::Pending, refusal_outcome(&refusal))),
                RowStart::Taken => {}
            }
        }
        Ok(started)
    }

    /// A dry run's batch: identity's checks, then licensing's previews of the rows that pass,
    /// side by side. Nothing is started; a transient failure ends the pass unrecorded, and the
    /// step is retried.
    async fn preview(&self, db: &Database, batch: &[StoredRow]) -> Result<Vec<(i64, RowState, RowOutcome)>, StepError> {
        let checked = bulk_rows::check_rows(db, &self.engine, &self.row_ctx, &self.account, self.action, batch)
            .await
            .map_err(super::step_failed)?;
        let previews = checked.into_iter().map(|(line, checked)| async move {
            let outcome = match checked {
                Ok(checked) => match dry_run::preview(&self.licensing, &checked).await {
                    Ok(result) => RowOutcome {
                        state: RowState::Succeeded,
                        reason: None,
                        code: None,
                        message: None,
                        preview: Some(result.to_string()),
                    },
                    Err(StepError::Refused(failure)) => failure_outcome(failure),
                    Err(transient) => return Err(transient),
                },
                Err(refusal) => refusal_outcome(&refusal),
            };
            Ok((line, RowState::Pending, outcome))
        });
        futures_util::future::try_join_all(previews).await
    }

    /// Until some saga changes on this replica, or [`POLL`]. Every change announced by then
    /// is taken at once: one look at the rows serves them all.
    async fn wait_for_a_change(&mut self) {
        let _ = tokio::time::timeout(POLL, self.changes.recv()).await;
        while !matches!(
            self.changes.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

impl Ended {
    /// Records the outcomes (and, after a cancel, skips the rows not started) in the step's
    /// transaction, which the engine commits with the parking or the end, under the lease.
    async fn record(self, ctx: &mut StepCtx) -> Result<Outcome, StepError> {
        let tx = ctx.tx().await?;
        rows::finish(tx, &self.operation_id, &self.outcomes, self.now_ms).await?;
        if self.cancelled {
            rows::skip_pending(tx, &self.operation_id, self.now_ms).await?;
        }
        if !self.finished {
            return Ok(Outcome::WaitUntil(self.now_ms));
        }
        let counts = rows::counts(tx, &self.operation_id).await?;
        let count = |state| counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        Ok(Outcome::Done(json!({
            "total": total,
            "succeeded": count(RowState::Succeeded),
            "failed": count(RowState::Failed),
            "skipped": count(RowState::Skipped),
            "cancelled": self.cancelled,
            "validate_only": self.validate_only,
        })))
    }
}

/// A row's outcome from its saga's end.
fn outcome_of(child: &roster_workflow::Instance) -> RowOutcome {
    if child.state == State::Completed {
        return RowOutcome { state: RowState::Succeeded, reason: None, code: None, message: None, preview: None };
    }
    let failure = child.failure.clone();
    RowOutcome {
        state: RowState::Failed,
        reason: Some(failure.as_ref().map_or_else(|| child.state.as_str().to_uppercase(), |f| f.reason.clone())),
        code: failure.as_ref().and_then(|f| f.code.clone()),
        message: failure.map(|f| f.message),
        preview: None,
    }
}

/// A row refused as a call would be: the refusal's reason, code and sentence.
fn failure_outcome(failure: Failure) -> RowOutcome {
    RowOutcome {
        state: RowState::Failed,
        reason: Some(failure.reason),
        code: failure.code,
        message: Some(failure.message),
        preview: None,
    }
}

/// A row the single-user use case refused, as that call's refusal would read.
fn refusal_outcome(refusal: &crate::domain::DomainError) -> RowOutcome {
    match refused(refusal) {
        StepError::Refused(failure) => failure_outcome(failure),
        StepError::Transient(message) => RowOutcome {
            state: RowState::Failed,
            reason: Some("INTERNAL".into()),
            code: None,
            message: Some(message),
            preview: None,
        },
    }
}

/// Every bulk workflow.
pub fn all<'a>(licensing: &'a Licensing, fair: &'a Arc<FairShare>) -> impl Iterator<Item = BulkRemoval> + 'a {
    <BulkAction as strum::VariantArray>::VARIANTS
        .iter()
        .map(|action| BulkRemoval::new(*action, licensing.clone(), fair.clone()))
}

/// The account and action a bulk workflow's input names.
fn run_target(run: &BulkRun) -> effects::Result<(AccountId, BulkAction)> {
    let account = AccountId::parse(&run.account_id).map_err(|_| DomainError::AccountNotFound)?;
    let action =
        run.action.parse().map_err(|_| effects::Error::Internal(format!("unknown bulk action {:?}", run.action)))?;
    Ok((account, action))
}
