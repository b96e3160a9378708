//! `roster.identity.v1.DirectoryService`: lookups for other Roster services.

use roster_platform::auth::principal;
use roster_platform::status;
use roster_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::directory;

#[tonic::async_trait]
impl pb::directory_service_server::DirectoryService for Api {
    async fn get_member(&self, request: Request<pb::GetMemberRequest>) -> Result<Response<pb::Member>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        let user = convert::user_id("user_id", &req.user_id)?;
        let actor = self
            .read(caller, move |tx, ctx| Box::pin(async move { directory::get_member(tx, ctx, &account, &user).await }))
            .await?;
        Ok(Response::new(convert::member(&actor)))
    }

    async fn get_members(
        &self,
        request: Request<pb::GetMembersRequest>,
    ) -> Result<Response<pb::GetMembersResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        if req.user_ids.is_empty() || req.user_ids.len() > directory::MAX_MEMBERS {
            return Err(status::invalid_argument(
                "user_ids",
                format!("must name 1 to {} users", directory::MAX_MEMBERS),
            ));
        }
        let users = req
            .user_ids
            .iter()
            .enumerate()
            .map(|(n, id)| convert::listed_user_id("user_ids", n, id))
            .collect::<Result<Vec<_>, _>>()?;
        let actors = self
            .read(caller, move |tx, ctx| {
                let users = users.clone();
                Box::pin(async move { directory::get_members(tx, ctx, &account, &users).await })
            })
            .await?;
        Ok(Response::new(pb::GetMembersResponse { members: actors.iter().map(convert::member).collect() }))
    }

    async fn lookup_account(
        &self,
        request: Request<pb::LookupAccountRequest>,
    ) -> Result<Response<pb::AccountRef>, Status> {
        let caller = principal(&request)?;
        let account = convert::account_id(&request.get_ref().account_id)?;
        let include_closed = request.get_ref().include_closed;
        let id = account.clone();
        let found = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { directory::lookup_account(tx, ctx, &id, include_closed).await })
            })
            .await?;
        let (owner_user_id, closed) = match found {
            directory::AccountRef::Open { owner } => (owner.to_string(), false),
            directory::AccountRef::Closed => (String::new(), true),
        };
        Ok(Response::new(pb::AccountRef { account_id: account.to_string(), owner_user_id, closed }))
    }
}
