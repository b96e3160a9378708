//! `roster ops`: operators list, follow and repair long-running operations (sagas) over
//! identity's `Operations` API, with tables for people and `--json` (proto3 JSON, as grpcurl
//! prints it) for scripts. `watch`, and `retry`/`cancel` with `--watch`, show a running
//! operation's progress live until it is done.

use std::io::IsTerminal;

use roster_proto::operations::v1 as ops;
use roster_proto::operations::v1::operations_client::OperationsClient;
use tonic::transport::Channel;

use super::remote::{Remote, RemoteArgs, refused};
use super::render;
use super::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    /// Where identity is, and the token to call with: an operator's for retry and resolve
    /// (`roster token --operator NAME` mints one from the development keys).
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print proto3 JSON instead of tables (one object per line while watching).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: OpsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OpsCommand {
    /// An account's operations, newest first.
    List {
        /// The account whose operations to list (its id).
        #[arg(long)]
        account: String,
        /// Only this kind, e.g. `user.unlink`.
        #[arg(long)]
        kind: Option<String>,
        /// Only operations in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// How many to show at most.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// One operation in full.
    Get {
        /// The operation's id, as `list` or the call that started it shows it.
        operation_id: String,
    },
    /// Follows an operation until it is done; exits 1 unless it ends SUCCEEDED or RESOLVED.
    Watch {
        /// The operation's id, as `list` or the call that started it shows it.
        operation_id: String,
    },
    /// Runs a FAILED operation again from the step that failed (operators).
    Retry {
        /// The FAILED operation's id.
        operation_id: String,
        #[command(flatten)]
        change: ChangeArgs,
        /// Then follow the operation until it is done, as `watch` does.
        #[arg(long)]
        watch: bool,
    },
    /// Closes a FAILED operation as RESOLVED, saying what was set right by hand (operators).
    /// It is final at once, so there is nothing to watch.
    Resolve {
        /// The FAILED operation's id.
        operation_id: String,
        /// What was done by hand; kept in the audit trail.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Stops a RUNNING operation before its point of no return; its steps are undone.
    Cancel {
        /// The RUNNING operation's id.
        operation_id: String,
        #[command(flatten)]
        change: ChangeArgs,
        /// Then follow the operation until its undoing is done, as `watch` does.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ChangeArgs {
    /// Makes the change once however often the command is repeated; a fresh one by default.
    #[arg(long = "request-id")]
    request_id: Option<String>,
}

impl ChangeArgs {
    fn request_id(&self) -> String {
        self.request_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StateArg {
    Running,
    Compensating,
    Succeeded,
    Compensated,
    Failed,
    Resolved,
}

impl From<StateArg> for ops::OperationState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Running => Self::Running,
            StateArg::Compensating => Self::Compensating,
            StateArg::Succeeded => Self::Succeeded,
            StateArg::Compensated => Self::Compensated,
            StateArg::Failed => Self::Failed,
            StateArg::Resolved => Self::Resolved,
        }
    }
}

/// A connected client that sends the token with every call.
struct Client {
    inner: OperationsClient<Channel>,
    remote: Remote,
    json: bool,
}

impl Client {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.remote.request(message)
    }
}

pub async fn run(args: OpsArgs) -> Result<(), Failure> {
    let remote = Remote::connect(&args.remote, "roster token --operator NAME").await?;
    let mut client = Client { inner: OperationsClient::new(remote.channel()), remote, json: args.json };
    match args.command {
        OpsCommand::List { account, kind, state, limit } => list(&mut client, account, kind, state, limit).await,
        OpsCommand::Get { operation_id } => {
            let request = client.request(ops::GetOperationRequest { operation_id });
            let operation = client.inner.get_operation(request).await.map_err(refused)?.into_inner();
            render::show(&operation, client.json)
        }
        OpsCommand::Watch { operation_id } => watch(&mut client, operation_id).await,
        OpsCommand::Retry { operation_id, change, watch } => {
            let request = client.request(ops::RetryOperationRequest { operation_id, request_id: change.request_id() });
            let operation = client.inner.retry_operation(request).await.map_err(refused)?.into_inner();
            changed(&mut client, operation, watch).await
        }
        OpsCommand::Resolve { operation_id, note, change } => {
            let request =
                client.request(ops::ResolveOperationRequest { operation_id, request_id: change.request_id(), note });
            let operation = client.inner.resolve_operation(request).await.map_err(refused)?.into_inner();
            changed(&mut client, operation, false).await
        }
        OpsCommand::Cancel { operation_id, change, watch } => {
            let request = client.request(ops::CancelOperationRequest { operation_id, request_id: change.request_id() });
            let operation = client.inner.cancel_operation(request).await.map_err(refused)?.into_inner();
            changed(&mut client, operation, watch).await
        }
    }
}

async fn list(
    client: &mut Client,
    account: String,
    kind: Option<String>,
    state: Option<StateArg>,
    limit: u32,
) -> Result<(), Failure> {
    let mut operations = Vec::new();
    let mut page_token = String::new();
    loop {
        let remaining = limit - u32::try_from(operations.len()).unwrap_or(limit);
        let request = client.request(ops::ListOperationsRequest {
            account_id: account.clone(),
            kind: kind.clone().unwrap_or_default(),
            state: state.map_or(ops::OperationState::Unspecified, Into::into) as i32,
            page_size: remaining.min(500),
            page_token,
        });
        let page = client.inner.list_operations(request).await.map_err(refused)?.into_inner();
        operations.extend(page.operations);
        page_token = page.next_page_token;
        if page_token.is_empty() || operations.len() >= limit as usize {
            break;
        }
    }
    render::list(&operations, client.json)
}

/// After a change: the operation as it now stands, or followed to its end.
async fn changed(client: &mut Client, operation: ops::Operation, follow: bool) -> Result<(), Failure> {
    if follow && !operation.done {
        return watch(client, operation.id).await;
    }
    render::show(&operation, client.json)?;
    outcome(&operation, follow)
}

async fn watch(client: &mut Client, operation_id: String) -> Result<(), Failure> {
    let last = follow(&mut client.inner, &client.remote, operation_id, client.json, false).await?;
    if !client.json {
        render::show(&last, false)?;
    }
    outcome(&last, true)
}

/// Follows an operation until it is done, showing its progress live (a bar on a terminal, a
/// line per change otherwise, JSON lines for scripts), a dry run's in its own words; returns
/// it as it ended.
pub async fn follow(
    client: &mut OperationsClient<Channel>,
    remote: &Remote,
    operation_id: String,
    as_json: bool,
    dry_run: bool,
) -> Result<ops::Operation, Failure> {
    let request = remote.request(ops::WatchOperationRequest { operation_id });
    let mut stream = client.watch_operation(request).await.map_err(refused)?.into_inner();
    let mut live = render::Live::new(as_json, std::io::stderr().is_terminal(), dry_run);
    let mut last = None;
    while let Some(operation) = stream.message().await.map_err(refused)? {
        live.update(&operation)?;
        last = Some(operation);
    }
    live.finish();
    last.ok_or_else(|| runtime("the watch ended before the operation was sent"))
}

/// Whether a followed operation ended well; watching one that did not is a failure (exit 1).
fn outcome(operation: &ops::Operation, followed: bool) -> Result<(), Failure> {
    let state = ops::OperationState::try_from(operation.state).unwrap_or(ops::OperationState::Unspecified);
    match state {
        ops::OperationState::Compensated | ops::OperationState::Failed if followed => {
            Err(runtime(format!("operation {} ended {}", operation.id, render::state_name(operation.state))))
        }
        _ => Ok(()),
    }
}
