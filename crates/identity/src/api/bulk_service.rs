//! `roster.identity.v1.BulkService`: bulk removal (SPEC R14, R16, R25). Files and lists are
//! read here, at the edge, into rows (`domain::bulk`); the use case stores them with the
//! operation; rows and the results file are read back page by page.

use std::pin::Pin;

use futures_util::Stream;
use roster_platform::auth::{Principal, principal};
use roster_platform::{rerun, status};
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use tonic::{Request, Response, Status, Streaming};

use super::{Api, convert, error};
use crate::app::bulk;
use crate::domain::DomainError;
use crate::domain::bulk::{BulkAction, BulkInput, FileProblem, ListedUser, MAX_FILE_BYTES, read_csv, read_list};
use crate::domain::model::Privilege;
use crate::domain::privileges::Need;
use crate::store::bulk::{RowState, StoredRow};

/// Rows per chunk of the results file.
const RESULTS_CHUNK_ROWS: i64 = 500;

type ResultsStream = Pin<Box<dyn Stream<Item = Result<pb::BulkResultsChunk, Status>> + Send>>;

const ROW_STATES: [(RowState, pb::BulkRowState); 5] = [
    (RowState::Pending, pb::BulkRowState::Pending),
    (RowState::Running, pb::BulkRowState::Running),
    (RowState::Succeeded, pb::BulkRowState::Succeeded),
    (RowState::Failed, pb::BulkRowState::Failed),
    (RowState::Skipped, pb::BulkRowState::Skipped),
];

fn action(value: i32) -> Result<BulkAction, Status> {
    match pb::BulkAction::try_from(value) {
        Ok(pb::BulkAction::Deactivate) => Ok(BulkAction::Deactivate),
        Ok(pb::BulkAction::Unlink) => Ok(BulkAction::Unlink),
        Ok(pb::BulkAction::Delete) => Ok(BulkAction::Delete),
        _ => Err(status::invalid_argument("action", "must be BULK_ACTION_DEACTIVATE, _UNLINK or _DELETE")),
    }
}

fn row_state(value: i32) -> Result<Option<RowState>, Status> {
    if value == pb::BulkRowState::Unspecified as i32 {
        return Ok(None);
    }
    ROW_STATES
        .iter()
        .find(|(_, pb)| *pb as i32 == value)
        .map(|(state, _)| Some(*state))
        .ok_or_else(|| status::invalid_argument("state", "is not a bulk row state"))
}

fn listed(user: &pb::BulkUser) -> ListedUser {
    let wanted = [
        (user.transfer_meetings, "meeting"),
        (user.transfer_webinars, "webinar"),
        (user.transfer_events, "event"),
        (user.transfer_recordings, "recording"),
    ];
    ListedUser {
        user: user.user.clone(),
        transfer_to: user.transfer_to.clone(),
        kinds: wanted.iter().filter(|(yes, _)| *yes).map(|(_, kind)| *kind).collect(),
    }
}

/// The rows a request names, or why it names none that can be read.
fn input(action: BulkAction, request: &pb::StartBulkOperationRequest) -> Result<BulkInput, Status> {
    let refused =
        |field: &'static str| move |problem: FileProblem| status::invalid_argument(field, problem.to_string());
    match (request.users.is_empty(), request.csv.is_empty()) {
        (false, true) => {
            read_list(action, &request.users.iter().map(listed).collect::<Vec<_>>()).map_err(refused("users"))
        }
        (true, false) => read_csv(action, &request.csv).map_err(refused("csv")),
        (true, true) => {
            Err(status::invalid_argument("users", "name the users to act on, as a list or as a CSV file (csv)"))
        }
        (false, false) => Err(status::invalid_argument("csv", "give either users or csv, not both")),
    }
}

fn bulk_row(row: &StoredRow) -> pb::BulkRow {
    pb::BulkRow {
        line: u64::try_from(row.line).unwrap_or(0),
        user: row.user_ref.clone(),
        user_id: row.user_id.clone().unwrap_or_default(),
        state: ROW_STATES.iter().find(|(s, _)| *s == row.state).map_or(0, |(_, pb)| *pb as i32),
        operation_id: row.child_id.clone().unwrap_or_default(),
        reason: row.reason.clone().unwrap_or_default(),
        code: row.code.clone().unwrap_or_default(),
        message: row.message.clone().unwrap_or_default(),
        column: row.column.clone().unwrap_or_default(),
        preview: row
            .preview
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .map(|value| convert::json_struct(&value)),
    }
}

