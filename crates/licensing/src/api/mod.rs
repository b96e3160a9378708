//! The gRPC surface of licensing: `LicenseService`, `ContentService` and `BillingService`.
//! Handlers decode and validate (`convert`), ask identity who the caller is, run one use case
//! in one transaction, and encode; errors map to statuses in one place (`error`).

/// A change RPC: its full gRPC path (the idempotency scope) and its audit action, recorded
/// whether the change is made or refused.
macro_rules! method {
    ($service:literal, $method:literal, $action:ident) => {
        crate::api::Method {
            path: concat!("/roster.licensing.v1.", $service, "/", $method),
            action: crate::app::actions::$action,
        }
    };
}

pub mod billing_service;
pub mod content_service;
pub mod convert;
pub mod error;
pub mod events_service;
pub mod license_service;
mod reclaim_batch;

use std::future::Future;

use futures_util::future::BoxFuture;
use prost::Message;
use roster_platform::auth::Principal;
use roster_platform::clock::SharedClock;
use roster_platform::db::{Conn, Database, Tx};
use roster_platform::idempotency::{self, Key};
use roster_platform::pagination::PageTokens;
use roster_platform::{rerun, status};
use tonic::{Response, Status};

use crate::app::{self, Ctx};
use crate::directory::{Directory, Freshness};
use crate::domain::DomainError;
use crate::domain::access::{Caller, Member};
use crate::domain::model::Id;

/// What one question to identity told: the caller and, for a user caller, the user named.
struct Asked {
    caller: Caller,
    subject: Option<Result<Member, Status>>,
}

/// A change RPC's gRPC path and audit action (see `method!`).
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub path: &'static str,
    pub action: &'static str,
}

/// Shared by the three services; cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    db: Database,
    directory: Directory,
    clock: SharedClock,
    pages: PageTokens,
}

/// For handlers whose use case needs nothing more from identity than the caller.
fn no_lookups() -> std::future::Ready<Result<(), Status>> {
    std::future::ready(Ok(()))
}

impl Api {
    pub fn new(db: Database, directory: Directory, clock: SharedClock, pages: PageTokens) -> Self {
        Self { db, directory, clock, pages }
    }

    /// The page a list request asks for; its token must be one this list handed this caller
    /// for the same filter (see `roster_platform::pagination`).
    fn page<R: roster_proto::paged::Paged>(
        &self,
        request: &R,
        caller: &Principal,
    ) -> Result<roster_platform::pagination::PageRequest, Status> {
        self.pages.request(request, &caller.audit_name(), self.clock.now_ms())
    }

    fn ctx(&self, principal: &Principal, request_id: &str) -> Ctx {
        Ctx { principal: principal.clone(), request_id: request_id.to_owned(), now_ms: self.clock.now_ms() }
    }

    /// The caller in `account`, from identity (see [`app::resolve_caller`]).
    async fn caller(&self, principal: &Principal, account: &Id, freshness: Freshness) -> Result<Caller, Status> {
        app::resolve_caller(&self.directory, principal, account, freshness).await.map_err(error::to_status)
    }

    /// A user of `account` as identity knows them now.
    async fn subject(&self, account: &Id, user: &Id) -> Result<Member, Status> {
        app::subject(&self.directory, account, user).await.map_err(error::to_status)
    }

    /// The caller in `account` and, for a user caller, the user the request names, both asked
    /// of identity afresh in one call (SPEC R34). The named user's answer is used only once the
    /// caller has passed its checks, so a stranger learns nothing from it; for other callers it
    /// is asked then ([`Api::subject`]), as before.
    async fn caller_and_subject(&self, principal: &Principal, account: &Id, user: &Id) -> Result<Asked, Status> {
        let Principal::User { user_id } = principal else {
            return Ok(Asked { caller: self.caller(principal, account, Freshness::Fresh).await?, subject: None });
        };
        let not_found = |refusal: DomainError| error::domain_status(&refusal);
        let me = Id::parse(user_id).map_err(|_| not_found(DomainError::AccountNotFound))?;
        let found = self
            .directory
            .members(account, &[me.clone(), user.clone()])
            .await
            .map_err(|lookup| error::to_status(lookup.into()))?;
        let caller = found
            .iter()
            .find(|member| member.user_id == me)
            .cloned()
            .map(Caller::Member)
            .ok_or_else(|| not_found(DomainError::AccountNotFound))?;
        let subject = found.into_iter().find(|member| member.user_id == *user).ok_or(DomainError::UserNotFound);
        Ok(Asked { caller, subject: Some(subject.map_err(not_found)) })
    }

    /// [`Api::caller_and_subject`]'s named user, asked now if it was not asked with the caller.
    async fn asked_subject(
        &self,
        asked: Option<Result<Member, Status>>,
        account: &Id,
        user: &Id,
    ) -> Result<Member, Status> {
        match asked {
            Some(answer) => answer,
            None => self.subject(account, user).await,
        }
    }

