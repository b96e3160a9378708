//! `roster.identity.v1.RoleService`.

use roster_platform::auth::principal;
use roster_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::roles;
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;

/// At most this many privileges per request; there are only six distinct ones.
const MAX_PRIVILEGES: usize = 16;

fn privileges(raw: &[i32]) -> Result<std::collections::BTreeSet<crate::domain::model::Privilege>, Status> {
    if raw.len() > MAX_PRIVILEGES {
        return Err(roster_platform::status::invalid_argument(
            "privileges",
            format!("at most {MAX_PRIVILEGES} entries"),
        ));
    }
    convert::privileges(raw)
}

#[tonic::async_trait]
impl pb::role_service_server::RoleService for Api {
    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let caller = principal(&request)?;
        let account = convert::account_id(&request.get_ref().account_id)?;
        let found =
            self.read(caller, move |tx, ctx| Box::pin(async move { roles::list(tx, ctx, &account).await })).await?;
        Ok(Response::new(pb::ListRolesResponse { roles: found.iter().map(convert::role).collect() }))
    }

    async fn create_role(&self, request: Request<pb::CreateRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let name = convert::required_text("name", &req.name, convert::MAX_ROLE_NAME_CHARS)?;
        let privileges = privileges(&req.privileges)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("RoleService", "CreateRole", ROLE_CREATED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageRoles))),
            move |tx, ctx| {
                Box::pin(
                    async move { roles::create(tx, ctx, &account, name, privileges).await.map(|r| convert::role(&r)) },
                )
            },
        )
        .await
    }

    async fn update_role(&self, request: Request<pb::UpdateRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::custom_role_id("role_id", &req.role_id)?;
        let name = convert::required_text("name", &req.name, convert::MAX_ROLE_NAME_CHARS)?;
        let privileges = privileges(&req.privileges)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("RoleService", "UpdateRole", ROLE_UPDATED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageRoles))),
            move |tx, ctx| {
                Box::pin(async move {
                    roles::update(tx, ctx, &account, &id, name, privileges).await.map(|r| convert::role(&r))
                })
            },
        )
        .await
    }

    async fn delete_role(&self, request: Request<pb::DeleteRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::custom_role_id("role_id", &req.role_id)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("RoleService", "DeleteRole", ROLE_DELETED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageRoles))),
            move |tx, ctx| {
                Box::pin(async move { roles::delete(tx, ctx, &account, &id).await.map(|r| convert::role(&r)) })
            },
        )
        .await
    }

    async fn assign_role(&self, request: Request<pb::AssignRoleRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let user = convert::user_id("user_id", &req.user_id)?;
        let role = convert::assigned_role(&req.role_id)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("RoleService", "AssignRole", USER_ROLE_CHANGED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageRoles))),
            move |tx, ctx| {
                Box::pin(async move { roles::assign(tx, ctx, &account, &user, role).await.map(|u| convert::user(&u)) })
            },
        )
        .await
    }
}