/// A row of the results file: the row as it came, then how it ended, then (for a dry run
/// of `action`) what it would do; cells a spreadsheet would run are neutralised.
fn results_line(row: &StoredRow, dry_run: Option<BulkAction>) -> String {
    let mut outcome: Vec<String> = [
        row.state.as_str(),
        row.reason.as_deref().unwrap_or_default(),
        row.code.as_deref().unwrap_or_default(),
        row.message.as_deref().unwrap_or_default(),
        row.column.as_deref().unwrap_or_default(),
    ]
    .map(str::to_owned)
    .into();
    if let Some(action) = dry_run {
        outcome.extend(bulk::preview_fields(action, row.preview.as_deref()));
    }
    format!("{}\r\n", bulk::results_line(&row.fields, &outcome))
}

impl Api {
    /// The bulk operation `id`, if the caller may see it; NOT_FOUND otherwise, and for an
    /// operation of another kind.
    async fn visible_bulk(&self, caller: Principal, id: &str) -> Result<String, Status> {
        let instance = self.visible_operation(caller, id).await?;
        if BulkAction::of_operation_kind(&instance.kind).is_none() {
            return Err(error::domain_status(&DomainError::OperationNotFound));
        }
        Ok(instance.id)
    }

    /// Fills in a bulk operation's row counts and cancel request; other kinds pass unchanged.
    pub(super) async fn with_rows(&self, operation: &mut ops::Operation) -> Result<(), Status> {
        if BulkAction::of_operation_kind(&operation.kind).is_none() {
            return Ok(());
        }
        let (db, id) = (&self.db, &operation.id);
        let progress = rerun::once_more(db, false, || async move {
            let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
            bulk::progress(&mut conn, id).await.map_err(error::to_status)
        });
        let Some((stored, counts)) = progress.await? else {
            return Ok(());
        };
        let count = |state| u32::try_from(counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)).unwrap_or(0);
        let rows = ops::RowCounts {
            total: u32::try_from(stored.total).unwrap_or(0),
            succeeded: count(RowState::Succeeded),
            failed: count(RowState::Failed),
            skipped: count(RowState::Skipped),
            done: count(RowState::Succeeded) + count(RowState::Failed) + count(RowState::Skipped),
        };
        if let Some(progress) = operation.progress.as_mut() {
            progress.rows = Some(rows);
        }
        if operation.cancel_requested_by.is_empty() {
            operation.cancel_requested_by = stored.cancel_requested_by.unwrap_or_default();
        }
        Ok(())
    }

    async fn start_bulk(
        &self,
        caller: Principal,
        request: pb::StartBulkOperationRequest,
    ) -> Result<Response<ops::Operation>, Status> {
        let account = convert::account_id(&request.account_id)?;
        let action = action(request.action)?;
        let input = input(action, &request)?;
        let (engine, validate_only) = (self.engine.clone(), request.validate_only);
        let scope = Some((account.clone(), Need::Privilege(Privilege::BulkRemoveUsers)));
        let mut response = self
            .start_saga(
                caller,
                method!("BulkService", "StartBulkOperation", BULK_STARTED),
                &request.request_id,
                &request,
                scope,
                move |tx, ctx| {
                    Box::pin(async move { bulk::start(tx, ctx, &engine, &account, action, input, validate_only).await })
                },
            )
            .await?;
        self.with_rows(response.get_mut()).await?;
        Ok(response)
    }
}

#[tonic::async_trait]
impl pb::bulk_service_server::BulkService for Api {
    type DownloadBulkResultsStream = ResultsStream;

    async fn get_bulk_template(
        &self,
        request: Request<pb::GetBulkTemplateRequest>,
    ) -> Result<Response<pb::BulkTemplate>, Status> {
        principal(&request)?;
        let action = action(request.get_ref().action)?;
        Ok(Response::new(pb::BulkTemplate { filename: action.template_filename(), csv: action.template() }))
    }

    async fn start_bulk_operation(
        &self,
        request: Request<pb::StartBulkOperationRequest>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        self.start_bulk(caller, request.into_inner()).await
    }

