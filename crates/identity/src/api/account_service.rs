//! `roster.identity.v1.AccountService`.

use roster_platform::auth::principal;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::accounts::{self, AccountChanges, NewAccount};
use crate::app::ownership_requests;
use crate::app::step_up::{self, Verification};
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;
use crate::domain::rules::PhoneHoldings;
use crate::domain::values::{AccountId, UserId};
use crate::effects::ownership_requests::Answer;

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
        let page = self.page(req, &caller)?;
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

    async fn reassign_ownership(
        &self,
        request: Request<pb::ReassignOwnershipRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let new_owner = convert::user_id("new_owner_user_id", &req.new_owner_user_id)?;
        let verification = convert::support_verification(req.verification.as_ref())?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("AccountService", "ReassignOwnership", OWNERSHIP_REASSIGNED),
            &req.request_id,
            &req,
            Some((id, Need::Operator)),
            move |tx, ctx| {
                Box::pin(async move {
                    accounts::reassign_ownership(tx, ctx, &account, &new_owner, &verification)
                        .await
                        .map(|view| convert::account(&view))
                })
            },
        )
        .await
    }

    async fn list_undeliverable_emails(
        &self,
        request: Request<pb::ListUndeliverableEmailsRequest>,
    ) -> Result<Response<pb::ListUndeliverableEmailsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let id = convert::account_id(&req.account_id)?;
        let page = self.page(req, &caller)?;
        let (before, limit) = (page.after.clone(), page.fetch_limit());
        let emails = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { accounts::undeliverable_emails(tx, ctx, &id, before.as_deref(), limit).await })
            })
            .await?;
        let (emails, next_page_token) = page.finish(emails, |e| e.id.clone());
        Ok(Response::new(pb::ListUndeliverableEmailsResponse {
            emails: emails.iter().map(convert::undeliverable_email).collect(),
            next_page_token,
        }))
    }

    async fn request_ownership(
        &self,
        request: Request<pb::RequestOwnershipRequest>,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let (account, engine) = (id.clone(), self.engine.clone());
        let answer = self
            .mutate(
                caller,
                method!("AccountService", "RequestOwnership", OWNERSHIP_REQUESTED),
                &req.request_id,
                &req,
                Some((id, Need::ActiveMember)),
                move |tx, ctx| {
                    Box::pin(async move {
                        ownership_requests::request(tx, ctx, &engine, &account)
                            .await
                            .map(|r| convert::ownership_request(&r))
                    })
                },
            )
            .await;
        self.engine.wake();
        answer
    }

    async fn approve_ownership_request(
        &self,
        request: Request<pb::AnswerOwnershipRequestRequest>,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let method = method!("AccountService", "ApproveOwnershipRequest", OWNERSHIP_REQUEST_APPROVED);
        self.answer_ownership_request(request, method, Answer::Approve).await
    }

    async fn deny_ownership_request(
        &self,
        request: Request<pb::AnswerOwnershipRequestRequest>,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let method = method!("AccountService", "DenyOwnershipRequest", OWNERSHIP_REQUEST_DENIED);
        self.answer_ownership_request(request, method, Answer::Deny).await
    }

    async fn cancel_ownership_request(
        &self,
        request: Request<pb::CancelOwnershipRequestRequest>,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let request_id = convert::ownership_request_id(&req.ownership_request_id)?;
        let (account, engine) = (id.clone(), self.engine.clone());
        let answer = self
            .mutate(
                caller,
                method!("AccountService", "CancelOwnershipRequest", OWNERSHIP_REQUEST_CANCELLED),
                &req.request_id,
                &req,
                Some((id, Need::ActiveMember)),
                move |tx, ctx| {
                    Box::pin(async move {
                        ownership_requests::cancel(tx, ctx, &engine, &account, &request_id)
                            .await
                            .map(|r| convert::ownership_request(&r))
                    })
                },
            )
            .await;
        self.engine.wake();
        answer
    }

    async fn get_ownership_request(
        &self,
        request: Request<pb::GetOwnershipRequestRequest>,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let id = convert::account_id(&req.account_id)?;
        let request_id = convert::ownership_request_id(&req.ownership_request_id)?;
        let found = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { ownership_requests::get(tx, ctx, &id, &request_id).await })
            })
            .await?;
        Ok(Response::new(convert::ownership_request(&found)))
    }

    async fn list_ownership_requests(
        &self,
        request: Request<pb::ListOwnershipRequestsRequest>,
    ) -> Result<Response<pb::ListOwnershipRequestsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let id = convert::account_id(&req.account_id)?;
        let page = self.page(req, &caller)?;
        let (before, limit) = (page.after.clone(), page.fetch_limit());
        let found = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { ownership_requests::list(tx, ctx, &id, before.as_deref(), limit).await })
            })
            .await?;
        let (found, next_page_token) = page.finish(found, |r| r.id.to_string());
        Ok(Response::new(pb::ListOwnershipRequestsResponse {
            ownership_requests: found.iter().map(convert::ownership_request).collect(),
            next_page_token,
        }))
    }

    async fn start_step_up(
        &self,
        request: Request<pb::StartStepUpRequest>,
    ) -> Result<Response<pb::StepUpChallenge>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let purpose = convert::step_up_purpose(req.purpose)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("AccountService", "StartStepUp", STEP_UP_STARTED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    step_up::start(tx, ctx, &account, purpose).await.map(|sent| convert::step_up_challenge(&sent))
                })
            },
        )
        .await
    }

    /// Not once-per-request-id like other changes: a code is single use by itself, and a wrong
    /// one must be counted (and committed) even though the call is refused.
    async fn verify_step_up(
        &self,
        request: Request<pb::VerifyStepUpRequest>,
    ) -> Result<Response<pb::StepUpProof>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let id = convert::account_id(&req.account_id)?;
        let challenge = convert::challenge_id(&req.challenge_id)?;
        let code = convert::step_up_code(&req.code)?;
        let ctx = self.ctx(caller, "");
        let action = crate::effects::actions::STEP_UP_VERIFIED;
        let account = id.clone();
        let verified = self
            .transact(&ctx, move |tx, ctx| {
                Box::pin(async move { step_up::verify(tx, ctx, &id, &challenge, &code).await })
            })
            .await?;
        let refusal = match verified {
            Ok(Verification::Verified(proof)) => return Ok(Response::new(convert::step_up_proof_pb(&proof))),
            // The wrong code's count committed; the refusal is audited like any other.
            Ok(Verification::Refused(refusal)) | Err(refusal) => refusal,
        };
        Err(self.refused(&ctx, Some(&account), action, &refusal).await)
    }
}

impl Api {
    /// Approve and deny: the owner, with a step-up proof for that answer (R10).
    async fn answer_ownership_request(
        &self,
        request: Request<pb::AnswerOwnershipRequestRequest>,
        method: super::Method,
        answer: Answer,
    ) -> Result<Response<pb::OwnershipRequest>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let request_id = convert::ownership_request_id(&req.ownership_request_id)?;
        let proof = convert::step_up_proof(&req.step_up_proof)?;
        let (account, engine) = (id.clone(), self.engine.clone());
        let answered = self
            .mutate(caller, method, &req.request_id, &req, Some((id, Need::Owner)), move |tx, ctx| {
                Box::pin(async move {
                    ownership_requests::answer(tx, ctx, &engine, &account, &request_id, answer, &proof)
                        .await
                        .map(|r| convert::ownership_request(&r))
                })
            })
            .await;
        self.engine.wake();
        answered
    }

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
            roster_platform::status::service_unavailable("licensing", "to say which phone licenses would move", &e)
        };
        self.licensing.phone_holdings(account.as_str(), owner.as_str(), new_owner.as_str()).await.map_err(unavailable)
    }
}
