//! Who may read identity's event log, decided from current data (`app::events`); the
//! `Events` service itself is the shared one (`roster_platform::event_log::serve`).

use roster_platform::auth::Principal;
use roster_platform::event_log::serve::Readers;
use tonic::Status;

use super::Api;
use crate::app::events::readable_accounts;

#[tonic::async_trait]
impl Readers for Api {
    async fn readable(&self, caller: &Principal, requested: Vec<String>) -> Result<Vec<String>, Status> {
        self.read(caller.clone(), move |conn, ctx| {
            let requested = requested.clone();
            Box::pin(async move { readable_accounts(conn, ctx, &requested).await })
        })
        .await
    }
}
