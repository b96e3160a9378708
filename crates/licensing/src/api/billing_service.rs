//! `roster.licensing.v1.BillingService`. Billing reads ask identity afresh on every call, so
//! they follow an ownership transfer at once (SPEC R5).

use roster_platform::auth::{Principal, principal};
use roster_platform::{rerun, status};
use roster_proto::licensing::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, convert, error, no_lookups};
use crate::app::billing::{self, NewSubscription};
use crate::directory::Freshness;
use crate::domain::DomainError;
use crate::domain::access::Caller;

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for Api {
    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let new = NewSubscription {
            plan_name: convert::text("plan_name", &req.plan_name)?,
            price_minor: req.price_minor,
            currency: convert::currency("currency", &req.currency)?,
            period_start_ms: req.period_start_ms,
            period_end_ms: req.period_end_ms,
        };
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("BillingService", "CreateSubscription", SUBSCRIPTION_CREATED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::owner_or_operator,
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    billing::create_subscription(tx, ctx, caller, &id, new).await.map(|s| convert::subscription(&s))
                })
            },
        )
        .await
    }

    async fn get_billing_overview(
        &self,
        request: Request<pb::GetBillingOverviewRequest>,
    ) -> Result<Response<pb::BillingOverview>, Status> {
        let who = principal(&request)?;
        let account = convert::id("account_id", &request.get_ref().account_id)?;
        let id = account.clone();
        let (subscriptions, method) = self
            .read_billing(&who, &account, "GetBillingOverview", move |tx, _, caller| {
                Box::pin(async move { billing::overview(tx, caller, &id).await })
            })
            .await?;
        Ok(Response::new(pb::BillingOverview {
            subscriptions: subscriptions.iter().map(convert::subscription).collect(),
            payment_method: method.as_ref().map(convert::payment_method),
        }))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let page = self.page(&req, &who)?;
        let (after, limit, id) = (page.after.clone(), page.fetch_limit(), account.clone());
        let rows = self
            .read(&who, &account, Freshness::Fresh, move |tx, _, caller| {
                Box::pin(async move { billing::invoices(tx, caller, &id, after.as_deref(), limit).await })
            })
            .await?;
        let (rows, next_page_token) = page.finish(rows, |invoice| invoice.id.to_string());
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: rows.iter().map(convert::invoice).collect(),
            next_page_token,
        }))
    }

    async fn list_refunds(
        &self,
        request: Request<pb::ListRefundsRequest>,
    ) -> Result<Response<pb::ListRefundsResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let page = self.page(&req, &who)?;
        let (after, limit, id) = (page.after.clone(), page.fetch_limit(), account.clone());
        let rows = self
            .read_billing(&who, &account, "ListRefunds", move |tx, _, caller| {
                Box::pin(async move { billing::refunds(tx, caller, &id, after.as_deref(), limit).await })
            })
            .await?;
        let (rows, next_page_token) = page.finish(rows, |refund| refund.id.to_string());
        Ok(Response::new(pb::ListRefundsResponse {
            refunds: rows.iter().map(convert::refund).collect(),
            next_page_token,
        }))
    }

    async fn list_my_refunds(
        &self,
        request: Request<pb::ListMyRefundsRequest>,
    ) -> Result<Response<pb::ListRefundsResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        // A user's own records, asked by the user themselves: no account to check them against.
        let Principal::User { user_id } = &who else {
            return Err(error::domain_status(&DomainError::PrincipalNotAllowed));
        };
        let user = convert::id("user", user_id)?;
        let page = self.page(&req, &who)?;
        let (after, limit) = (page.after.clone(), page.fetch_limit());
        let (db, user, after) = (&self.db, &user, after.as_deref());
        let rows = rerun::once_more(db, false, || async move {
            let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
            billing::refunds_to(&mut conn, user, after, limit).await.map_err(error::to_status)
        })
        .await?;
        let (rows, next_page_token) = page.finish(rows, |refund| refund.id.to_string());
        Ok(Response::new(pb::ListRefundsResponse {
            refunds: rows.iter().map(convert::refund).collect(),
            next_page_token,
        }))
    }

    async fn quote_refund(
        &self,
        request: Request<pb::QuoteRefundRequest>,
    ) -> Result<Response<pb::RefundQuote>, Status> {
        let who = principal(&request)?;
        let req = request.get_ref();
        let account = convert::id("account_id", &req.account_id)?;
        let subscription = convert::id("subscription_id", &req.subscription_id)?;
        let id = account.clone();
        let quote = self
            .read(&who, &account, Freshness::Fresh, move |tx, ctx, caller| {
                Box::pin(async move {
                    let (sub, proration) = billing::quote(tx, ctx, caller, &id, &subscription).await?;
                    Ok(convert::quote(&sub, &proration, ctx.now_ms))
                })
            })
            .await?;
        Ok(Response::new(quote))
    }

    async fn refund_subscription(
        &self,
        request: Request<pb::RefundSubscriptionRequest>,
    ) -> Result<Response<pb::Refund>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let subscription = convert::id("subscription_id", &req.subscription_id)?;
        let beneficiary = convert::optional_id("beneficiary_user_id", &req.beneficiary_user_id)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("BillingService", "RefundSubscription", SUBSCRIPTION_REFUNDED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    billing::refund(tx, ctx, caller, &id, &subscription, beneficiary).await.map(|r| convert::refund(&r))
                })
            },
        )
        .await
    }
}
