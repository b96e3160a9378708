//! The gRPC surface of identity: `AccountService`, `UserService`, `RoleService`, `BulkService`,
//! `Operations` (the sagas' progress) and the internal `DirectoryService`. Handlers decode and validate (`convert`), run one use case in
//! one transaction, and encode; errors map to statuses in one place (`error`).

/// A change RPC: its full gRPC path (the idempotency scope) and its audit action, recorded
/// whether the change is made or refused.
macro_rules! method {
    ($service:literal, $method:literal, $action:ident) => {
        crate::api::Method {
            path: concat!("/roster.identity.v1.", $service, "/", $method),
            action: crate::effects::actions::$action,
        }
    };
}

pub mod account_service;
pub mod bulk_service;
pub mod convert;
pub mod directory_service;
pub mod error;
pub mod events_service;
pub mod operations_service;
pub mod role_service;
pub mod user_service;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use prost::Message;
use roster_platform::auth::Principal;
use roster_platform::clock::SharedClock;
use roster_platform::db::{Conn, Database, Tx};
use roster_platform::fair::{self, FairShare};
use roster_platform::idempotency::{self, Key, Receipt, Recorded};
use roster_platform::pagination::PageTokens;
use roster_platform::{rerun, status};
use roster_proto::operations::v1 as ops;
use roster_workflow::{Engine, Instance, Started};
use tokio_util::sync::CancellationToken;
use tonic::{Response, Status};

use crate::domain::DomainError;
use crate::domain::privileges::Need;
use crate::domain::values::AccountId;
use crate::effects::{self, Ctx};
use crate::sagas::Licensing;

/// How long a saga RPC waits for its operation before answering with it still running.
const SAGA_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Decides, from current data, whether a caller may have an earlier answer replayed.
type Gate = Box<dyn for<'t> FnOnce(&'t mut Tx, &'t Ctx) -> BoxFuture<'t, effects::Result<()>> + Send>;

/// A change run once per key: its answer or refusal, or the status it failed with.
type Keyed<Resp> = Result<effects::Result<Resp>, Status>;

/// What a saga use case hands back: a saga it started (this replica drives it), or an
/// existing operation it repaired (whichever worker is free picks it up).
trait Launch: Send + 'static {
    fn instance(&self) -> &Instance;
    /// Called once the use case's transaction has committed.
    fn launch(self, engine: &Engine);
}

impl Launch for Started {
    fn instance(&self) -> &Instance {
        Started::instance(self)
    }

    fn launch(self, engine: &Engine) {
        engine.drive_started(self);
    }
}

impl Launch for Instance {
    fn instance(&self) -> &Instance {
        self
    }

    fn launch(self, engine: &Engine) {
        engine.wake();
    }
}

/// A change RPC's gRPC path and audit action (see `method!`).
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub path: &'static str,
    pub action: &'static str,
}

/// Shared by every identity service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    db: Database,
    clock: SharedClock,
    engine: Engine,
    licensing: Licensing,
    pages: PageTokens,
    /// Cancelled as the server drains: streams end with a final status instead of being cut.
    draining: CancellationToken,
    /// Who called lately, and each account's turns while others are being served (see
    /// `roster_platform::fair`); a bulk run gives way to them too.
    fair: Arc<FairShare>,
}

impl Api {
    pub fn new(
        db: Database,
        clock: SharedClock,
        engine: Engine,
        licensing: Licensing,
        pages: PageTokens,
        draining: CancellationToken,
        fair: Arc<FairShare>,
    ) -> Self {
        Self { db, clock, engine, licensing, pages, draining, fair }
    }

