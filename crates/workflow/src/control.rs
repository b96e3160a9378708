//! What operators do to instances the engine cannot finish alone: retry a failed one from the
//! step that failed, close a failed one as resolved, and cancel one that has not reached its
//! point of no return. Each runs in the caller's transaction (so the audit row and the
//! idempotency record commit with it); call [`Engine::wake`] after the commit.
//!
//! None of them takes a worker's lease away. A cancel is a request the worker honours before
//! the next step starts (see the engine), because a step in flight may already have taken
//! effect on the other service, and only finishing it tells.

use std::time::Duration;

use roster_platform::db::{Conn, is_unique_violation};
use roster_platform::stored_text::StoredText;

use crate::engine::Engine;
use crate::model::{Instance, Resolution, State};
use crate::store::{self, COLUMNS};

/// Why an instance cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCancellable {
    #[error("this kind of operation only moves forward")]
    ForwardOnly,
    #[error("it has passed its point of no return (step {step})")]
    PastPointOfNoReturn { step: String },
    #[error("it is already undoing its steps")]
    Compensating,
    #[error("it has already finished ({})", .0.as_str())]
    Finished(State),
}

/// Why an operator's request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no such operation")]
    NotFound,
    #[error("only a failed operation can be retried or resolved; this one is {}", .0.as_str())]
    NotFailed(State),
    #[error("the operation cannot be cancelled: {0}")]
    NotCancellable(NotCancellable),
    /// Re-running the step now could outlast the other service's memory of its request id,
    /// so it might be applied twice.
    #[error(
        "step {step} first ran too long ago to be retried safely (request ids are kept {} h); \
         check its effect by hand and resolve the operation",
        .retention.as_secs() / 3_600
    )]
    RetryTooLate { step: String, retention: Duration },
    #[error("operation {operation_id} is working on the same subject")]
    Busy { operation_id: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl Engine {
    async fn locked(&self, tx: &mut Conn, id: &str) -> Result<Instance, ControlError> {
        let lock = if self.backend_is_postgres() { " FOR UPDATE" } else { "" };
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1{lock}"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        row.as_ref().map(store::instance).transpose()?.ok_or(ControlError::NotFound)
    }

    /// Takes a failed instance back to where it failed (doing or undoing steps), at the step
    /// that failed, with a fresh window of automatic retries. The step sends the request id
    /// it sent before, so it takes effect at most once.
    pub async fn retry(&self, tx: &mut Conn, id: &str) -> Result<Instance, ControlError> {
        let instance = self.locked(tx, id).await?;
        let resume = match (instance.state, instance.failed_from) {
            (State::Failed, Some(from)) => from,
            (state, _) => return Err(ControlError::NotFailed(state)),
        };
        let now = self.now();
        let retry = self.config().retry;
        if !retry.may_retry_by_hand(instance.step_started_at_ms, now) {
            return Err(ControlError::RetryTooLate {
                step: instance.current_step,
                retention: retry.idempotency_retention(),
            });
        }
        if let Some(operation_id) = store::unfinished_on(tx, &instance.subject).await? {
            return Err(ControlError::Busy { operation_id });
        }
        let row = sqlx::query(&format!(
            "UPDATE workflows SET state = $2, failed_from = NULL, failure = NULL, attempt = 0, last_error = NULL, \
             retried_at_ms = $3, due_at_ms = $3, finished_at_ms = NULL, lease_owner = NULL, lease_until_ms = NULL, \
             cancel_requested_by = NULL, updated_at_ms = $3 WHERE id = $1 AND state = 'failed' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(resume.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                ControlError::Busy { operation_id: String::new() }
            } else {
                ControlError::Db(error)
            }
        })?;
        self.changed(row.as_ref(), instance.state)
    }

    /// Closes a failed instance as resolved: someone set things right by hand, and `note`
    /// says what they did.
    pub async fn resolve(&self, tx: &mut Conn, id: &str, note: &str, by: &str) -> Result<Instance, ControlError> {
        let instance = self.locked(tx, id).await?;
        if instance.state != State::Failed {
            return Err(ControlError::NotFailed(instance.state));
        }
        let resolution = Resolution { note: note.to_owned(), by: by.to_owned(), at_ms: self.now() };
        let text = serde_json::to_string(&resolution).map_err(|e| store::corrupt("resolution", &e.to_string()))?;
        let row = sqlx::query(&format!(
            "UPDATE workflows SET state = 'resolved', resolution = $2, updated_at_ms = $3 \
             WHERE id = $1 AND state = 'failed' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(text)
        .bind(resolution.at_ms)
        .fetch_optional(&mut *tx)
        .await?;
        self.changed(row.as_ref(), instance.state)
    }

    /// Asks a running instance to stop before its point of no return; the worker then undoes
    /// the steps done so far and the instance ends compensated (`OPERATION_CANCELLED`).
    /// Refused once the step that is the point of no return may have started. Asking again is
    /// harmless; the first asker is kept.
    pub async fn cancel(&self, tx: &mut Conn, id: &str, by: &str) -> Result<Instance, ControlError> {
        let instance = self.locked(tx, id).await?;
        let pivot = self.workflow(&instance.kind).map_or(0, |w| w.pivot());
        // Steps below `pivot - 1` can be undone; the one at `pivot - 1` is the point of no
        // return. The cursor must be below it, so no worker can be running it: the worker
        // checks for a cancel when it records a step, in the same row update.
        let last_cancellable = i64::try_from(pivot).unwrap_or(0) - 2;
        let why = match instance.state {
            State::Running if pivot == 0 => Some(NotCancellable::ForwardOnly),
            State::Running if instance.cursor > last_cancellable => {
                Some(NotCancellable::PastPointOfNoReturn { step: instance.current_step.clone() })
            }
            State::Running => None,
            State::Compensating => Some(NotCancellable::Compensating),
            done => Some(NotCancellable::Finished(done)),
        };
        if let Some(why) = why {
            return Err(ControlError::NotCancellable(why));
        }
        let now = self.now();
        let row = sqlx::query(&format!(
            "UPDATE workflows SET cancel_requested_by = COALESCE(cancel_requested_by, $2), \
             due_at_ms = CASE WHEN due_at_ms > $3 THEN $3 ELSE due_at_ms END, updated_at_ms = $3 \
             WHERE id = $1 AND state = 'running' AND step_cursor <= $4 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(by)
        .bind(now)
        .bind(last_cancellable)
        .fetch_optional(&mut *tx)
        .await?;
        self.changed(row.as_ref(), instance.state)
    }

    /// The updated instance. The guarded update cannot miss after the checks above (the row
    /// lock on PostgreSQL, the single writer on SQLite); if it did, the state it was in says why.
    fn changed(&self, row: Option<&sqlx::any::AnyRow>, was: State) -> Result<Instance, ControlError> {
        row.map(store::instance).transpose()?.ok_or(ControlError::NotFailed(was))
    }
}
