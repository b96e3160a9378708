//! `roster.operations.v1.Operations`: the sagas' progress, read from the workflow tables, and
//! the operators' repairs (retry, resolve, cancel).

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use roster_platform::auth::{Principal, principal};
use roster_platform::{rerun, status};
use roster_proto::operations::v1 as ops;
use roster_workflow::{Engine, Instance, ListFilter};
use tonic::{Request, Response, Status};

use super::{Api, convert, error};
use crate::app::operations;
use crate::domain::DomainError;
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;

/// How often a watcher re-reads an operation that another replica may be driving (changes
/// made on this replica wake it at once).
const WATCH_POLL: Duration = Duration::from_millis(500);

type OperationStream = Pin<Box<dyn Stream<Item = Result<ops::Operation, Status>> + Send>>;

impl Api {
    /// The operation, if the caller may see it; otherwise NOT_FOUND, as for a missing one.
    pub(super) async fn visible_operation(&self, caller: Principal, id: &str) -> Result<Instance, Status> {
        let not_found = || error::domain_status(&DomainError::OperationNotFound);
        let id = convert::operation_id(id)?;
        let id = id.as_str();
        let engine = &self.engine;
        let found =
            rerun::once_more(&self.db, false, || async move { engine.get(id).await.map_err(|e| status::from_db(&e)) });
        let instance = found.await?.ok_or_else(not_found)?;
        let seen = instance.clone();
        self.read(caller, move |tx, ctx| Box::pin(async move { operations::may_see(tx, ctx, &seen).await })).await?;
        Ok(instance)
    }
}

impl Api {
    /// [`Api::visible_operation`] for a cancellation: whoever may not see the operation is told
    /// it does not exist, as for a read, and the attempt is audited as a refused cancellation
    /// (in the operation's account, where one exists).
    async fn operation_to_change(&self, caller: &Principal, id: &str, request_id: &str) -> Result<Instance, Status> {
        let id = convert::operation_id(id)?;
        let ctx = self.ctx(caller.clone(), request_id);
        let action = crate::effects::actions::OPERATION_CANCELLED;
        let not_found = DomainError::OperationNotFound;
        let (engine, operation) = (&self.engine, id.as_str());
        let found = rerun::once_more(&self.db, false, || async move {
            engine.get(operation).await.map_err(|e| status::from_db(&e))
        });
        let Some(instance) = found.await? else {
            return Err(self.refused(&ctx, None, action, &not_found).await);
        };
        let seen = instance.clone();
        let visible = self
            .read(caller.clone(), move |tx, ctx| Box::pin(async move { operations::may_see(tx, ctx, &seen).await }));
        if let Err(status) = visible.await {
            if status.code() != tonic::Code::NotFound {
                return Err(status);
            }
            let account = convert::account_id(&instance.account_id).ok();
            return Err(self.refused(&ctx, account.as_ref(), action, &not_found).await);
        }
        Ok(instance)
    }
}

#[tonic::async_trait]
impl ops::operations_server::Operations for Api {
    type WatchOperationStream = OperationStream;

    async fn get_operation(
        &self,
        request: Request<ops::GetOperationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let instance = self.visible_operation(caller, &request.get_ref().operation_id).await?;
        let mut operation = convert::operation(&instance);
        self.with_rows(&mut operation).await?;
        Ok(Response::new(operation))
    }