    /// Runs a mutating use case exactly once per (caller, method, request id), in this order
    /// (SPEC R34): the caller, already resolved from identity's current data, must pass
    /// `allowed` (the same check the use case makes; a user must also be an active member);
    /// only then is an earlier answer for the same request id replayed; otherwise `lookups`
    /// asks identity about the users the request names (so a stranger learns nothing about
    /// them) and `op` runs in the idempotency transaction. A refusal rolls everything back and
    /// is audited.
    #[allow(clippy::too_many_arguments)]
    async fn mutate<Req, Resp, P, F>(
        &self,
        principal: &Principal,
        method: Method,
        request_id: &str,
        request: &Req,
        account: &Id,
        caller: Caller,
        allowed: impl FnOnce(&Caller) -> Result<(), DomainError>,
        lookups: impl Future<Output = Result<P, Status>>,
        op: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Message,
        Resp: Message + Default,
        P: Sync,
        F: for<'t> FnOnce(&'t mut Tx, &'t Ctx, &'t Caller, &'t P) -> BoxFuture<'t, app::Result<Resp>> + Clone,
    {
        let key = Key::new(&principal.audit_name(), method.path, request_id, request)?;
        let ctx = self.ctx(principal, request_id);
        if let Err(refusal) = caller.may_change().and_then(|()| allowed(&caller)) {
            return Err(self.refused(&ctx, account, method.action, &refusal).await);
        }
        if let Some(earlier) = idempotency::replayed::<Resp>(&self.db, &key).await? {
            return Ok(Response::new(earlier));
        }
        let looked_up = lookups.await?;
        let all = (ctx, caller, looked_up);
        // A lost connection or conflict runs it once more (see `roster_platform::rerun`).
        let attempt = || {
            let (key, op, all) = (key.clone(), op.clone(), &all);
            async move {
                let once =
                    idempotency::once(&self.db, key, all.0.now_ms, all, move |tx, all| op(tx, &all.0, &all.1, &all.2));
                match once.await? {
                    Ok(response) => Ok(Ok(response)),
                    Err(app::Error::Domain(refusal)) => Ok(Err(refusal)),
                    Err(error) => Err(error::to_status(error)),
                }
            }
        };
        match roster_platform::fair::in_lane(account.as_str(), rerun::once_more(&self.db, true, attempt)).await? {
            Ok(response) => Ok(Response::new(response)),
            Err(refusal) => Err(self.refused(&all.0, account, method.action, &refusal).await),
        }
    }

    /// The one path for refused changes (SPEC R33): records the refusal and returns its
    /// status. Called only when no transaction of the request is open, and written in a single
    /// statement on a connection of its own, so a refusal never holds one connection while it
    /// waits for another (on SQLite's one writer, that wait would stall every account).
    async fn refused(&self, ctx: &Ctx, account: &Id, action: &str, refusal: &DomainError) -> Status {
        let reason = error::reason(refusal).reason;
        let recorded = async {
            let mut conn = self.db.writer().await?;
            app::audit_refusal(&mut conn, ctx, account, action, reason).await
        };
        if let Err(error) = recorded.await {
            tracing::warn!(%error, action, reason, "could not audit a refused request");
        }
        error::domain_status(refusal)
    }

    /// Runs a read-only use case for the caller in `account` on a reader connection, without a
    /// transaction: each read sees what is committed as it runs (as in a READ COMMITTED
    /// transaction), and the BEGIN and ROLLBACK round trips are saved.
    /// [`Api::read`] of records an account keeps after it closes (its billing): operators may
    /// read them for a closed account too; anyone else is resolved as usual, afresh.
    async fn read_records<T, F>(&self, principal: &Principal, account: &Id, op: F) -> Result<T, Status>
    where
        F: for<'t> FnOnce(&'t mut Conn, &'t Ctx, &'t Caller) -> BoxFuture<'t, app::Result<T>> + Clone,
    {
        let caller = app::resolve_record_reader(&self.directory, principal, account).await.map_err(error::to_status)?;
        self.on_reader(principal, &caller, op).await
    }

    /// [`Api::read_records`] of an account's billing, which belongs to its owner (SPEC R5).
    /// Operators may read it too: support answers billing questions and checks billing before
    /// an R11 reassignment. Every operator read is recorded in the account's audit trail
    /// (`billing.read_by_operator`, naming `rpc`), and a read that cannot be recorded is not
    /// answered.
    async fn read_billing<T, F>(&self, principal: &Principal, account: &Id, rpc: &str, op: F) -> Result<T, Status>
    where
        F: for<'t> FnOnce(&'t mut Conn, &'t Ctx, &'t Caller) -> BoxFuture<'t, app::Result<T>> + Clone,
    {
        let read = self.read_records(principal, account, op).await?;
        if let Principal::Operator { .. } = principal {
            let ctx = self.ctx(principal, "");
            let recorded = async {
                let mut conn = self.db.writer().await?;
                let details = serde_json::json!({ "rpc": rpc });
                app::audit(&mut conn, &ctx, account, app::actions::BILLING_READ_BY_OPERATOR, "billing", details).await
            };
            recorded.await.map_err(error::to_status)?;
        }
        Ok(read)
    }

    async fn read<T, F>(&self, principal: &Principal, account: &Id, freshness: Freshness, op: F) -> Result<T, Status>
    where
        F: for<'t> FnOnce(&'t mut Conn, &'t Ctx, &'t Caller) -> BoxFuture<'t, app::Result<T>> + Clone,
    {
        let caller = self.caller(principal, account, freshness).await?;
        self.on_reader(principal, &caller, op).await
    }

    /// Runs a read for `caller` on a reader connection; a lost connection runs it once more on
    /// a fresh one.
    async fn on_reader<T, F>(&self, principal: &Principal, caller: &Caller, op: F) -> Result<T, Status>
    where
        F: for<'t> FnOnce(&'t mut Conn, &'t Ctx, &'t Caller) -> BoxFuture<'t, app::Result<T>> + Clone,
    {
        let ctx = self.ctx(principal, "");
        let attempt = || {
            let (op, ctx) = (op.clone(), &ctx);
            async move {
                let mut conn = self.db.reader().await.map_err(|e| status::from_db(&e))?;
                op(&mut conn, ctx, caller).await.map_err(error::to_status)
            }
        };
        rerun::once_more(&self.db, false, attempt).await
    }
}
