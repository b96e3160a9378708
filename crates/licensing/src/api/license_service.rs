//! `roster.licensing.v1.LicenseService`.

use roster_platform::auth::principal;
use roster_proto::licensing::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, convert, no_lookups};
use crate::app::{audit_trail, licenses};
use crate::directory::Freshness;
use crate::domain::access::{Caller, Privilege};
use crate::domain::model::LicenseType;

#[tonic::async_trait]
impl pb::license_service_server::LicenseService for Api {
    async fn set_seats(&self, request: Request<pb::SetSeatsRequest>) -> Result<Response<pb::SeatPool>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let license_type = convert::license_type("license_type", req.license_type)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "SetSeats", SEATS_SET),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::owner_or_operator,
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    let pool = licenses::set_seats(tx, ctx, caller, &id, license_type, req.capacity).await?;
                    Ok(convert::seat_pool(&id, &pool))
                })
            },
        )
        .await
    }

    async fn list_seats(
        &self,
        request: Request<pb::ListSeatsRequest>,
    ) -> Result<Response<pb::ListSeatsResponse>, Status> {
        let who = principal(&request)?;
        let account = convert::id("account_id", &request.get_ref().account_id)?;
        let id = account.clone();
        let pools = self
            .read(&who, &account, Freshness::Cached, move |tx, _, caller| {
                Box::pin(async move { licenses::list_seats(tx, caller, &id).await })
            })
            .await?;
        Ok(Response::new(pb::ListSeatsResponse {
            seats: pools.iter().map(|p| convert::seat_pool(&account, p)).collect(),
        }))
    }

    async fn assign_license(
        &self,
        request: Request<pb::AssignLicenseRequest>,
    ) -> Result<Response<pb::Assignment>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let license_type = convert::license_type("license_type", req.license_type)?;
        let asked = self.caller_and_subject(&who, &account, &user).await?;
        self.mutate(
            &who,
            method!("LicenseService", "AssignLicense", LICENSE_ASSIGNED),
            &req.request_id,
            &req,
            &account,
            asked.caller,
            |c| c.member_with(Privilege::ManageLicenses).map(drop),
            self.asked_subject(asked.subject, &account, &user),
            move |tx, ctx, caller, assignee| {
                Box::pin(async move {
                    licenses::assign(tx, ctx, caller, assignee, license_type).await.map(|a| convert::assignment(&a))
                })
            },
        )
        .await
    }

    async fn unassign_license(
        &self,
        request: Request<pb::UnassignLicenseRequest>,
    ) -> Result<Response<pb::UnassignLicenseResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let license_type = convert::license_type("license_type", req.license_type)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "UnassignLicense", LICENSE_UNASSIGNED),
            &req.request_id,
            &req,
            &account,
            caller,
            |c| c.member_with(Privilege::ManageLicenses).map(drop),
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    let (assignment, detached) = licenses::unassign(tx, ctx, caller, &id, &user, license_type).await?;
                    Ok(pb::UnassignLicenseResponse {
                        assignment: Some(convert::assignment(&assignment)),
                        detached_phone_numbers: detached.iter().map(|n| n.as_str().to_owned()).collect(),
                    })
                })
            },
        )
        .await
    }

    async fn list_assignments(
        &self,
        request: Request<pb::ListAssignmentsRequest>,
    ) -> Result<Response<pb::ListAssignmentsResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::optional_id("user_id", &req.user_id)?;
        let license_type: Option<LicenseType> = convert::optional_license_type("license_type", req.license_type)?;
        let page = self.page(&req, &who)?;
        let (after, limit, id) = (page.after.clone(), page.fetch_limit(), account.clone());
        let rows = self
            .read(&who, &account, Freshness::Cached, move |tx, _, caller| {
                Box::pin(async move {
                    licenses::list_assignments(tx, caller, &id, user.as_ref(), license_type, after.as_deref(), limit)
                        .await
                })
            })
            .await?;
        let (rows, next_page_token) = page.finish(rows, crate::store::seats::cursor);
        Ok(Response::new(pb::ListAssignmentsResponse {
            assignments: rows.iter().map(convert::assignment).collect(),
            next_page_token,
        }))
    }

    async fn add_phone_number(
        &self,
        request: Request<pb::AddPhoneNumberRequest>,
    ) -> Result<Response<pb::PhoneNumber>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let number = convert::phone_number("number", &req.number)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "AddPhoneNumber", PHONE_NUMBER_ADDED),
            &req.request_id,
            &req,
            &account,
            caller,
            |c| c.member_with(Privilege::ManageLicenses).map(drop),
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    licenses::add_phone_number(tx, ctx, caller, &id, number).await.map(|l| convert::phone_line(&l))
                })
            },
        )
        .await
    }

    async fn attach_phone_number(
        &self,
        request: Request<pb::AttachPhoneNumberRequest>,
    ) -> Result<Response<pb::PhoneNumber>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let number = convert::phone_number("number", &req.number)?;
        let user = convert::id("user_id", &req.user_id)?;
        let asked = self.caller_and_subject(&who, &account, &user).await?;
        self.mutate(
            &who,
            method!("LicenseService", "AttachPhoneNumber", PHONE_NUMBER_ATTACHED),
            &req.request_id,
            &req,
            &account,
            asked.caller,
            |c| c.member_with(Privilege::ManageLicenses).map(drop),
            self.asked_subject(asked.subject, &account, &user),
            move |tx, ctx, caller, holder| {
                Box::pin(async move {
                    licenses::attach_phone_number(tx, ctx, caller, holder, number)
                        .await
                        .map(|l| convert::phone_line(&l))
                })
            },
        )
        .await
    }

    async fn detach_phone_number(
        &self,
        request: Request<pb::DetachPhoneNumberRequest>,
    ) -> Result<Response<pb::PhoneNumber>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let number = convert::phone_number("number", &req.number)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "DetachPhoneNumber", PHONE_NUMBER_DETACHED),
            &req.request_id,
            &req,
            &account,
            caller,
            |c| c.member_with(Privilege::ManageLicenses).map(drop),
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    licenses::detach_phone_number(tx, ctx, caller, &id, number).await.map(|l| convert::phone_line(&l))
                })
            },
        )
        .await
    }

    async fn list_phone_numbers(
        &self,
        request: Request<pb::ListPhoneNumbersRequest>,
    ) -> Result<Response<pb::ListPhoneNumbersResponse>, Status> {
        let who = principal(&request)?;
        let account = convert::id("account_id", &request.get_ref().account_id)?;
        let id = account.clone();
        let lines = self
            .read(&who, &account, Freshness::Cached, move |tx, _, caller| {
                Box::pin(async move { licenses::list_phone_numbers(tx, caller, &id).await })
            })
            .await?;
        Ok(Response::new(pb::ListPhoneNumbersResponse {
            phone_numbers: lines.iter().map(convert::phone_line).collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let page = self.page(&req, &who)?;
        let (before, limit, id) = (page.after.clone(), page.fetch_limit(), account.clone());
        // Records outlive the account (a refund in an account that then closed), so operators
        // may read a closed account's trail.
        let events = self
            .read_records(&who, &account, move |tx, _, caller| {
                Box::pin(async move { audit_trail::list(tx, caller, &id, before.as_deref(), limit).await })
            })
            .await?;
        let (events, next_page_token) = page.finish(events, |event| event.id.clone());
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.iter().map(convert::audit_event).collect(),
            next_page_token,
        }))
    }

    async fn reclaim_licenses(
        &self,
        request: Request<pb::ReclaimLicensesRequest>,
    ) -> Result<Response<pb::ReclaimLicensesResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        // Steps are identity's alone; the user must be in the account as identity knows it now.
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "ReclaimLicenses", LICENSES_RECLAIMED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            self.subject(&account, &user),
            move |tx, ctx, caller, member| {
                Box::pin(async move {
                    let reclaimed = licenses::reclaim(tx, ctx, caller, &id, &member.user_id).await?;
                    Ok(pb::ReclaimLicensesResponse { reclaimed: Some(convert::license_set_to_pb(&reclaimed)) })
                })
            },
        )
        .await
    }

    async fn reclaim_licenses_batch(
        &self,
        request: Request<pb::ReclaimLicensesBatchRequest>,
    ) -> Result<Response<pb::ReclaimLicensesBatchResponse>, Status> {
        let who = principal(&request)?;
        Ok(Response::new(self.reclaim_batch(&who, request.into_inner()).await?))
    }

    async fn restore_licenses(
        &self,
        request: Request<pb::RestoreLicensesRequest>,
    ) -> Result<Response<pb::RestoreLicensesResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let set = convert::license_set("licenses", req.licenses.as_ref())?;
        // Steps are identity's alone; the user must be in the account as identity knows it now.
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("LicenseService", "RestoreLicenses", LICENSES_RESTORED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            self.subject(&account, &user),
            move |tx, ctx, caller, member| {
                Box::pin(async move {
                    let (restored, missed) = licenses::restore(tx, ctx, caller, &id, &member.user_id, &set).await?;
                    Ok(pb::RestoreLicensesResponse {
                        restored: Some(convert::license_set_to_pb(&restored)),
                        not_restored: Some(convert::license_set_to_pb(&missed)),
                    })
                })
            },
        )
        .await
    }

    async fn move_phone_licenses(
        &self,
        request: Request<pb::MovePhoneLicensesRequest>,
    ) -> Result<Response<pb::MovePhoneLicensesResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let from = convert::id("from_user_id", &req.from_user_id)?;
        let to = convert::id("to_user_id", &req.to_user_id)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        // Both users must be in the account, as identity knows it now (SPEC R34).
        let members = async { Ok((self.subject(&account, &from).await?, self.subject(&account, &to).await?)) };
        self.mutate(
            &who,
            method!("LicenseService", "MovePhoneLicenses", PHONE_LICENSES_MOVED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            members,
            move |tx, ctx, caller, (owner, target)| {
                Box::pin(async move {
                    let moved = licenses::move_phone(tx, ctx, caller, &owner.user_id, target).await?;
                    Ok(pb::MovePhoneLicensesResponse { moved: Some(convert::license_set_to_pb(&moved)) })
                })
            },
        )
        .await
    }
}