    async fn upload_bulk_csv(
        &self,
        request: Request<Streaming<pb::UploadBulkCsvRequest>>,
    ) -> Result<Response<ops::Operation>, Status> {
        let caller = principal(&request)?;
        let mut parts = request.into_inner();
        let first = parts.message().await?.ok_or_else(|| status::invalid_argument("data", "the upload is empty"))?;
        let mut whole = pb::StartBulkOperationRequest {
            request_id: first.request_id,
            account_id: first.account_id,
            action: first.action,
            users: Vec::new(),
            csv: first.data,
            validate_only: first.validate_only,
        };
        while let Some(part) = parts.message().await? {
            if !part.request_id.is_empty() || !part.account_id.is_empty() || part.action != 0 || part.validate_only {
                return Err(status::invalid_argument("request_id", "only the first message names the request"));
            }
            if whole.csv.len() + part.data.len() > MAX_FILE_BYTES {
                return Err(status::invalid_argument("data", format!("the file {}", FileProblem::TooLarge)));
            }
            whole.csv.extend_from_slice(&part.data);
        }
        self.start_bulk(caller, whole).await
    }

    async fn list_bulk_rows(
        &self,
        request: Request<pb::ListBulkRowsRequest>,
    ) -> Result<Response<pb::ListBulkRowsResponse>, Status> {
        let caller = principal(&request)?;
        let request = request.into_inner();
        let state = row_state(request.state)?;
        let page = self.page(&request, &caller)?;
        let after = match page.after.as_deref() {
            Some(line) => line.parse().map_err(|_| status::invalid_argument("page_token", "is not from this list"))?,
            None => 0,
        };
        let id = self.visible_bulk(caller, &request.operation_id).await?;
        let (db, id, limit) = (&self.db, &id, page.fetch_limit());
        let rows = rerun::once_more(db, false, || async move {
            let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
            bulk::rows(&mut conn, id, state, after, limit).await.map_err(error::to_status)
        })
        .await?;
        let (rows, next_page_token) = page.finish(rows, |row| row.line.to_string());
        Ok(Response::new(pb::ListBulkRowsResponse { rows: rows.iter().map(bulk_row).collect(), next_page_token }))
    }

    async fn download_bulk_results(
        &self,
        request: Request<pb::DownloadBulkResultsRequest>,
    ) -> Result<Response<Self::DownloadBulkResultsStream>, Status> {
        let caller = principal(&request)?;
        let id = self.visible_bulk(caller, &request.get_ref().operation_id).await?;
        let (db, operation) = (&self.db, &id);
        let progress = rerun::once_more(db, false, || async move {
            let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
            bulk::progress(&mut conn, operation).await.map_err(error::to_status)
        });
        let Some((stored, _)) = progress.await? else {
            return Err(error::domain_status(&DomainError::OperationNotFound));
        };
        let dry_run = stored.action.parse::<BulkAction>().ok().filter(|_| stored.validate_only);
        let mut columns = bulk::RESULT_COLUMNS.to_vec();
        columns.extend(dry_run.map(bulk::preview_columns).unwrap_or_default());
        let columns: Vec<String> = columns.into_iter().map(str::to_owned).collect();
        let header = format!("{}\r\n", bulk::results_line(&stored.header, &columns));
        let db = self.db.clone();
        // State: the last line sent, or None once the last chunk went out.
        let chunks = futures_util::stream::unfold(Some((0_i64, Some(header))), move |state| {
            let (db, id) = (db.clone(), id.clone());
            async move {
                let (after, header) = state?;
                let page = async {
                    let mut conn = db.reader().await.map_err(crate::effects::Error::from)?;
                    bulk::rows(&mut conn, &id, None, after, RESULTS_CHUNK_ROWS).await
                };
                match page.await {
                    Err(error) => Some((Err(error::to_status(error)), None)),
                    Ok(rows) => {
                        let last = rows.last().map(|row| row.line);
                        let mut data = header.unwrap_or_default();
                        data.extend(rows.iter().map(|row| results_line(row, dry_run)));
                        let next = last.filter(|_| rows.len() == RESULTS_CHUNK_ROWS as usize).map(|line| (line, None));
                        Some((Ok(pb::BulkResultsChunk { data: data.into_bytes() }), next))
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}
