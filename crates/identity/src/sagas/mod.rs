//! The cross-service operations identity orchestrates as durable workflows
//! (`roster-workflow`): deactivate, reactivate, unlink, delete, accept an invitation, and
//! transfer ownership with phone licenses, the timers of an ownership request, and bulk
//! removal, which runs one of the user sagas per row.
//!
//! Each saga's use case (in `app`) refuses bad requests and makes its first local change in
//! the request's transaction, and starts the workflow in that same transaction, with the input
//! its definition here declares. A definition knows its steps; the local ones are plain
//! functions in `effects`, which know nothing of sagas, so imports run `app` -> `sagas` ->
//! `effects` and never back. Steps that
//! call licensing send the request id the engine derives from (workflow, step), so a replay
//! has one effect; local steps write through the step's transaction, which the engine
//! commits together with the step's record under the lease fence.

pub mod accept;
mod answers;
pub mod bulk;
mod bulk_rows;
pub mod dry_run;
pub mod licensing;
pub mod lifecycle;
pub mod ownership;
pub mod ownership_request;
mod reclaim_batch;
pub mod removal;

use std::sync::Arc;

use roster_workflow::{Failure, StepError, Workflow};

pub use licensing::Licensing;

use crate::domain::DomainError;
use crate::effects;

/// Every saga identity runs.
/// Every workflow; bulk runs give way while `fair` sees other callers.
pub fn all(licensing: &Licensing, fair: &Arc<roster_platform::fair::FairShare>) -> Vec<Arc<dyn Workflow>> {
    let singles: [Arc<dyn Workflow>; 7] = [
        Arc::new(lifecycle::Deactivate { licensing: licensing.clone() }),
        Arc::new(lifecycle::Reactivate { licensing: licensing.clone() }),
        Arc::new(removal::Removal::unlink(licensing.clone())),
        Arc::new(removal::Removal::delete(licensing.clone())),
        Arc::new(accept::Accept { licensing: licensing.clone() }),
        Arc::new(ownership::TransferOwnership { licensing: licensing.clone() }),
        Arc::new(ownership_request::OwnershipRequestTimers { licensing: licensing.clone() }),
    ];
    let bulks = bulk::all(licensing, fair).map(|bulk| Arc::new(bulk) as Arc<dyn Workflow>);
    singles.into_iter().chain(bulks).collect()
}

/// A domain refusal as the operation reports it: the reason and code a synchronous call
/// would have carried.
pub fn refused(error: &DomainError) -> StepError {
    let reason = effects::refusals::reason(error);
    StepError::Refused(Failure {
        reason: reason.reason.to_owned(),
        code: reason.product_code.map(|c| c.to_string()),
        message: effects::refusals::message(error),
    })
}

fn step_failed(error: effects::Error) -> StepError {
    match error {
        effects::Error::Domain(refusal) => refused(&refusal),
        effects::Error::Db(error) => StepError::from(error),
        effects::Error::Internal(cause) => {
            StepError::Refused(Failure { reason: "INTERNAL".into(), code: None, message: cause })
        }
    }
}
