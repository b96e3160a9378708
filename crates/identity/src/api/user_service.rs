//! `roster.identity.v1.UserService`.

use roster_platform::auth::{Principal, principal};
use roster_platform::status;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_workflow::StepError;
use tonic::{Request, Response, Status};

use super::{Api, convert};
use crate::app::dry_run;
use crate::app::emails;
use crate::app::invitations::{self, NewInvitation};
use crate::app::settings;
use crate::app::users;
use crate::domain::bulk::BulkAction;
use crate::domain::model::Privilege;
use crate::domain::model::SignIn;
use crate::domain::privileges::Need;
use crate::domain::values::{AccountId, UserId};
use crate::sagas;
use crate::sagas::removal::TransferRequest;
use crate::store::users::ListFilter;

/// How long a dry run waits for licensing's preview before answering UNAVAILABLE.
const DRY_RUN_PREVIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Api {
    /// `validate_only` of DeactivateUser, UnlinkUser and DeleteUser: identity's checks, then
    /// licensing's preview, each refusing as the real call would; nothing is written, so
    /// there is no request id to remember and no refusal to audit.
    async fn dry_run(
        &self,
        caller: Principal,
        action: BulkAction,
        account: AccountId,
        id: UserId,
        transfer: Option<TransferRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let started_by = caller.audit_name();
        let (engine, at) = (self.engine.clone(), account.clone());
        let checked = self
            .read(caller, move |conn, ctx| {
                Box::pin(async move { dry_run::check(conn, ctx, &engine, action, &at, &id, transfer).await })
            })
            .await?;
        // The one call that waits for licensing, and not for long: a caller's dry run should not
        // hang on an outage the saga itself would wait out.
        let preview = tokio::time::timeout(DRY_RUN_PREVIEW_WAIT, sagas::dry_run::preview(&self.licensing, &checked))
            .await
            .unwrap_or_else(|_| Err(StepError::Transient(format!("no answer within {DRY_RUN_PREVIEW_WAIT:?}"))));
        let result = preview.map_err(|refused| match refused {
            StepError::Refused(failure) => {
                status::relayed_refusal(&failure.reason, failure.code.as_deref(), failure.message)
            }
            StepError::Transient(cause) => {
                status::service_unavailable("licensing", "for the dry run's preview", &cause)
            }
        })?;
        let kind = sagas::dry_run::operation_kind(action);
        let now_ms = self.clock.now_ms();
        Ok(Response::new(convert::dry_run_operation(kind, &account, &checked.user, started_by, now_ms, &result)))
    }
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for Api {
    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let user =
            self.read(caller, move |tx, ctx| Box::pin(async move { users::get(tx, ctx, &account, &id).await })).await?;
        Ok(Response::new(convert::user(&user)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        let page = self.page(req, &caller)?;
        let filter =
            ListFilter { status: convert::status_filter(req.status)?, role_kind: convert::role_filter(req.role)? };
        let (after, limit) = (page.after.clone(), page.fetch_limit());
        let found = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { users::list(tx, ctx, &account, &filter, after.as_deref(), limit).await })
            })
            .await?;
        let (found, next_page_token) = page.finish(found, |u| u.id.to_string());
        Ok(Response::new(pb::ListUsersResponse { users: found.iter().map(convert::user).collect(), next_page_token }))
    }

    async fn invite_user(&self, request: Request<pb::InviteUserRequest>) -> Result<Response<pb::Invitation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let new = NewInvitation {
            email: convert::email("email", &req.email)?,
            display_name: convert::optional_text("display_name", &req.display_name, convert::MAX_NAME_CHARS)?,
            role: convert::invitation_role(req.role, &req.custom_role_id)?,
            external: req.external,
        };
        let scope = account.clone();
        self.mutate_folded(
            caller,
            method!("UserService", "InviteUser", USER_INVITED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx, receipt| {
                Box::pin(async move {
                    let record =
                        |invitation: &_, write: &mut _| receipt.record_into(write, convert::invitation(invitation));
                    invitations::invite(tx, ctx, &account, new, record).await.map(|(_, recorded)| recorded)
                })
            },
        )
        .await
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        let page = self.page(req, &caller)?;
        let (after, limit) = (page.after.clone(), page.fetch_limit());
        let found = self
            .read(caller, move |tx, ctx| {
                Box::pin(async move { invitations::list_pending(tx, ctx, &account, after.as_deref(), limit).await })
            })
            .await?;
        let (found, next_page_token) = page.finish(found, |i| i.id.to_string());
        Ok(Response::new(pb::ListInvitationsResponse {
            invitations: found.iter().map(convert::invitation).collect(),
            next_page_token,
        }))
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::Invitation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::invitation_id(&req.invitation_id)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("UserService", "ResendInvitation", INVITATION_RESENT),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| {
                Box::pin(async move {
                    invitations::resend(tx, ctx, &account, &id).await.map(|sent| convert::invitation(&sent.invitation))
                })
            },
        )
        .await
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::Invitation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::invitation_id(&req.invitation_id)?;
        let scope = account.clone();
        self.mutate(
            caller,
            method!("UserService", "RevokeInvitation", INVITATION_REVOKED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| {
                Box::pin(
                    async move { invitations::revoke(tx, ctx, &account, &id).await.map(|i| convert::invitation(&i)) },
                )
            },
        )
        .await
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let code = convert::one_time_code(&req.code)?;
        let engine = self.engine.clone();
        self.start_saga(
            caller,
            method!("UserService", "AcceptInvitation", INVITATION_ACCEPTED),
            &req.request_id,
            &req,
            None,
            move |tx, ctx| Box::pin(async move { invitations::accept(tx, ctx, &engine, &code).await }),
        )
        .await
    }

    async fn deactivate_user(
        &self,
        request: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        if req.validate_only {
            return self.dry_run(caller, BulkAction::Deactivate, account, id, None).await;
        }
        let (scope, engine) = (account.clone(), self.engine.clone());
        self.start_saga(
            caller,
            method!("UserService", "DeactivateUser", USER_DEACTIVATED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| Box::pin(async move { users::deactivate(tx, ctx, &engine, &account, &id).await }),
        )
        .await
    }

    async fn reactivate_user(
        &self,
        request: Request<pb::ReactivateUserRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let restore = req.restore_licenses;
        let (scope, engine) = (account.clone(), self.engine.clone());
        self.start_saga(
            caller,
            method!("UserService", "ReactivateUser", USER_REACTIVATED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| Box::pin(async move { users::reactivate(tx, ctx, &engine, &account, &id, restore).await }),
        )
        .await
    }

    async fn unlink_user(&self, request: Request<pb::UnlinkUserRequest>) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let transfer = convert::content_transfer(req.transfer.as_ref())?;
        if req.validate_only {
            return self.dry_run(caller, BulkAction::Unlink, account, id, transfer).await;
        }
        let (scope, engine) = (account.clone(), self.engine.clone());
        self.start_saga(
            caller,
            method!("UserService", "UnlinkUser", USER_UNLINKED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| Box::pin(async move { users::unlink(tx, ctx, &engine, &account, &id, transfer).await }),
        )
        .await
    }

    async fn delete_user(&self, request: Request<pb::DeleteUserRequest>) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let transfer = convert::content_transfer(req.transfer.as_ref())?;
        if req.validate_only {
            return self.dry_run(caller, BulkAction::Delete, account, id, transfer).await;
        }
        let (scope, engine) = (account.clone(), self.engine.clone());
        self.start_saga(
            caller,
            method!("UserService", "DeleteUser", USER_DELETED),
            &req.request_id,
            &req,
            Some((scope, Need::Privilege(Privilege::ManageUsers))),
            move |tx, ctx| Box::pin(async move { users::delete(tx, ctx, &engine, &account, &id, transfer).await }),
        )
        .await
    }

    async fn check_sign_in(
        &self,
        request: Request<pb::CheckSignInRequest>,
    ) -> Result<Response<pb::CheckSignInResponse>, Status> {
        let caller = principal(&request)?;
        let email = convert::email("email", &request.get_ref().email)?;
        let decision = self
            .read(caller, move |tx, ctx| Box::pin(async move { users::check_sign_in(tx, ctx, &email).await }))
            .await?;
        let (decision, reason, user) = match &decision {
            SignIn::Allowed(user) => (pb::SignInDecision::Allowed, "", Some(user)),
            SignIn::AccountDisabled(user) => (
                pb::SignInDecision::AccountDisabled,
                "This account has been disabled. Contact your account admin to have it reactivated.",
                Some(user),
            ),
            SignIn::PendingActivation(user) => (
                pb::SignInDecision::PendingActivation,
                "Accept your invitation e-mail to activate this account first.",
                Some(user),
            ),
            SignIn::UnknownUser => (pb::SignInDecision::UnknownUser, "No user has this e-mail address.", None),
        };
        Ok(Response::new(pb::CheckSignInResponse {
            decision: decision as i32,
            reason: reason.to_owned(),
            user_id: user.map(|u| u.id.to_string()).unwrap_or_default(),
            account_id: user.map(|u| u.account_id.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_email_addresses(
        &self,
        request: Request<pb::ListEmailAddressesRequest>,
    ) -> Result<Response<pb::ListEmailAddressesResponse>, Status> {
        let caller = principal(&request)?;
        let id = convert::account_id(&request.get_ref().account_id)?;
        let addresses =
            self.read(caller, move |tx, ctx| Box::pin(async move { emails::list(tx, ctx, &id).await })).await?;
        Ok(Response::new(convert::email_addresses(&addresses)))
    }

    async fn add_email_address(
        &self,
        request: Request<pb::AddEmailAddressRequest>,
    ) -> Result<Response<pb::EmailAddress>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let email = convert::email("email", &req.email)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("UserService", "AddEmailAddress", EMAIL_ADDED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(
                    async move { emails::add(tx, ctx, &account, &email).await.map(|a| convert::email_address(&a)) },
                )
            },
        )
        .await
    }

    async fn verify_email_address(
        &self,
        request: Request<pb::VerifyEmailAddressRequest>,
    ) -> Result<Response<pb::EmailAddress>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let email = convert::email("email", &req.email)?;
        let code = convert::one_time_code(&req.code)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("UserService", "VerifyEmailAddress", EMAIL_VERIFIED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    emails::verify(tx, ctx, &account, &email, &code).await.map(|a| convert::email_address(&a))
                })
            },
        )
        .await
    }

    async fn make_email_primary(
        &self,
        request: Request<pb::MakeEmailPrimaryRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let email = convert::email("email", &req.email)?;
        let proof = convert::step_up_proof(&req.step_up_proof)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("UserService", "MakeEmailPrimary", PRIMARY_EMAIL_CHANGED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    emails::make_primary(tx, ctx, &account, &email, &proof).await.map(|u| convert::user(&u))
                })
            },
        )
        .await
    }

    async fn remove_email_address(
        &self,
        request: Request<pb::RemoveEmailAddressRequest>,
    ) -> Result<Response<pb::ListEmailAddressesResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::account_id(&req.account_id)?;
        let email = convert::email("email", &req.email)?;
        let proof = convert::step_up_proof(&req.step_up_proof)?;
        let account = id.clone();
        self.mutate(
            caller,
            method!("UserService", "RemoveEmailAddress", EMAIL_REMOVED),
            &req.request_id,
            &req,
            Some((id, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    emails::remove(tx, ctx, &account, &email, &proof).await.map(|list| convert::email_addresses(&list))
                })
            },
        )
        .await
    }

    async fn get_user_settings(
        &self,
        request: Request<pb::GetUserSettingsRequest>,
    ) -> Result<Response<pb::UserSettings>, Status> {
        let caller = principal(&request)?;
        let req = request.get_ref();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let (on, of) = (account.clone(), id.clone());
        let stored =
            self.read(caller, move |tx, ctx| Box::pin(async move { settings::get(tx, ctx, &on, &of).await })).await?;
        Ok(Response::new(convert::user_settings_to_pb(&account, &id, &stored)))
    }

    async fn update_user_settings(
        &self,
        request: Request<pb::UpdateUserSettingsRequest>,
    ) -> Result<Response<pb::UserSettings>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let id = convert::user_id("user_id", &req.user_id)?;
        let new = convert::user_settings(&req)?;
        let expected = match req.expected_version {
            0 => None,
            n => Some(i64::try_from(n).map_err(|_| status::invalid_argument("expected_version", "is too large"))?),
        };
        let scope = account.clone();
        self.mutate(
            caller,
            method!("UserService", "UpdateUserSettings", USER_SETTINGS_CHANGED),
            &req.request_id,
            &req,
            Some((scope, Need::ActiveMember)),
            move |tx, ctx| {
                Box::pin(async move {
                    let stored = settings::update(tx, ctx, &account, &id, new, expected).await?;
                    Ok(convert::user_settings_to_pb(&account, &id, &stored))
                })
            },
        )
        .await
    }
}
