//! What a workflow instance is, as stored and as the Operations API shows it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{EnumString, IntoStaticStr, VariantArray};

/// Where an instance is in its life. All but the first two are final; an operator can take a
/// failed one back to running ([`crate::Engine::retry`]) or close it as resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum State {
    Running,
    Compensating,
    Completed,
    Compensated,
    Failed,
    /// Failed, then closed by an operator who set things right by hand.
    Resolved,
}

impl State {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running | Self::Compensating)
    }
}

/// Whether a recorded step result came from doing the step or undoing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Direction {
    Forward,
    Compensate,
}

/// Why a workflow did not complete: a stable reason, the product's numeric code where it has
/// one, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// How an operator closed a failed instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub note: String,
    pub by: String,
    pub at_ms: i64,
}

/// What [`crate::Engine::start`] inserts.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub kind: &'static str,
    /// The account the workflow acts in; operations are listed and authorised by it.
    pub account_id: String,
    /// The object it changes (a user, an account). At most one unfinished workflow per
    /// subject, so two sagas never work on one user at once.
    pub subject: String,
    /// The principal that asked, for audit and for letting them read the operation.
    pub started_by: String,
    pub input: Value,
}

/// One workflow instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub kind: String,
    pub account_id: String,
    pub subject: String,
    pub started_by: String,
    pub state: State,
    pub input: Value,
    /// Running: the next step to do. Compensating: steps below this are still to be undone.
    pub cursor: i64,
    pub steps_total: i64,
    /// The step in progress (or the last one, once final), by name.
    pub current_step: String,
    /// Transient failures of the current step so far.
    pub attempt: i64,
    pub last_error: Option<String>,
    pub due_at_ms: i64,
    pub lease_token: i64,
    pub result: Option<Value>,
    pub failure: Option<Failure>,
    /// When the current step first ran; an operator's retry must come while the other
    /// service still remembers its request id ([`roster_platform::saga_retry`]).
    pub step_started_at_ms: i64,
    /// When an operator last retried it; automatic retries get a fresh window from then.
    pub retried_at_ms: Option<i64>,
    /// Failed: the state it failed in, which a retry returns it to.
    pub failed_from: Option<State>,
    /// Who asked to cancel it; honoured before the next step starts.
    pub cancel_requested_by: Option<String>,
    pub resolution: Option<Resolution>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The `traceparent` of the RPC that started it: its steps are spans of that trace.
    pub trace_parent: Option<String>,
    pub finished_at_ms: Option<i64>,
}

/// Filters for listing; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub account_id: Option<String>,
    pub kind: Option<String>,
    pub state: Option<State>,
}
