//! `roster.events.v1.Events` for identity's log: the caller's readable accounts are decided
//! here from current data (`app::events`), the rest is the shared log's (see
//! `roster_platform::event_log`).

use roster_platform::auth::{Principal, principal};
use roster_platform::event_log::serve::EventStream;
use roster_platform::event_log::stream::Recheck;
use roster_proto::events::v1 as pb;
use roster_proto::events::v1::events_server::Events;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::events::readable_accounts;

impl Api {
    /// The accounts `caller` may read of those `requested` (see `app::events`).
    async fn readable(&self, caller: Principal, requested: Vec<String>) -> Result<Vec<String>, Status> {
        self.read(caller, move |conn, ctx| {
            let requested = requested.clone();
            Box::pin(async move { readable_accounts(conn, ctx, &requested).await })
        })
        .await
    }

    /// For a user, asks again at every heartbeat whether they may still read: a demoted or
    /// deactivated admin's stream ends with the refusal.
    fn recheck(&self, caller: &Principal, accounts: &[String]) -> Option<Recheck> {
        if !matches!(caller, Principal::User { .. }) {
            return None;
        }
        let (api, caller, accounts) = (self.clone(), caller.clone(), accounts.to_vec());
        Some(Box::new(move || {
            let (api, caller, accounts) = (api.clone(), caller.clone(), accounts.clone());
            Box::pin(async move { api.readable(caller, accounts).await.map(drop) })
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
        let accounts = self.readable(caller.clone(), requested).await?;
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
        let accounts = self.readable(caller, requested).await?;
        let filter = self.events.filter(request.filter.clone(), accounts)?;
        Ok(Response::new(self.events.list(&request, filter, convert::event_payload).await?))
    }
}
