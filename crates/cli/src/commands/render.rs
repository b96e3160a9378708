//! How `roster ops` and `roster bulk` print operations: tables for people, proto3 JSON for scripts (built from
//! the API's own descriptors, so field names and enum names are the ones grpcurl shows), and
//! live progress while one runs: a bar on a terminal, a line per change otherwise.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use roster_proto::operations::v1 as ops;
use serde_json::Value;

use super::{Failure, runtime};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("the API's descriptors are built in")
    })
}

/// The operation in the canonical proto3 JSON mapping.
pub fn json(operation: &ops::Operation) -> Result<Value, Failure> {
    let descriptor = pool()
        .get_message_by_name("roster.operations.v1.Operation")
        .ok_or_else(|| runtime("the Operation descriptor is missing"))?;
    let message = DynamicMessage::decode(descriptor, operation.encode_to_vec().as_slice()).map_err(runtime)?;
    serde_json::to_value(&message).map_err(runtime)
}

/// The state as the API names it, without the enum prefix: `RUNNING`, `FAILED`, ...
pub fn state_name(state: i32) -> &'static str {
    ops::OperationState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("OPERATION_STATE_"))
        .unwrap_or("UNKNOWN")
}

fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        _ => String::new(),
    }
}

/// "2/4 reclaim_licenses", and the retry in progress if there is one; for a bulk operation,
/// its rows: "rows 12/40: 10 succeeded, 2 failed, 0 skipped".
pub fn progress(operation: &ops::Operation) -> String {
    let Some(p) = &operation.progress else { return String::new() };
    if let Some(rows) = &p.rows {
        return format!(
            "rows {}/{}: {} succeeded, {} failed, {} skipped",
            rows.done, rows.total, rows.succeeded, rows.failed, rows.skipped
        );
    }
    let mut text = format!("{}/{} {}", p.steps_done, p.steps_total, p.current_step);
    if p.attempt > 0 && !operation.done {
        text.push_str(&format!(" (attempt {}: {})", p.attempt + 1, p.last_error));
    }
    text
}

fn table() -> Table {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    table
}

pub fn list(operations: &[ops::Operation], as_json: bool) -> Result<(), Failure> {
    if as_json {
        let all = operations.iter().map(json).collect::<Result<Vec<_>, _>>()?;
        println!("{}", serde_json::to_string_pretty(&all).map_err(runtime)?);
        return Ok(());
    }
    if operations.is_empty() {
        println!("No operations.");
        return Ok(());
    }
    let mut table = table();
    table.set_header(["ID", "KIND", "STATE", "PROGRESS", "STARTED BY", "UPDATED"]);
    for operation in operations {
        table.add_row([
            operation.id.clone(),
            operation.kind.clone(),
            state_name(operation.state).to_owned(),
            progress(operation),
            operation.started_by.clone(),
            time(operation.updated_at_ms),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// One operation, every field that is set.
pub fn show(operation: &ops::Operation, as_json: bool) -> Result<(), Failure> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json(operation)?).map_err(runtime)?);
        return Ok(());
    }
    let mut rows = vec![
        ("id", operation.id.clone()),
        ("kind", operation.kind.clone()),
        ("account", operation.account_id.clone()),
        ("subject", operation.subject.clone()),
        ("started by", operation.started_by.clone()),
        ("state", state_name(operation.state).to_owned()),
        ("progress", progress(operation)),
    ];
    if let Some(p) = operation.progress.as_ref().filter(|p| !operation.done && p.next_attempt_at_ms > 0) {
        rows.push(("next attempt", time(p.next_attempt_at_ms)));
    }
    if !operation.cancel_requested_by.is_empty() {
        rows.push(("cancel asked by", operation.cancel_requested_by.clone()));
    }
    if let Some(error) = &operation.error {
        let code = if error.code.is_empty() { String::new() } else { format!(" ({})", error.code) };
        rows.push(("error", format!("{}{code}: {}", error.reason, error.message)));
    }
    if let Some(resolution) = &operation.resolution {
        rows.push((
            "resolved",
            format!("by {} at {}: {}", resolution.resolved_by, time(resolution.resolved_at_ms), resolution.note),
        ));
    }
    if operation.result.is_some() {
        rows.push(("result", json(operation)?["result"].to_string()));
    }
    rows.push(("created", time(operation.created_at_ms)));
    rows.push(("updated", time(operation.updated_at_ms)));
    if operation.finished_at_ms > 0 {
        rows.push(("finished", time(operation.finished_at_ms)));
    }
    let mut table = table();
    for (name, value) in rows {
        table.add_row([name.to_owned(), value]);
    }
    println!("{table}");
    Ok(())
}

/// Progress while watching.
pub enum Live {
    /// One JSON object per line, for scripts.
    Json,
    /// A bar on the terminal (stderr), so stdout keeps only the final table.
    Bar(ProgressBar),
    /// A line per change, for logs and pipes.
    Lines,
}

impl Live {
    pub fn new(as_json: bool, terminal: bool) -> Self {
        if as_json {
            return Self::Json;
        }
        if !terminal {
            return Self::Lines;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    pub fn update(&mut self, operation: &ops::Operation) -> Result<(), Failure> {
        let p = operation.progress.clone().unwrap_or_default();
        match self {
            Self::Json => println!("{}", json(operation)?),
            Self::Bar(bar) => {
                let (done, total) = p.rows.map_or((p.steps_done, p.steps_total), |rows| (rows.done, rows.total));
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(done));
                bar.set_message(format!("{} {}", state_name(operation.state), progress(operation)));
            }
            Self::Lines => println!("{} {}", state_name(operation.state), progress(operation)),
        }
        Ok(())
    }

    pub fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
