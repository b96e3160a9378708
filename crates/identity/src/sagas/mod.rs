//! The cross-service operations identity orchestrates as durable workflows
//! (`roster-workflow`): deactivate, reactivate, unlink, delete, accept an invitation, and
//! transfer ownership with phone licenses, the timers of an ownership request, and bulk
//! removal, which runs one of the user sagas per row.
//!
//! Each saga's use case (in `app`) refuses bad requests and makes its first local change in
//! the request's transaction, and starts the workflow in that same transaction. Steps that
//! call licensing send the request id the engine derives from (workflow, step), so a replay
//! has one effect; local steps write through the step's transaction, which the engine
//! commits together with the step's record under the lease fence.

pub mod accept;
pub mod bulk;
pub mod dry_run;
pub mod licensing;
pub mod lifecycle;
pub mod ownership;
pub mod ownership_request;
mod reclaim_batch;
pub mod removal;

use std::sync::Arc;

use roster_platform::auth::Principal;
use roster_workflow::{Failure, StepCtx, StepError, Workflow};
use serde::{Deserialize, Serialize};

pub use licensing::Licensing;

use crate::app::{self, Ctx};
use crate::domain::DomainError;

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

/// Who asked for the operation and with which request id; local steps audit under it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Origin {
    pub started_by: String,
    pub request_id: String,
}

impl Origin {
    pub fn of(ctx: &Ctx) -> Self {
        Self { started_by: ctx.principal.audit_name(), request_id: ctx.request_id.clone() }
    }

    /// The use-case context a local step runs in: the original principal, at the step's time.
    fn ctx(&self, step: &StepCtx) -> Result<Ctx, StepError> {
        let principal = Principal::from_audit_name(&self.started_by).ok_or_else(|| {
            StepError::Refused(Failure {
                reason: "WORKFLOW_DATA_CORRUPT".into(),
                code: None,
                message: format!("unreadable principal {:?}", self.started_by),
            })
        })?;
        Ok(Ctx { principal, request_id: self.request_id.clone(), now_ms: step.now_ms })
    }
}

/// A domain refusal as the operation reports it: the reason and code a synchronous call
/// would have carried.
pub fn refused(error: &DomainError) -> StepError {
    let reason = crate::api::error::reason(error);
    StepError::Refused(Failure {
        reason: reason.reason.to_owned(),
        code: reason.product_code.map(|c| c.to_string()),
        message: crate::api::error::message(error),
    })
}

fn step_failed(error: app::Error) -> StepError {
    match error {
        app::Error::Domain(refusal) => refused(&refusal),
        app::Error::Db(error) => StepError::from(error),
        app::Error::Internal(cause) => {
            StepError::Refused(Failure { reason: "INTERNAL".into(), code: None, message: cause })
        }
    }
}
