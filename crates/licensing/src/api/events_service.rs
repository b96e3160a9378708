//! Who may read licensing's event log, asked of identity afresh (SPEC R34): services and
//! operators read any account; a user must name their own account in the filter, and be its
//! active owner or an admin. The `Events` service itself is the shared one
//! (`roster_platform::event_log::serve`).

use roster_platform::auth::Principal;
use roster_platform::event_log::serve::Readers;
use roster_platform::status;
use tonic::Status;

use super::{Api, error};
use crate::app::{self, Error};
use crate::directory::Freshness;
use crate::domain::DomainError;
use crate::domain::model::Id;

#[tonic::async_trait]
impl Readers for Api {
    /// All asked for services and operators; for a user, the one account they name, if they
    /// own or administer it.
    async fn readable(&self, caller: &Principal, requested: Vec<String>) -> Result<Vec<String>, Status> {
        if !matches!(caller, Principal::User { .. }) {
            return Ok(requested);
        }
        let [account] = requested.as_slice() else {
            return Err(status::invalid_argument(
                "filter.account_ids",
                "must name exactly one account, your own, when a user reads events",
            ));
        };
        let denied = || error::domain_status(&DomainError::OwnerOrAdminOnly);
        let account = Id::parse(account).map_err(|_| denied())?;
        match app::resolve_caller(&self.directory, caller, &account, Freshness::Fresh).await {
            Ok(resolved) => resolved.event_reader().map_err(|refusal| error::domain_status(&refusal))?,
            // Another account, or none, reads as the same refusal: nothing leaks.
            Err(Error::Domain(DomainError::AccountNotFound)) => return Err(denied()),
            Err(other) => return Err(error::to_status(other)),
        }
        Ok(requested)
    }
}
