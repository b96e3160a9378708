//! `roster.identity.v1.AccountService`.

use roster_platform::auth::principal;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::accounts::{self, AccountChanges, NewAccount};
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;
use crate::domain::rules::PhoneHoldings;
use crate::domain::values::{AccountId, UserId};

#[tonic::async_trait]
impl pb::account_service_server::AccountService for Api {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let new = NewAccount {
            name: convert::required_text("name", &req.name, convert::MAX_NAME_CHARS)?,
            plan: convert::plan(req.plan)?,
            csm_eligible: req.csm_eligible,
            owner_email: convert::email("owner_email", &req.owner_email)?,
            owner_display_name: convert::optional_text(
                "owner_display_name",
                &req.owner_display_name,
                convert::MAX_NAME_CHARS,
            )?,
            managed_domains: convert::managed_domains(&req.managed_domains)?,
        };
        self.mutate(
            caller,
            method!("AccountService", "CreateAccount", ACCOUNT_CREATED),
            &req.request_id,
            &req,
            None,
            move |tx, ctx| {
                Box::pin(async move { accounts::create(tx, ctx, new).await.map(|view| convert::account(&view)) })
            },
        )
        .await
    }

    async fn get_account(&self, request: Request<pb::GetAccountRequest>) -> Result<Response<pb::Account>, Status> {
        let caller = principal(&request)?;
        let id = convert::account_id(&request.get_ref().account_id)?;
        let view = self.read(caller, move |tx, ctx| Box::pin(async move { accounts::get(tx, ctx, &id).await })).await?;
        Ok(Response::new(convert::account(&view)))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let changes = AccountChanges {
            managed_domains: if req.update_managed_domains {
                Some(convert::managed_domains(&req.managed_domains)?)
            } else {
                None
            },
            settings: req.settings.as_ref().map(convert::settings).transpose()?,
        };
        let account = id.clone();
        self.mutate(
            caller,
            method!("AccountService", "UpdateAccount", ACCOUNT_UPDATED),
            &req.request_id,
            &req,
            Some((id, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| {
                Box::pin(async move {
                    accounts::update(tx, ctx, &account, changes).await.map(|view| convert::account(&view))
                })
            },
        )
        .await
    }

    async fn transfer_ownership(
        &self,
        request: Request<pb::TransferOwnershipRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let new_owner = convert::user_id("new_owner_user_id", &req.new_owner_user_id)?;
        let phone = self.phone_holdings(&caller, &id, &new_owner).await?;
        let (account, engine, confirmed) = (id.clone(), self.engine.clone(), req.confirm_phone_transfer);
        self.start_saga(
            caller,
            method!("AccountService", "TransferOwnership", OWNERSHIP_TRANSFERRED),
            &req.request_id,
            &req,
            Some((id, Need::Owner)),
            move |tx, ctx| {
                Box::pin(async move {
                    accounts::transfer_ownership(tx, ctx, &engine, &account, &new_owner, &phone, confirmed).await
                })
            },
        )
        .await
    }

    async fn get_my_access(&self, request: Request<pb::GetMyAccessRequest>) -> Result<Response<pb::Access>, Status> {
        let caller = principal(&request)?;
        let id = convert::account_id(&request.get_ref().account_id)?;
        let actor =
            self.read(caller, move |tx, ctx| Box::pin(async move { accounts::my_access(tx, ctx, &id).await })).await?;
        Ok(Response::new(convert::access(&actor)))
    }

    async fn authorize_integration(
        &self,
        request: Request<pb::AuthorizeIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let name = convert::required_text("name", &req.name, convert::MAX_NAME_CHARS)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("AccountService", "AuthorizeIntegration", INTEGRATION_AUTHORIZED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    accounts::authorize_integration(tx, ctx, &account, name).await.map(|i| convert::integration(&i))
                })
            },
        )
        .await
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let caller = principal(&request)?;
        let id = convert::account_id(&request.get_ref().account_id)?;
        let list = self
            .read(caller, move |tx, ctx| Box::pin(async move { accounts::list_integrations(tx, ctx, &id).await }))
            .await?;
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: list.iter().map(convert::integration).collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let id = convert::account_id(&req.account_id)?;
        let page = self.pages.request(req.page_size, &req.page_token)?;
        let (after, limit) = (page.after.clone(), page.fetch_limit());
        let events = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { accounts::list_audit(tx, ctx, &id, after.as_deref(), limit).await })
            })
            .await?;
        let (events, next_page_token) = page.finish(events, |e| e.id.clone());
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.iter().map(convert::audit_event).collect(),
            next_page_token,
        }))
    }
}

impl Api {
    /// SPEC R4 needs licensing's view of both sides before the transaction opens. Callers who
    /// may not transfer learn nothing here: the use case refuses them the same way inside the
    /// transaction (and audits it), and licensing is only asked for an allowed transfer.
    async fn phone_holdings(
        &self,
        caller: &roster_platform::auth::Principal,
        account: &AccountId,
        new_owner: &UserId,
    ) -> Result<PhoneHoldings, Status> {
        let (id, target) = (account.clone(), new_owner.clone());
        let precheck = self
            .read(caller.clone(), move |tx, ctx| {
                Box::pin(async move { accounts::ownership_precheck(tx, ctx, &id, &target).await })
            })
            .await;
        let Ok(owner) = precheck else { return Ok(PhoneHoldings::default()) };
        let unavailable = |e: roster_workflow::StepError| {
            Status::unavailable(format!("licensing could not say which phone licenses would move: {e}"))
        };
        self.licensing.phone_holdings(account.as_str(), owner.as_str(), new_owner.as_str()).await.map_err(unavailable)
    }
}
