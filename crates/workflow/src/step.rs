//! The contract between the engine and a workflow definition: steps, their context, and
//! what a step may answer.

use futures_util::future::BoxFuture;
use roster_platform::db::{Database, Tx};
use roster_platform::stored_text::StoredText;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{Direction, Failure};

/// What a step achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the value is persisted and later steps read it with [`StepCtx::output`].
    Done(Value),
    /// Not yet: run this step again at this instant (ms since the epoch). A durable timer.
    WaitUntil(i64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The other side did not answer (unavailable, deadline, a lost connection) or the
    /// database hiccupped: retried with backoff for the retry window, then the workflow fails.
    #[error("transient: {0}")]
    Transient(String),
    /// A business refusal: before the pivot the workflow compensates; after it, it fails.
    #[error("refused: {} ({})", .0.reason, .0.message)]
    Refused(Failure),
}

impl From<sqlx::Error> for StepError {
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(format!("database: {error}"))
    }
}

pub type StepFuture<'a> = BoxFuture<'a, Result<Outcome, StepError>>;

/// A workflow definition. Steps are numbered from 0 in the order of [`Workflow::steps`].
pub trait Workflow: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn steps(&self) -> &'static [&'static str];
    /// The first step whose refusal no longer compensates: a refusal of an earlier step
    /// undoes the completed steps before it; from here on a refusal fails the workflow (a bug,
    /// or a changed world an operator must look at). Put it right after the step that is the
    /// point of no return, so that step's own refusal (it took no effect) still compensates.
    /// 0 for a workflow that only moves forward.
    fn pivot(&self) -> usize;
    /// True for a step that writes only this database, through [`StepCtx::tx`], and calls no
    /// other service. When such a step is the point of no return (right before the pivot),
    /// the engine checks for a cancel in the step's own transaction and rolls the step back
    /// if one came, instead of a commit of its own before the step.
    fn is_local(&self, step: usize) -> bool {
        let _ = step;
        false
    }
    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a>;
    /// Undoes a completed step before the pivot; its forward output is in `ctx.output(step)`.
    fn compensate<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a>;
    /// The operation's result once every step is done.
    fn result(&self, ctx: &StepCtx) -> Value;
}

/// What a running step sees: the workflow's input, earlier steps' outputs, the time, a
/// derived request id, and (lazily) a transaction on the engine's database.
pub struct StepCtx {
    pub workflow_id: String,
    pub account_id: String,
    pub now_ms: i64,
    pub(crate) step: usize,
    pub(crate) direction: Direction,
    pub(crate) input: Value,
    pub(crate) outputs: Vec<Option<Value>>,
    pub(crate) db: Database,
    pub(crate) engine: crate::Engine,
    /// Behind a mutex only so `&StepCtx` is `Sync` (steps hold it across awaits); it is
    /// reached through `&mut self` and never locked.
    pub(crate) tx: std::sync::Mutex<Option<Tx>>,
}

impl std::fmt::Debug for StepCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCtx")
            .field("workflow_id", &self.workflow_id)
            .field("step", &self.step)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl StepCtx {
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.input.clone()).map_err(|e| corrupt("input", &e))
    }

    /// The persisted output of an earlier forward step; `None` if it has not run.
    pub fn output<T: DeserializeOwned>(&self, step: usize) -> Result<Option<T>, StepError> {
        match self.outputs.get(step).cloned().flatten() {
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| corrupt("step output", &e)),
            None => Ok(None),
        }
    }

    /// The request id for this step's call to another service: the same every time this
    /// step runs (retries, a crash and a takeover), different for every other step.
    pub fn request_id(&self) -> String {
        format!("wf:{}:{}:{}", self.workflow_id, self.step, self.direction.as_str())
    }

    /// A request id for the `part`-th of several calls one step makes.
    pub fn request_id_for(&self, part: &str) -> String {
        format!("{}:{part}", self.request_id())
    }

    /// The engine running this step, for a workflow that starts others and follows them (a
    /// bulk operation runs one saga per row). What it starts in transactions of its own
    /// commits there, outside this step's record and its lease fence, so guard such writes.
    pub fn engine(&self) -> &crate::Engine {
        &self.engine
    }

    /// A transaction on the engine's database. The engine commits it together with this
    /// step's record (fenced by the lease), or rolls it back if the step does not complete.
    /// A step that holds it must not wait on another service.
    pub async fn tx(&mut self) -> Result<&mut Tx, StepError> {
        let slot = self.tx.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.db.begin().await?);
        }
        Ok(slot.as_mut().expect("just set"))
    }
}

fn corrupt(what: &str, error: &serde_json::Error) -> StepError {
    StepError::Refused(Failure {
        reason: "WORKFLOW_DATA_CORRUPT".into(),
        code: None,
        message: format!("stored workflow {what} does not parse: {error}"),
    })
}

impl StepCtx {
    /// The step's transaction, if it opened one; the engine commits it with the record.
    pub(crate) fn take_tx(&mut self) -> Option<Tx> {
        self.tx.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}
