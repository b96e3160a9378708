//! `roster.events.v1.Events` for licensing's log. Who may read is asked of identity afresh
//! (SPEC R34): services and operators read any account; a user must name their own account in
//! the filter, and be its active owner or an admin. The rest is the shared log's (see
//! `roster_platform::event_log`).

use roster_platform::auth::{Principal, principal};
use roster_platform::event_log::serve::EventStream;
use roster_platform::event_log::stream::Recheck;
use roster_platform::status;
use roster_proto::events::v1 as pb;
use roster_proto::events::v1::events_server::Events;
use tonic::{Request, Response, Status};

use super::{Api, convert, error};
use crate::app::{self, Error};
use crate::directory::Freshness;
use crate::domain::DomainError;
use crate::domain::model::Id;

impl Api {
    /// The accounts `caller` may read of those `requested`: all asked for services and
    /// operators; for a user, the one account they name, if they own or administer it.
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

    /// For a user, asks identity again at every heartbeat whether they may still read.
    fn recheck(&self, caller: &Principal, accounts: &[String]) -> Option<Recheck> {
        if !matches!(caller, Principal::User { .. }) {
            return None;
        }
        let (api, caller, accounts) = (self.clone(), caller.clone(), accounts.to_vec());
        Some(Box::new(move || {
            let (api, caller, accounts) = (api.clone(), caller.clone(), accounts.clone());
            Box::pin(async move { api.readable(&caller, accounts).await.map(drop) })
        }))
    }
}

#[tonic::async_trait]
impl Events for Api {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = principal(&request)?;
        let request = request.into_inner();
        let requested = request.filter.clone().unwrap_or_default().account_ids;
        let accounts = self.readable(&caller, requested).await?;
        let recheck = self.recheck(&caller, &accounts);
        let filter = self.events.filter(request.filter.clone(), accounts)?;
        let stream = self
            .events
            .watch_request(
                &caller.audit_name(),
                &request,
                filter,
                recheck,
                convert::event_payload,
                self.draining.clone(),
            )
            .await?;
        Ok(Response::new(stream))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = principal(&request)?;
        let request = request.into_inner();
        let requested = request.filter.clone().unwrap_or_default().account_ids;
        let accounts = self.readable(&caller, requested).await?;
        let filter = self.events.filter(request.filter.clone(), accounts)?;
        Ok(Response::new(self.events.list(&request, filter, convert::event_payload).await?))
    }
}
