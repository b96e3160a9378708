//! `roster.licensing.v1.ContentService`.

use roster_platform::auth::principal;
use roster_platform::{rerun, status};
use roster_proto::licensing::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, convert, error, no_lookups};
use crate::app::content::{self, NewContent};
use crate::directory::Freshness;
use crate::domain::access::{Caller, Member};
use crate::domain::model::Id;

#[tonic::async_trait]
impl pb::content_service_server::ContentService for Api {
    async fn register_content(
        &self,
        request: Request<pb::RegisterContentRequest>,
    ) -> Result<Response<pb::ContentItem>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let owner = convert::optional_id("owner_user_id", &req.owner_user_id)?;
        let new = NewContent {
            kind: convert::content_kind("kind", req.kind)?,
            title: convert::text("title", &req.title)?,
            uses_pmi: req.uses_pmi,
        };
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let acting = match &caller {
            Caller::Member(acting) => Some(acting.clone()),
            _ => None,
        };
        // Runs only once mutate admitted an active member.
        let owner_lookup = async {
            match (owner, acting) {
                (Some(id), Some(acting)) if id != acting.user_id => self.subject(&account, &id).await,
                (_, Some(acting)) => Ok(acting),
                (_, None) => Err(error::domain_status(&crate::domain::DomainError::PrincipalNotAllowed)),
            }
        };
        self.mutate(
            &who,
            method!("ContentService", "RegisterContent", CONTENT_REGISTERED),
            &req.request_id,
            &req,
            &account,
            caller,
            |c| c.active_member().map(drop),
            owner_lookup,
            move |tx, ctx, caller, owner| {
                Box::pin(async move {
                    content::register(tx, ctx, caller, owner, new).await.map(|i| convert::content_item(&i))
                })
            },
        )
        .await
    }

    async fn list_content(
        &self,
        request: Request<pb::ListContentRequest>,
    ) -> Result<Response<pb::ListContentResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let owner = convert::id("owner_user_id", &req.owner_user_id)?;
        let kind = convert::optional_content_kind("kind", req.kind)?;
        let page = self.page(&req, &who)?;
        let (after, limit, id) = (page.after.clone(), page.fetch_limit(), account.clone());
        let items = self
            .read(&who, &account, Freshness::Cached, move |tx, _, caller| {
                Box::pin(async move { content::list(tx, caller, &id, &owner, kind, after.as_deref(), limit).await })
            })
            .await?;
        let (items, next_page_token) = page.finish(items, |item| item.id.to_string());
        Ok(Response::new(pb::ListContentResponse {
            items: items.iter().map(convert::content_item).collect(),
            next_page_token,
        }))
    }

    async fn transfer_content(
        &self,
        request: Request<pb::TransferContentRequest>,
    ) -> Result<Response<pb::TransferContentResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let from = convert::id("from_user_id", &req.from_user_id)?;
        let to = convert::id("to_user_id", &req.to_user_id)?;
        let kinds = convert::content_kinds("kinds", &req.kinds)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        // The owner must be in the account; a target outside it is the use case's 1001.
        let members = async { Ok((self.subject(&account, &from).await?, target(self, &account, &to).await?)) };
        let id = account.clone();
        self.mutate(
            &who,
            method!("ContentService", "TransferContent", CONTENT_TRANSFERRED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            members,
            move |tx, ctx, caller, (owner, target)| {
                Box::pin(async move {
                    let done = content::transfer(tx, ctx, caller, &id, &owner.user_id, target.as_ref(), &kinds).await?;
                    Ok(pb::TransferContentResponse {
                        transfer_id: done.transfer_id.to_string(),
                        moved: Some(convert::counts(&done.moved)),
                        kept: Some(convert::counts(&done.kept)),
                    })
                })
            },
        )
        .await
    }

    async fn preview_user_removal(
        &self,
        request: Request<pb::PreviewUserRemovalRequest>,
    ) -> Result<Response<pb::UserRemovalPreview>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let to = convert::optional_id("to_user_id", &req.to_user_id)?;
        let kinds = match &to {
            Some(_) => Some(convert::content_kinds("kinds", &req.kinds)?),
            None if req.kinds.is_empty() => None,
            None => return Err(status::invalid_argument("kinds", "only with to_user_id: the kinds to transfer")),
        };
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        caller.identity().map_err(|refusal| error::domain_status(&refusal))?;
        // The user must be in the account; a target outside it is the use case's 1001.
        let owner = self.subject(&account, &user).await?;
        let target = match &to {
            Some(to) => target(self, &account, to).await?,
            None => None,
        };
        let transfer_to = kinds.as_ref().map(|kinds| (target.as_ref(), kinds));
        let (db, caller, account, user) = (&self.db, &caller, &account, &owner.user_id);
        let preview = rerun::once_more(db, false, || async move {
            let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
            content::preview_removal(&mut conn, caller, account, user, transfer_to).await.map_err(error::to_status)
        })
        .await?;
        Ok(Response::new(pb::UserRemovalPreview {
            licenses: Some(convert::license_set_to_pb(&preview.licenses)),
            transferred: Some(convert::counts(&preview.transferred)),
            remaining: Some(convert::counts(&preview.remaining)),
        }))
    }

    async fn undo_content_transfer(
        &self,
        request: Request<pb::UndoContentTransferRequest>,
    ) -> Result<Response<pb::UndoContentTransferResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let transfer = convert::id("transfer_id", &req.transfer_id)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("ContentService", "UndoContentTransfer", CONTENT_TRANSFER_UNDONE),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    let returned = content::undo_transfer(tx, ctx, caller, &id, &transfer).await?;
                    Ok(pb::UndoContentTransferResponse { returned: Some(convert::counts(&returned)) })
                })
            },
        )
        .await
    }

    async fn delete_user_content(
        &self,
        request: Request<pb::DeleteUserContentRequest>,
    ) -> Result<Response<pb::DeleteUserContentResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("ContentService", "DeleteUserContent", CONTENT_DELETED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            no_lookups(),
            move |tx, ctx, caller, ()| {
                Box::pin(async move {
                    let deleted = content::delete_user_content(tx, ctx, caller, &id, &user).await?;
                    Ok(pb::DeleteUserContentResponse { deleted: Some(convert::counts(&deleted)) })
                })
            },
        )
        .await
    }

    async fn rehome_user_content(
        &self,
        request: Request<pb::RehomeUserContentRequest>,
    ) -> Result<Response<pb::RehomeUserContentResponse>, Status> {
        let who = principal(&request)?;
        let req = request.into_inner();
        let account = convert::id("account_id", &req.account_id)?;
        let user = convert::id("user_id", &req.user_id)?;
        let new_account = convert::id("new_account_id", &req.new_account_id)?;
        // Steps are identity's alone; the user must now be in the account they moved to.
        let caller = self.caller(&who, &account, Freshness::Fresh).await?;
        let id = account.clone();
        self.mutate(
            &who,
            method!("ContentService", "RehomeUserContent", CONTENT_REHOMED),
            &req.request_id,
            &req,
            &account,
            caller,
            Caller::identity,
            self.subject(&new_account, &user),
            move |tx, ctx, caller, member| {
                Box::pin(async move {
                    let (user, new_account) = (&member.user_id, &member.account_id);
                    let moved = content::rehome_user_content(tx, ctx, caller, &id, user, new_account).await?;
                    Ok(pb::RehomeUserContentResponse { moved: Some(convert::counts(&moved)) })
                })
            },
        )
        .await
    }
}

/// The transfer target as identity knows them, or `None` when they are not a user of the
/// account (the use case turns that into `TARGET_NOT_IN_ACCOUNT`, code 1001).
async fn target(api: &Api, account: &Id, user: &Id) -> Result<Option<Member>, Status> {
    match api.subject(account, user).await {
        Ok(member) => Ok(Some(member)),
        // Only "user not found" reaches here: the caller's account was resolved first.
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}
