//! Durable sagas on sqlx, for both of Roster's backends.
//!
//! A workflow is a named list of steps run in order by whichever worker holds its lease:
//!
//! - **Started in the caller's transaction** ([`Engine::start`] runs on the caller's
//!   `&mut Conn`, a transaction), so a domain
//!   change and the workflow that finishes it commit together or not at all.
//! - **Each step's result is persisted** (table `workflow_steps`), before the next step runs
//!   or with the next step's commit (see "Few commits").
//!   A step that calls another service sends [`StepCtx::request_id`], derived from (workflow,
//!   step, direction), so a step replayed after a crash has one effect on the other side.
//!   A step that writes this database does so through [`StepCtx::tx`]; the engine records the
//!   step in that same transaction, so the write and its record commit together.
//! - **Compensation before the pivot, forward after it.** A business refusal
//!   ([`StepError::Refused`]) before [`Workflow::pivot`] undoes the completed steps in reverse
//!   order and ends `compensated`; from the pivot on the workflow only moves forward.
//! - **Transient errors retry** with exponential backoff and equal jitter ([`backoff`]),
//!   before and after the pivot, for the retry window; then the workflow fails, since the
//!   step's effect is unknown ([`roster_platform::saga_retry`] bounds how long one request id
//!   is sent).
//! - **Operators repair** ([`ControlError`]): retry a failed workflow from its failed step,
//!   resolve it with a note, or cancel one before its point of no return.
//! - **Durable timers**: a step returns [`Outcome::WaitUntil`] and runs again at that instant.
//! - **Few commits.** A workflow started with [`Engine::start_leased`] is leased to the
//!   starting worker in the caller's own transaction, so its claim costs no commit. A step
//!   that writes this database commits with its record; a step on another service has its
//!   record written with the next write (a crash before then runs it again under the same
//!   request id). Right before a point of no return a cancel must be seen: that step's own
//!   transaction checks for it if the step is local ([`Workflow::is_local`]); otherwise the
//!   records are written first. The last step's commit also ends the workflow.
//! - **Leases with fencing.** Workers claim due workflows by setting a lease and bumping
//!   `lease_token` (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite's single writer). Every later
//!   write names the token it claimed with, so a worker that was paused past its lease, and
//!   lost the workflow to another, writes nothing: its update matches no row.
//! - **Prompt wake-ups**: an in-process signal on this replica, PostgreSQL `NOTIFY` for the
//!   others, and polling as the fallback.
//! - **Metrics** ([`Metrics`]) count claims, steps, retries, compensations, outcomes and
//!   fenced writes.
//!
//! Why not a maintained crate: `underway` and `sqlxmq` are PostgreSQL-only, so the embedded
//! SQLite default could not run sagas; `apalis` has SQLite and PostgreSQL storages, but each
//! is its own typed pool (no start inside our `sqlx::Any` transaction), its jobs are single
//! functions (no persisted per-step results or compensation), and its lease has no fencing
//! token. Roster needs all of that, so the engine is built here and kept small.
#![forbid(unsafe_code)]

/// Retry delays, shared with the rest of Roster.
pub use roster_platform::backoff;
mod control;
mod engine;
mod metrics;
mod model;
mod step;
mod store;

pub use control::{ControlError, NotCancellable};
pub use engine::{Engine, EngineConfig, Faults, StartError, Started};
pub use metrics::{Metrics, MetricsSnapshot};
pub use model::{Direction, Failure, Instance, ListFilter, NewWorkflow, Resolution, State};
pub use step::{Outcome, StepCtx, StepError, StepFuture, Workflow};
pub use store::{MIGRATIONS, prune_finished};