    async fn list_operations(
        &self,
        request: Request<ops::ListOperationsRequest>,
    ) -> Result<Response<ops::ListOperationsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let account = convert::account_id(&req.account_id)?;
        let state = convert::operation_state(req.state)?;
        let page = self.page(&req, &caller)?;
        let allowed = account.clone();
        self.read(caller, move |tx, ctx| Box::pin(async move { operations::may_list(tx, ctx, &allowed).await }))
            .await?;
        let filter =
            ListFilter { account_id: Some(account.to_string()), kind: Some(req.kind).filter(|k| !k.is_empty()), state };
        let rows = self
            .engine
            .list(&filter, page.after.as_deref(), page.fetch_limit())
            .await
            .map_err(|e| status::from_db(&e))?;
        let (rows, next_page_token) = page.finish(rows, |instance| instance.id.clone());
        let mut operations = Vec::with_capacity(rows.len());
        for instance in &rows {
            let mut operation = convert::operation(instance);
            self.with_rows(&mut operation).await?;
            operations.push(operation);
        }
        Ok(Response::new(ops::ListOperationsResponse { operations, next_page_token }))
    }

    async fn watch_operation(
        &self,
        request: Request<ops::WatchOperationRequest>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        let caller = principal(&request)?;
        let first = self.visible_operation(caller.clone(), &request.get_ref().operation_id).await?;
        let api = self.clone();
        let changes = self.engine.subscribe();
        // State: the last operation sent (None once the final one went out).
        let stream = futures_util::stream::unfold(
            (Some(first), None::<ops::Operation>, changes),
            move |(next, last, mut changes)| {
                let (api, caller) = (api.clone(), caller.clone());
                async move {
                    let mut current = next;
                    loop {
                        let instance = match current.take() {
                            Some(instance) => instance,
                            None => {
                                let id = last.as_ref()?.id.clone();
                                let changed =
                                    Engine::change_of(&mut changes, &id, tokio::time::Instant::now() + WATCH_POLL);
                                tokio::select! {
                                    () = changed => {}
                                    () = api.draining.cancelled() => {
                                        // A clean last word rather than a cut connection: the
                                        // client watches again, on another replica.
                                        let status = Status::unavailable(format!(
                                            "this identity replica is shutting down; call WatchOperation again for {id}"
                                        ));
                                        return Some((Err(status), (None, None, changes)));
                                    }
                                }
                                // Visibility is decided again for every update (R34): a watcher
                                // deactivated meanwhile gets NOT_FOUND and the stream ends.
                                match api.visible_operation(caller.clone(), &id).await {
                                    Ok(instance) => instance,
                                    Err(status) => return Some((Err(status), (None, None, changes))),
                                }
                            }
                        };
                        let mut operation = convert::operation(&instance);
                        if let Err(status) = api.with_rows(&mut operation).await {
                            return Some((Err(status), (None, None, changes)));
                        }
                        if last.as_ref() == Some(&operation) {
                            continue;
                        }
                        let after = if operation.done { None } else { Some(operation.clone()) };
                        return Some((Ok(operation), (None, after, changes)));
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn retry_operation(
        &self,
        request: Request<ops::RetryOperationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::operation_id(&req.operation_id)?;
        let engine = self.engine.clone();
        self.start_saga(
            caller,
            method!("Operations", "RetryOperation", OPERATION_RETRIED),
            &req.request_id,
            &req,
            None,
            move |tx, ctx| Box::pin(async move { operations::retry(tx, ctx, &engine, &id).await }),
        )
        .await
    }

    async fn resolve_operation(
        &self,
        request: Request<ops::ResolveOperationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let id = convert::operation_id(&req.operation_id)?;
        let note = req.note.clone();
        let engine = self.engine.clone();
        self.start_saga(
            caller,
            method!("Operations", "ResolveOperation", OPERATION_RESOLVED),
            &req.request_id,
            &req,
            None,
            move |tx, ctx| Box::pin(async move { operations::resolve(tx, ctx, &engine, &id, &note).await }),
        )
        .await
    }

    async fn cancel_operation(
        &self,
        request: Request<ops::CancelOperationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let instance = self.operation_to_change(&caller, &req.operation_id, &req.request_id).await?;
        let account = convert::account_id(&instance.account_id)?;
        let engine = self.engine.clone();
        let mut response = self
            .start_saga(
                caller,
                method!("Operations", "CancelOperation", OPERATION_CANCELLED),
                &req.request_id,
                &req,
                Some((account, Need::Reader(Privilege::ManageUsers))),
                move |tx, ctx| Box::pin(async move { operations::cancel(tx, ctx, &engine, instance).await }),
            )
            .await?;
        self.with_rows(response.get_mut()).await?;
        Ok(response)
    }
}
