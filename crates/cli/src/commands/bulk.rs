//! `roster bulk`: deactivate, unlink or delete many users from a CSV file (SPEC R14, R25).
//! `template` prints the sample file (from the same code the server reads files with, so no
//! server is needed); `run` uploads a file in parts, follows the operation live, prints a
//! summary, writes the results file next to the input and exits 1 if a row did not succeed.
//! `run --dry-run` does the same with `validate_only`: every row is checked and previewed,
//! nothing changes, and the results file says what each row would do.

use std::path::{Path, PathBuf};

use roster_identity::domain::bulk::{BulkAction, MAX_FILE_BYTES};
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::bulk_service_client::BulkServiceClient;
use roster_proto::operations::v1 as ops;
use roster_proto::operations::v1::operations_client::OperationsClient;

use super::remote::{Remote, RemoteArgs, refused};
use super::{Failure, ops as operations, render, runtime};
use roster_platform::config::ConfigError;

/// Bytes per upload message, well under the servers' message limit.
const PART_BYTES: usize = 256 * 1024;

#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    #[command(subcommand)]
    command: BulkCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BulkCommand {
    /// Prints the sample CSV for an action: the header and an example row (no server needed).
    Template {
        /// What the file's rows will do.
        action: ActionArg,
    },
    /// Uploads a CSV file, shows the progress live, prints a summary and writes
    /// `<file>.results.csv` beside it; exits 1 if a row failed or was skipped.
    Run {
        /// What each row does to the user it names.
        action: ActionArg,
        /// Where identity is, and the token to call with: the owner's, or a user's whose custom
        /// role carries bulk removal (`roster token --user ID` mints one).
        #[command(flatten)]
        remote: RemoteArgs,
        /// The file, as the template shows it.
        #[arg(long)]
        csv: PathBuf,
        /// The account whose users it names (its id).
        #[arg(long)]
        account: String,
        /// Starts the operation once however often the command is repeated; a fresh one by
        /// default.
        #[arg(long = "request-id")]
        request_id: Option<String>,
        /// Print the operation as proto3 JSON lines while it runs, instead of a bar or lines.
        #[arg(long)]
        json: bool,
        /// Check and preview every row without changing anything (validate_only); the results
        /// go to `<file>.dry-run.results.csv`, with what each row would reclaim, move and
        /// delete, and the exit status says whether every row would go ahead.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ActionArg {
    Deactivate,
    Unlink,
    Delete,
}

impl ActionArg {
    fn domain(self) -> BulkAction {
        match self {
            Self::Deactivate => BulkAction::Deactivate,
            Self::Unlink => BulkAction::Unlink,
            Self::Delete => BulkAction::Delete,
        }
    }

    fn api(self) -> pb::BulkAction {
        match self {
            Self::Deactivate => pb::BulkAction::Deactivate,
            Self::Unlink => pb::BulkAction::Unlink,
            Self::Delete => pb::BulkAction::Delete,
        }
    }
}

pub async fn run(args: BulkArgs) -> Result<(), Failure> {
    match args.command {
        BulkCommand::Template { action } => {
            out!("{}", action.domain().template().trim_end_matches('\n'));
            Ok(())
        }
        BulkCommand::Run { action, remote, csv, account, request_id, json, dry_run } => {
            let file = std::fs::read(&csv).map_err(|e| runtime(format!("cannot read {}: {e}", csv.display())))?;
            if file.len() > MAX_FILE_BYTES {
                return Err(
                    ConfigError::new("--csv", format!("{} is larger than 16 MiB; split it", csv.display())).into()
                );
            }
            let remote = Remote::connect(&remote, "roster token --user ID").await?;
            let request_id = request_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let started = upload(&remote, &account, action.api(), &request_id, dry_run, file).await?;
            // Followed even when already done, so every run shows its progress the same way.
            let mut operations = OperationsClient::new(remote.channel());
            let ended = operations::follow(&mut operations, &remote, started.id, json, dry_run).await?;
            let results = results_path(&csv, dry_run);
            download(&remote, &ended.id, &results).await?;
            summary(&ended, &results, dry_run, json)
        }
    }
}

async fn upload(
    remote: &Remote,
    account: &str,
    action: pb::BulkAction,
    request_id: &str,
    validate_only: bool,
    file: Vec<u8>,
) -> Result<ops::Operation, Failure> {
    let parts: Vec<pb::UploadBulkCsvRequest> = file
        .chunks(PART_BYTES)
        .enumerate()
        .map(|(n, data)| {
            let first = n == 0;
            pb::UploadBulkCsvRequest {
                request_id: if first { request_id.to_owned() } else { String::new() },
                account_id: if first { account.to_owned() } else { String::new() },
                action: if first { action as i32 } else { 0 },
                data: data.to_vec(),
                validate_only: first && validate_only,
            }
        })
        .collect();
    let mut client = BulkServiceClient::new(remote.channel());
    let request = remote.request(futures_util::stream::iter(parts));
    Ok(client.upload_bulk_csv(request).await.map_err(refused)?.into_inner())
}

/// `people.csv` -> `people.results.csv` (a dry run's: `people.dry-run.results.csv`), in the
/// same directory.
fn results_path(input: &Path, dry_run: bool) -> PathBuf {
    let stem = input.file_stem().map_or_else(|| "bulk".into(), |s| s.to_string_lossy().into_owned());
    let dry_run = if dry_run { ".dry-run" } else { "" };
    input.with_file_name(format!("{stem}{dry_run}.results.csv"))
}

async fn download(remote: &Remote, operation_id: &str, to: &Path) -> Result<(), Failure> {
    let mut client = BulkServiceClient::new(remote.channel());
    let request = remote.request(pb::DownloadBulkResultsRequest { operation_id: operation_id.to_owned() });
    let mut chunks = client.download_bulk_results(request).await.map_err(refused)?.into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = chunks.message().await.map_err(refused)? {
        file.extend(chunk.data);
    }
    std::fs::write(to, file).map_err(|e| runtime(format!("cannot write {}: {e}", to.display())))
}

/// Prints how it went (to stderr with `--json`, whose stdout holds only the operation's JSON
/// lines); a row that failed or was skipped, or would be refused, makes the command fail.
fn summary(operation: &ops::Operation, results: &Path, dry_run: bool, json: bool) -> Result<(), Failure> {
    let say = |line: String| if json { eprintln!("{line}") } else { out!("{line}") };
    let rows = operation.progress.as_ref().and_then(|p| p.rows).unwrap_or_default();
    let not_ok = rows.failed + rows.skipped;
    if dry_run {
        say(format!(
            "dry run of {}: nothing was changed; {} of {} rows would go ahead, {not_ok} would be refused",
            operation.kind, rows.succeeded, rows.total
        ));
        say(format!("results: {}", results.display()));
        if not_ok > 0 {
            return Err(runtime(format!(
                "{not_ok} of {} rows would be refused; see {}",
                rows.total,
                results.display()
            )));
        }
        return Ok(());
    }
    say(format!("{} {} {}", operation.kind, render::state_name(operation.state), render::progress(operation)));
    say(format!("results: {}", results.display()));
    if not_ok > 0 {
        return Err(runtime(format!(
            "{not_ok} of {} rows did not succeed ({} failed, {} skipped); see {}",
            rows.total,
            rows.failed,
            rows.skipped,
            results.display()
        )));
    }
    Ok(())
}