    /// Runs a use case that starts a saga or repairs one (retry, resolve, cancel), once per
    /// request id like any change, then lets this replica's worker and watchers know and waits
    /// briefly: a short operation comes back done, a long one (or one waiting out an outage)
    /// running. A retried request gets the operation as it stands now.
    async fn start_saga<Req, L, F>(
        &self,
        principal: Principal,
        method: Method,
        request_id: &str,
        request: &Req,
        scope: Option<(AccountId, Need)>,
        op: F,
    ) -> Result<Response<ops::Operation>, Status>
    where
        Req: Message,
        L: Launch,
        F: for<'t> FnOnce(&'t mut Tx, &'t Ctx) -> BoxFuture<'t, effects::Result<L>> + Clone + Send + 'static,
    {
        let answer = Arc::new(Mutex::new(None::<L>));
        let slot = answer.clone();
        let started = self
            .mutate(principal, method, request_id, request, scope, move |tx, ctx| {
                Box::pin(async move {
                    op(tx, ctx).await.map(|answer| {
                        let operation = convert::operation(answer.instance());
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
                        operation
                    })
                })
            })
            .await?
            .into_inner();
        // The use case's own transaction committed only if the response names its operation:
        // a replay, or a twin request that committed first, answers with the twin's.
        let answer = answer.lock().unwrap_or_else(PoisonError::into_inner).take();
        match answer {
            Some(answer) if answer.instance().id == started.id => answer.launch(&self.engine),
            _ => self.engine.wake(),
        }
        self.engine.announce(&started.id);
        // The change has committed: a failure to read how far it got answers with it as started.
        let now = self.engine.wait_final(&started.id, SAGA_ANSWER_WAIT).await.unwrap_or_else(|error| {
            tracing::debug!(%error, "could not follow the operation it started; answering with it as started");
            None
        });
        Ok(Response::new(now.map_or(started, |instance| convert::operation(&instance))))
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

    /// The call's context; a call by a user or an operator also counts them as active.
    fn ctx(&self, principal: Principal, request_id: &str) -> Ctx {
        if !matches!(principal, Principal::Service { .. }) {
            self.fair.activity.seen(&principal.audit_name());
        }
        Ctx { principal, request_id: request_id.to_owned(), now_ms: self.clock.now_ms(), operation_id: String::new() }
    }

    /// Runs a mutating use case exactly once per (caller, method, request id): first the caller
    /// must be, from current data, at least what `scope` needs in its account; then a retry
    /// gets the first response back; a refusal rolls everything back and is audited. A lost
    /// database connection or a lost conflict runs it once more on a fresh connection (the
    /// request id makes that safe even after an unknown COMMIT; see `roster_platform::rerun`).
    async fn mutate<Req, Resp, F>(
        &self,
        principal: Principal,
        method: Method,
        request_id: &str,
        request: &Req,
        scope: Option<(AccountId, Need)>,
        op: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Message,
        Resp: Message + Default + 'static,
        F: for<'t> FnOnce(&'t mut Tx, &'t Ctx) -> BoxFuture<'t, effects::Result<Resp>> + Clone + Send + 'static,
    {
        self.mutate_keyed(principal, method, request_id, request, scope, move |db, key, ctx, gate| {
            Box::pin(idempotency::gated_once(db, key, ctx.now_ms, ctx, gate, op))
        })
        .await
    }

    /// [`Api::mutate`] for a use case that folds its answer's idempotency record into its own
    /// writes (see `roster_platform::idempotency::gated_once_folded`).
    async fn mutate_folded<Req, Resp, F>(
        &self,
        principal: Principal,
        method: Method,
        request_id: &str,
        request: &Req,
        scope: Option<(AccountId, Need)>,
        op: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Message,
        Resp: Message + Default + 'static,
        F: for<'t> FnOnce(&'t mut Tx, &'t Ctx, Receipt) -> BoxFuture<'t, effects::Result<Recorded<Resp>>>
            + Clone
            + Send
            + 'static,
    {
        self.mutate_keyed(principal, method, request_id, request, scope, move |db, key, ctx, gate| {
            Box::pin(idempotency::gated_once_folded(db, key, ctx.now_ms, ctx, gate, op))
        })
        .await
    }

    /// What both kinds of change share: the key, the caller's fair turn, the re-run after a
    /// lost connection, and the audited refusal. `keyed` runs the change once per key, with
    /// `gate` to decide whether a replay may be handed back.
    async fn mutate_keyed<Req, Resp, K>(
        &self,
        principal: Principal,
        method: Method,
        request_id: &str,
        request: &Req,
        scope: Option<(AccountId, Need)>,
        keyed: K,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Message,
        Resp: Message + Default,
        K: for<'a> FnOnce(&'a Database, Key, &'a Ctx, Gate) -> BoxFuture<'a, Keyed<Resp>> + Clone,
    {
        let key = Key::new(&principal.audit_name(), method.path, request_id, request)?;
        let account = scope.as_ref().map(|(account, _)| account.clone());
        let _turn = self.fair.turn(&principal.audit_name(), account.as_ref().map(AccountId::as_str)).await;
        let ctx = self.ctx(principal, request_id);
        let attempt = || {
            let (key, scope, keyed, ctx) = (key.clone(), scope.clone(), keyed.clone(), &ctx);
            async move {
                let gate: Gate = Box::new(move |tx, ctx| {
                    Box::pin(async move { effects::may_request(tx, ctx, scope.as_ref()).await })
                });
                match keyed(&self.db, key, ctx, gate).await? {
                    Ok(response) => Ok(Ok(response)),
                    Err(effects::Error::Domain(refusal)) => Ok(Err(refusal)),
                    Err(error) => Err(error::to_status(error)),
                }
            }
        };
        let lane = account.as_ref().map_or("", AccountId::as_str);
        match fair::in_lane(lane, rerun::once_more(&self.db, true, attempt)).await? {
            Ok(response) => Ok(Response::new(response)),
            Err(refusal) => Err(self.refused(&ctx, account.as_ref(), method.action, &refusal).await),
        }
    }

    /// Runs a use case in a transaction of its own that commits when it answers and rolls back
    /// when it refuses, for changes that are not once-per-request-id; a refusal comes back once
    /// the transaction is over, for [`Api::refused`]. Run once more after a lost connection
    /// before COMMIT, never after an unknown COMMIT.
    async fn transact<T, F>(&self, ctx: &Ctx, op: F) -> Result<std::result::Result<T, DomainError>, Status>
    where
        F: for<'t> FnOnce(&'t mut Tx, &'t Ctx) -> BoxFuture<'t, effects::Result<T>> + Clone,
    {
        let attempt = || {
            let op = op.clone();
            async move {
                let mut tx = self.db.begin().await.map_err(|e| status::from_db(&e))?;
                match op(&mut tx, ctx).await {
                    Ok(answer) => {
                        tx.commit().await.map_err(|e| status::from_commit(&e))?;
                        Ok(Ok(answer))
                    }
                    Err(error) => {
                        tx.rollback().await.map_err(|e| status::from_db(&e))?;
                        match error {
                            effects::Error::Domain(refusal) => Ok(Err(refusal)),
                            other => Err(error::to_status(other)),
                        }
                    }
                }
            }
        };
        rerun::once_more(&self.db, false, attempt).await
    }

    /// The one path for refused changes (SPEC R33): records the refusal and returns its
    /// status. Called only once the request's transaction is over, and written on a connection
    /// of its own in a single statement, so a refusal never holds a connection while it waits
    /// for another: on SQLite's one writer that wait lasted the pool's whole timeout, stalled
    /// every account's writes meanwhile, and then lost the record.
    async fn refused(&self, ctx: &Ctx, account: Option<&AccountId>, action: &str, refusal: &DomainError) -> Status {
        let reason = crate::effects::refusals::reason(refusal).reason;
        let recorded = async {
            let mut conn = self.db.writer().await?;
            effects::audit_refusal(&mut conn, ctx, account, action, reason).await
        };
        if let Err(error) = recorded.await {
            tracing::warn!(%error, action, reason, "could not audit a refused request");
        }
        error::domain_status(refusal)
    }

    /// Runs a read-only use case on a reader connection, without a transaction: its checks
    /// and reads each see what is committed as they run, as they would in a READ COMMITTED
    /// transaction, and the BEGIN and ROLLBACK round trips are saved.
    /// A lost connection runs it once more on a fresh one.
    async fn read<T, F>(&self, principal: Principal, op: F) -> Result<T, Status>
    where
        F: for<'t> FnOnce(&'t mut Conn, &'t Ctx) -> BoxFuture<'t, effects::Result<T>> + Clone,
    {
        let ctx = self.ctx(principal, "");
        let attempt = || {
            let (op, ctx) = (op.clone(), &ctx);
            async move {
                let mut conn = self.db.reader().await.map_err(|e| status::from_db(&e))?;
                op(&mut conn, ctx).await.map_err(error::to_status)
            }
        };
        rerun::once_more(&self.db, false, attempt).await
    }
}
